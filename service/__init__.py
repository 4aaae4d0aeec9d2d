"""sgdserve: train linear-regression models by SGD and serve them over HTTP."""

from __future__ import annotations

__version__ = "0.1.0"
