"""The README and docs/ say what the code does: their examples run, the names they use exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from service.config import Settings
from service.http.retrain import wait_limit

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_wait_examples_are_within_the_default_limit(doc: Path) -> None:
    limit = wait_limit(Settings())
    for seconds in re.findall(r"[?&]wait=(\d+(?:\.\d+)?)", doc.read_text()):
        assert float(seconds) <= limit, f"{doc.name}: ?wait={seconds} answers 400 (limit {limit})"


def _resolves(dotted: str) -> bool:
    """``service.a.b`` names a module, or an attribute of one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_modules_and_names_the_docs_use_exist(doc: Path) -> None:
    text = doc.read_text()
    names = set(re.findall(r"\bservice(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text))
    names |= {p.replace("/", ".").removesuffix(".py")
              for p in re.findall(r"\bservice/[a-z_/]+\.py\b", text)}
    files = {"yaml", "yml", "json", "md", "py", "csv"}  # deploy/kubernetes/service.yaml, ...
    names = {n for n in names if n.rsplit(".", 1)[-1] not in files}
    missing = sorted(n for n in names if not _resolves(n.rstrip(".")))
    assert not missing, f"{doc.name} names what does not exist: {missing}"
