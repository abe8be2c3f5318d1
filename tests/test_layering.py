"""The import direction of ARCHITECTURE.md, enforced: each part of ``src/peftlab``
imports only the parts listed for it (lower layers), never one above it. Every import
is checked, including the lazy ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "peftlab"

# part -> the parts it may import. A part is a sub-package or a top-level module.
_BELOW_TRAINING = {"core", "quant", "methods", "model", "data", "formats", "config"}
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "host": {"core"},
    "quant": {"core"},
    "methods": {"core", "quant"},
    "data": {"core"},
    "model": {"core", "quant", "methods"},
    "formats": {"core", "quant", "methods", "model", "data"},
    "config": {"core", "methods"},
    "tracking": {"core"},
    "training": _BELOW_TRAINING | {"host", "tracking"},
    "memory": _BELOW_TRAINING | {"training", "host"},
    "compare": _BELOW_TRAINING | {"training", "tracking", "lmeval"},
    "export": _BELOW_TRAINING | {"training", "api"},
    "lmeval": {"core"},
    "api": _BELOW_TRAINING | {"training", "memory", "lmeval"},
    "cli_parser": _BELOW_TRAINING | {"memory"},
    "cli": _BELOW_TRAINING
    | {"training", "compare", "api", "export", "memory", "lmeval", "cli_parser"},
    "__init__": {"api", "config", "formats", "methods", "model", "export"},
    "__main__": {"cli", "host"},  # host.malloc: the allocator, before torch loads
}


def part_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_parts(path: Path) -> set[tuple[str, int]]:
    """(part, line) for every peftlab import in ``path``, relative or absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(PKG).parent.parts)
    found = set()
    for node in ast.walk(tree):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif node.module and node.module.split(".")[0] == "peftlab":
                base = []
                node_mod = node.module.split(".")[1:]
                targets = [node_mod + [a.name] for a in node.names]
            else:
                continue
            if node.level:
                mod = node.module.split(".") if node.module else []
                targets = [base + mod + [a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [
                a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "peftlab"
            ]
        for t in targets:
            if not t:
                continue
            head = t[0]
            if (PKG / head).is_dir() or (PKG / f"{head}.py").is_file():
                found.add((head, node.lineno))
    return found


SOURCES = sorted(PKG.rglob("*.py"))


def test_every_part_is_declared():
    parts = {part_of(p) for p in SOURCES}
    assert parts <= set(ALLOWED), f"undeclared parts: {sorted(parts - set(ALLOWED))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path):
    part = part_of(path)
    bad = sorted(
        (imp, line)
        for imp, line in imported_parts(path)
        if imp != part and imp not in ALLOWED[part]
    )
    assert not bad, (
        f"{path.relative_to(PKG)} ({part}) imports "
        + ", ".join(f"{imp} (line {line})" for imp, line in bad)
        + f"; {part} may import only {sorted(ALLOWED[part]) or 'nothing'}"
    )


def test_the_checker_sees_violations(tmp_path, monkeypatch):
    """The scan itself: a relative, an absolute and a lazy upward import are all found."""
    fake = tmp_path / "peftlab"
    (fake / "methods").mkdir(parents=True)
    (fake / "training").mkdir()
    (fake / "cli.py").write_text("")
    src = fake / "methods" / "x.py"
    src.write_text(
        "from ..training import loop\nimport peftlab.cli\n"
        "def f():\n    from peftlab.training.loop import train\n"
    )
    monkeypatch.setattr(__import__(__name__), "PKG", fake)
    assert {p for p, _ in imported_parts(src)} == {"training", "cli"}
    assert len(imported_parts(src)) == 3


# The host-memory seam (ARCHITECTURE.md, host/): the only modules that reach it, and the
# machinery that no module outside it may touch.
HOST_CALLERS = {
    "__main__.py",  # the entry point: mimalloc before torch loads
    "training/loop.py",  # the run's HostMemory, called at phase boundaries
    "training/setup.py",  # (its type, and the phases of setting up)
    "training/session.py",  # reclaim between the tensors a streaming loader reads
    "memory/cli.py",  # the planner's advice names the malloc in use
    "memory/planner.py",  # the planner models the allocator setting
}
HOST_MACHINERY = (
    "mallopt",
    "madvise",
    "malloc_trim",
    "mi_collect",
    "LD_PRELOAD",
    "/proc/self/maps",
)


def test_only_the_seam_and_its_callers_reach_host_memory():
    callers = {
        str(p.relative_to(PKG))
        for p in SOURCES
        if part_of(p) != "host" and any(imp == "host" for imp, _ in imported_parts(p))
    }
    assert callers <= HOST_CALLERS, sorted(callers - HOST_CALLERS)


def test_heap_and_allocator_machinery_lives_in_the_seam():
    leaks = [
        (str(p.relative_to(PKG)), word)
        for p in SOURCES
        if part_of(p) != "host"
        for word in HOST_MACHINERY
        if word in p.read_text()
    ]
    assert not leaks, leaks
