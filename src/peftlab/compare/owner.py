"""``peftlab compare`` owns its output directory as ``train`` owns a run's, and its
child processes live no longer than it does.

The directory is marked with ``peftlab-compare.json`` when a comparison starts. A rerun
into a marked directory goes on where the last one stopped (finished rows are kept); a
non-empty directory that is not a comparison (a user's ``report.md``, someone else's
``results.jsonl``, a training run) is refused unless ``--overwrite``, which moves the
old contents aside until the new comparison has written its first row. One comparison
writes a directory at a time (the lock of :func:`peftlab.core.rundir.output_lock`).

Each run trains in a child process that gets SIGTERM when the comparison dies, however
it dies (Linux's parent-death signal; kill -9 included): the child cleans up as on
Ctrl-C and releases its run's lock, and the next comparison waits for that lock to be
free before it resumes the run.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from ..core.atomic import atomic_write_json
from ..core.rundir import MARKER as RUN_MARKER
from ..core.rundir import LockedError, OutputExistsError, output_lock

MARKER = "peftlab-compare.json"
LEGACY_SIGNS = ("results.jsonl", "runs")
"""What a comparison written before markers existed holds (both)."""
LOCK_WAIT_S = 60.0
"""How long a rerun waits for a run's lock still held by a child of a comparison that
was killed (it is exiting on its SIGTERM: cleanups take seconds)."""
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent dies."""


def _ours(out: Path) -> bool:
    if (out / MARKER).is_file():
        return True
    return all((out / f).exists() for f in LEGACY_SIGNS) and not (out / RUN_MARKER).exists()


def claim_compare_dir(out: Path, overwrite: bool) -> Path | None:
    """Check that ``out`` may hold this comparison and mark it; returns where the old
    contents were moved aside (``overwrite``), to drop once a row is written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--output {out} is a file, not a directory")
    aside = None
    non_empty = out.is_dir() and any(out.iterdir())
    if non_empty and (overwrite or not _ours(out)):
        if not overwrite:
            raise OutputExistsError(
                f"--output {out} holds files that are not a peftlab comparison; choose "
                "another --output, or pass --overwrite (the old contents are moved aside "
                "until the new comparison's first result is written)"
            )
        aside = out.with_name(f".{out.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.replace(out, aside)
        print(f"peftlab: moved the old contents of {out} aside to {aside}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        atomic_write_json(
            out / MARKER,
            {
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv),
                "pid": os.getpid(),
            },
        )
    return aside


def die_with_parent() -> None:
    """``preexec_fn`` of a child: SIGTERM when the parent dies (Linux; elsewhere the
    harness's own cleanup is all there is)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


def wait_until_free(run_dir: Path, log, seconds: float = LOCK_WAIT_S) -> None:
    """Wait while another process (a child of a killed comparison) still writes
    ``run_dir``; raise :class:`LockedError` after ``seconds``."""
    deadline, said = time.monotonic() + seconds, False
    while True:
        try:
            with output_lock(run_dir, "compare"):
                return
        except LockedError as e:
            if time.monotonic() > deadline:
                raise
            if not said:
                log(f"waiting for the earlier writer of {run_dir} to exit ({e})")
                said = True
            time.sleep(0.2)


def run_child(args: list[str], log_path: Path) -> tuple[int, str]:
    """Run ``python -m peftlab ...`` (dying with this process), echoing its stderr live
    and keeping it in a log; (exit status, its last error line or last line)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "peftlab", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        try:
            while chunk := proc.stderr.read1(4096):
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
                logf.write(chunk)
        finally:  # Ctrl-C, SIGTERM or an error here: the run must not train on alone
            stop_child(proc)
        rc = proc.wait()
    tail = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in tail if "error" in ln.lower()]
    return rc, (errors[-1] if errors else tail[-1] if tail else f"exit status {rc}")


def stop_child(proc, grace: float = 30.0) -> None:
    """SIGTERM (the child cleans up as on Ctrl-C), then SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
