"""Atomic file writes: every file peftlab writes goes to a temp file beside its final
name, is fsynced, then renamed over it, so a crash, a kill or a full disk never leaves a
half-written file under the final name (and an existing one is kept until the new one
is complete). Directories are built beside their final place and swapped in."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def _default_mode(path: str | os.PathLike) -> None:
    """Give a temp file the mode a plain ``open()`` would have (mkstemp makes it 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


FAULT_ENV = "PEFTLAB_FAULT"
"""Fault injection for tests: a process whose environment names a point here kills itself
with SIGKILL when it reaches that point (``checkpoint:step-000004`` inside that
checkpoint's write; ``write:run/adapter_model.safetensors`` with that file written to its
temporary name but not yet renamed)."""


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_ENV) == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def replace_dir(new: Path, final: Path) -> None:
    """Put the finished directory ``new`` at ``final``; an existing ``final`` is moved
    aside first and deleted only after the rename, so a crash never leaves neither."""
    new, final = Path(new), Path(final)
    aside = None
    if final.exists():
        aside = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(new, final)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


LEFTOVER_PATTERNS = (".{}.tmp-*", ".{}.old-*", ".{}.*.tmp")
"""What an interrupted write of ``NAME`` leaves beside it: a staged directory
(:func:`staged_dir`), the moved-aside old one (:func:`replace_dir`), a temp file
(:func:`atomic_write_bytes`, :func:`staged_file`)."""


def clean_leftovers(final: str | os.PathLike) -> list[Path]:
    """Remove what a killed writer of ``final`` left beside it (call it holding the
    output's lock, so no live writer's temporaries are touched); returns what went."""
    import glob

    final = Path(final)
    name = glob.escape(final.name)
    found = [p for pat in LEFTOVER_PATTERNS for p in final.parent.glob(pat.format(name))]
    for p in found:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if found:
        import sys

        print(
            f"peftlab: removed {len(found)} temporary file(s) left beside {final} by an "
            "interrupted run",
            file=sys.stderr,
        )
    return found


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata=None) -> None:
    """safetensors.save_file into a temp file, then rename (a full disk loses nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        fault_point(f"write:{path.parent.name}/{path.name}")  # written, not yet renamed
        _default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, name: str | None = None) -> Iterator[Path]:
    """Yield an empty temp directory beside ``final``; when the block ends without an
    error it replaces ``final`` (see :func:`replace_dir`), otherwise it is deleted.

    ``name`` fixes the temp directory's name (a leftover of a killed process under that
    name is removed first); by default it is unique."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if name is not None:
        tmp = final.parent / name
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    else:
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful swap


@contextlib.contextmanager
def staged_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``final`` for a writer that wants a file name; when the
    block ends without an error the file is fsynced and renamed to ``final``, otherwise
    deleted (an interrupted or failed write leaves nothing under the final name)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _default_mode(tmp)
        os.replace(tmp, final)
    finally:
        Path(tmp).unlink(missing_ok=True)
