"""The benchmarks' shared CSV: ``make_regression`` data written once per size and reused.

Used by bench/read_bench.py and bench/cli_train_bench.py, so the two read the same file and
generate it once between them.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import ModuleType


def regression_csv(data: ModuleType, rows: int, features: int, target: str = "y",
                   seed: int = 0) -> Path:
    """``rows`` x ``features`` (x0, x1, ... and ``target``, 7 significant digits), written by
    ``data`` (service.data) into the temporary directory the first time it is asked for."""
    folder = Path(tempfile.gettempdir()) / "sgdserve-bench"
    folder.mkdir(exist_ok=True)
    path = folder / f"regression_{rows}x{features}_seed{seed}.csv"
    if not path.exists():
        print(f"writing {path} (once) ...", file=sys.stderr)
        X, y, _, _ = data.make_regression(rows, features, seed=seed)
        columns = {f"x{j}": X[:, j] for j in range(features)}
        columns[target] = y
        tmp = path.with_suffix(".tmp")
        data.write_csv(tmp, columns, default_format="%.7g")
        tmp.replace(path)
    return path
