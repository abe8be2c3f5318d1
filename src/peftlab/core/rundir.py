"""Output directories that are never clobbered, and one writer per output.

A training run marks its directory with ``peftlab-run.json`` (run id, command, start
time) when it starts. A later ``train`` into that directory must say ``--resume`` (go
on with the same run) or ``--overwrite`` (start a new one); into a non-empty directory
that is no peftlab run only ``--overwrite`` writes, and then the old contents are moved
aside, not deleted, until the new run has written its first checkpoint.

Every command that writes an output holds an exclusive ``fcntl`` lock on a file beside
it for as long as it writes; a second process stops at once, naming the holder. The
kernel drops the lock of a process that dies, so a lock file left by a killed process
is simply taken over (with a message).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from .atomic import atomic_write_json

MARKER = "peftlab-run.json"
# Files a run directory from before markers existed holds (it is still a peftlab run).
_LEGACY_SIGNS = ("config.yaml", "metrics.jsonl")


class OutputExistsError(FileExistsError):
    """An output path holds something peftlab will not replace without being told."""


class LockedError(RuntimeError):
    """Another process is writing to the same output."""


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def read_marker(out: Path) -> dict | None:
    path = Path(out) / MARKER
    if not path.is_file():
        if all((Path(out) / f).is_file() for f in _LEGACY_SIGNS):
            return {"run_id": "legacy"}
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{path}: not a readable run marker ({e}); move it away or pass --overwrite"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
        raise ValueError(f"{path}: not a peftlab run marker (no run_id)")
    return data


def _non_empty(path: Path) -> bool:
    """Holds anything but a marker alone (a run that stopped before writing anything,
    e.g. on a bad option, leaves nothing to protect)."""
    return path.is_dir() and any(p.name != MARKER for p in path.iterdir())


def claim_run_dir(out: Path, resume: bool, overwrite: bool) -> tuple[str, Path | None]:
    """Check ``out`` may be written by this training run; returns (run id, the directory
    the old contents were moved aside to, if any: delete it once the new run has a
    checkpoint, see :func:`drop_aside`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--output {out} is a file, not a directory")
    marker = read_marker(out) if out.is_dir() else None
    if resume and not overwrite:
        if marker is None:
            raise FileNotFoundError(f"--resume: {out} holds no peftlab run to resume")
        return marker["run_id"], None
    aside = None
    if _non_empty(out):
        if not overwrite:
            what = (
                f"an earlier peftlab run (started {marker.get('started', '?')})"
                if marker
                else "files that are not a peftlab run"
            )
            hint = (
                "continue it with --resume, or start again with --overwrite"
                if marker
                else "choose another --output, or pass --overwrite"
            )
            raise OutputExistsError(
                f"--output {out} holds {what}; {hint} (--overwrite moves "
                "the old contents aside until the new run's first "
                "checkpoint is written)"
            )
        aside = out.with_name(f".{out.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.replace(out, aside)
        print(
            f"peftlab: moved the old contents of {out} aside to {aside} (deleted once "
            "the new run has a checkpoint)",
            file=sys.stderr,
        )
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]
    atomic_write_json(
        out / MARKER,
        {
            "run_id": run_id,
            "started": _now(),
            "command": " ".join(sys.argv),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
    )
    return run_id, aside


def drop_aside(aside: Path | None) -> None:
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def refuse_inputs(
    output: str | os.PathLike,
    reads: Iterable[str | os.PathLike] = (),
    homes: Iterable[str | os.PathLike] = (),
    replaced_dir: bool = False,
    flag: str = "--output",
) -> Path:
    """The one check every writer makes before it writes ``output`` (symlinks resolved,
    whatever ``--overwrite`` says): it may not be, lie inside or contain any path in
    ``reads`` (the files and directories the command reads: a model, a dataset, a run's
    adapter files and checkpoints), and it may not be or contain a directory in
    ``homes`` (a run directory: new files may go beside its own, e.g. ``eval.json``).
    ``replaced_dir``: ``output`` is a directory that will be replaced as a whole, so it
    may not be the current directory or contain it either. Returns ``output`` resolved."""
    out = _resolved(output)
    for p in map(_resolved, homes):
        if out == p or out in p.parents:
            raise OutputExistsError(
                f"{flag} {output} is (or contains) the run being read, {p}; choose another "
                "path (--overwrite never replaces an input)"
            )
    for p in map(_resolved, reads):
        if out == p or p in out.parents or out in p.parents:
            where = "is" if out == p else "is inside" if p in out.parents else "contains"
            raise OutputExistsError(
                f"{flag} {output} {where} {p}, which this command reads; choose another "
                "path (--overwrite never replaces an input)"
            )
    if replaced_dir and (out == Path.cwd().resolve() or out in Path.cwd().resolve().parents):
        raise OutputExistsError(
            f"{flag} {output} is the current directory (or contains it), which would be "
            "replaced as a whole; choose a new directory"
        )
    return out


def check_new_output(
    output: Path,
    overwrite: bool,
    protect: Path | None = None,
    reads: Iterable[str | os.PathLike] = (),
    directory: bool = True,
) -> None:
    """For merge/export: ``output`` passes :func:`refuse_inputs` (``protect``: the run
    being read, a home; ``reads``: every input), may not exist unless ``overwrite``, and
    for a file (``directory`` false) is not an existing directory."""
    homes = [protect] if protect is not None else []
    out = refuse_inputs(output, reads, homes, replaced_dir=directory and overwrite)
    if not directory and out.is_dir():
        raise IsADirectoryError(
            f"--output {output} is a directory; give the file to write, e.g. "
            f"{Path(output) / 'model.gguf'}"
        )
    if out.exists() and not overwrite:
        raise OutputExistsError(f"--output {output} exists; pass --overwrite to replace it")


def _holder(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode("utf-8", "replace"))
        return (
            f"pid {info['pid']} on {info['host']}, peftlab {info['command']} since {info['since']}"
        )
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(output: Path, command: str) -> Iterator[None]:
    """Hold an exclusive lock on ``.<name>.peftlab-lock`` beside ``output`` (beside, not
    inside: the directory may be moved aside or swapped while it is held). The file is
    removed on release; a process that took the lock re-checks that its file is still the
    one at the path (another may have released and removed it meanwhile)."""
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    path = output.parent / f".{output.name}.peftlab-lock"
    fd = _acquire(path, output)
    try:
        old = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if old:
            with contextlib.suppress(ValueError, KeyError, json.JSONDecodeError):
                info = json.loads(old)
                if info["host"] == socket.gethostname() and not _alive(int(info["pid"])):
                    print(
                        f"peftlab: took over the lock on {output} left by pid {info['pid']} "
                        "(no longer running)",
                        file=sys.stderr,
                    )
        me = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": _now()}
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # closing drops the flock


def _acquire(path: Path, output: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0))
            os.close(fd)
            raise LockedError(
                f"another peftlab process is writing to {output} ({holder}); "
                "wait for it to finish or choose another output"
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder before us removed this file on release: take the new one
