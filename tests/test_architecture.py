"""ARCHITECTURE.md names every module of ``src/peftlab``, and only modules that exist.

The rule, stated at the top of ARCHITECTURE.md: a module is named by its path relative
to ``src/peftlab/`` in backticks (`` `core/atomic.py` ``, `` `api.py` ``). Every
backticked ``.py`` path in the document is read as such a path, except those under
``tests/``, ``bench/`` and ``tools/``, which are read from the repository root; each must
exist. ``__init__.py`` files may be named but need not be. Text only: nothing is imported.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "peftlab"
DOC = ROOT / "ARCHITECTURE.md"
REPO_DIRS = ("tests/", "bench/", "tools/")
# A backticked path ending in .py: `core/atomic.py`, `api.py`, `tests/test_layering.py`.
NAMED = re.compile(r"`([\w./-]+\.py)`")


def modules() -> set[str]:
    return {p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py") if p.name != "__init__.py"}


def named() -> set[str]:
    return set(NAMED.findall(DOC.read_text(encoding="utf-8")))


def test_every_module_is_named():
    missing = sorted(modules() - named())
    assert not missing, (
        f"ARCHITECTURE.md does not name these modules of src/peftlab "
        f"(add each, as `part/file.py`, to its part's table): {missing}"
    )


def test_every_named_module_exists():
    gone = sorted(
        n for n in named() if not ((ROOT / n) if n.startswith(REPO_DIRS) else (PKG / n)).is_file()
    )
    assert not gone, (
        f"ARCHITECTURE.md names files that do not exist (paths are relative "
        f"to src/peftlab/, or to the repository for tests/, bench/, tools/): "
        f"{gone}"
    )
