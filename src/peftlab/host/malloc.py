"""mimalloc under the command line's processes, in place of glibc's malloc (CPU memory).

mimalloc (Leijen, Zorn and de Moura, 2019, "Mimalloc: Free List Sharding in Action",
MSR-TR-2019-18) keeps blocks of one size class together and gives pages that stay free
back to the OS after a delay. glibc's malloc serves a training step's activations from
one heap whose free space, over an epoch of varying batch shapes, fragments and stays
resident: on the epoch benchmark's first 24 steps (SmolLM2-135M, LoRA, bf16) glibc
peaked at 6.29 GiB in 154 s, mimalloc at 4.58 GiB in 119 s (BENCHMARKS.md).

The allocator has to be in place before Python or torch allocates anything, so the
``peftlab`` command re-executes itself once with ``LD_PRELOAD`` naming the library of
the ``cmeel-mimalloc`` wheel (a dependency on Linux), as Intel's PyTorch launcher does
with jemalloc. ``PEFTLAB_MALLOC=system`` keeps glibc's malloc. The ``allocator``
settings act on either (:func:`peftlab.host.heap.set_allocator`). The re-executed
process takes the preload out of its own environment again, so the processes it starts
begin clean: a ``peftlab`` command among them (compare's runs) re-executes itself, and
distributed ranks stay on glibc (:func:`wanted`). Programs that import peftlab get
mimalloc by starting under :func:`preload_env`'s environment.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

CHOICE_ENV = "PEFTLAB_MALLOC"
"""``mimalloc`` (default where the library is installed) or ``system``."""
_DONE_ENV = "PEFTLAB_MALLOC_TRIED"
"""Set on the re-executed process: never re-execute twice, even if the preload failed."""
PURGE_DELAY_MS = 30_000
"""Free pages go back to the OS after this long unused. mimalloc's own 1 s returned the
pages a step had just freed before the next step wanted them again (24 steps: 167 s,
4.43 GiB; 30 s: 119 s, 4.58 GiB); phases end with :func:`collect`, which returns them
at once."""
_PURGE_DELAY_OPTION = 15
"""``mi_option_purge_delay`` in mimalloc.h's ``mi_option_t`` (2.x and 3.x)."""
_LIB_NAME = "libmimalloc.so"


def library() -> Path | None:
    """The installed ``cmeel-mimalloc`` library (None where it is not installed)."""
    if not sys.platform.startswith("linux"):
        return None
    for entry in sys.path:
        lib = Path(entry or ".") / "cmeel.prefix" / "lib" / _LIB_NAME
        if lib.is_file():
            return lib.resolve()
    return None


@lru_cache(maxsize=1)
def loaded() -> ctypes.CDLL | None:
    """mimalloc's handle when this process runs on it (preloaded), else None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libmimalloc" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def name() -> str:
    """The malloc this process runs on: ``mimalloc`` or ``system``."""
    return "mimalloc" if loaded() is not None else "system"


def wanted() -> bool:
    """Whether the command should run on mimalloc: unless ``PEFTLAB_MALLOC=system``, and
    never in a rank of a distributed launch (``LOCAL_RANK`` set by torch's launcher): on
    mimalloc a rank aborted at exit ("terminate called without an active exception",
    torch's gloo threads) once its run was done."""
    if "LOCAL_RANK" in os.environ:
        return False
    return os.environ.get(CHOICE_ENV, "mimalloc").lower() not in (
        "system",
        "glibc",
        "0",
        "off",
        "no",
    )


def preload_env(env: dict | None = None) -> dict | None:
    """``env`` (default: this process's) with mimalloc preloaded; None without it."""
    lib = library()
    if lib is None:
        return None
    env = dict(os.environ if env is None else env)
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
    if str(lib) not in preload:
        env["LD_PRELOAD"] = ":".join([str(lib), *preload])
    env.setdefault("MIMALLOC_PURGE_DELAY", str(PURGE_DELAY_MS))
    return env


def without_preload(env: dict) -> dict:
    """``env`` without mimalloc in ``LD_PRELOAD`` (other preloads kept)."""
    env = dict(env)
    lib = library()
    kept = [
        p
        for p in env.get("LD_PRELOAD", "").split(":")
        if p and "libmimalloc" not in Path(p).name and (lib is None or p != str(lib))
    ]
    if kept:
        env["LD_PRELOAD"] = ":".join(kept)
    else:
        env.pop("LD_PRELOAD", None)
    return env


def reexec(argv: list[str]) -> None:
    """Start this command again on mimalloc (``python -m peftlab ARGV``) when it is
    wanted, installed and not yet in use; otherwise return and run on as is. A process
    that runs on it takes the preload out of its own environment (its children start
    clean, see the module's docstring)."""
    tried = os.environ.pop(_DONE_ENV, None)
    if loaded() is not None:  # loaded already: the preload is not needed any more
        clean = without_preload(dict(os.environ))
        if "LD_PRELOAD" not in clean:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = clean["LD_PRELOAD"]
    if tried or loaded() is not None or not wanted():
        return
    env = preload_env()
    if env is None:
        return
    env[_DONE_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # the interpreter's own flags (-X, -W, -O, ...) as the command was started with
        flags = getattr(subprocess, "_args_from_interpreter_flags", list)()
        os.execve(sys.executable, [sys.executable, *flags, "-m", "peftlab", *argv], env)
    except OSError:  # cannot exec (odd interpreter): run on glibc
        return


def collect() -> bool:
    """Give mimalloc's free pages back to the OS now; False when not on mimalloc."""
    lib = loaded()
    if lib is None:
        return False
    lib.mi_collect(ctypes.c_bool(True))
    return True


def set_purge_delay(ms: int) -> bool:
    """Return free pages after ``ms`` milliseconds (0: at once); False when not on
    mimalloc, or when the option's number does not hold the delay this process started
    with (another mimalloc version's numbering): then nothing is changed."""
    lib = loaded()
    if lib is None:
        return False
    lib.mi_option_get.restype = ctypes.c_long
    opt = ctypes.c_int(_PURGE_DELAY_OPTION)
    if _delay_set:
        expected = _delay_set[-1]
    else:
        started = os.environ.get("MIMALLOC_PURGE_DELAY", "").strip()
        expected = int(started) if started.lstrip("-").isdigit() else None
    if expected is None or lib.mi_option_get(opt) != expected:
        return False
    lib.mi_option_set(opt, ctypes.c_long(ms))
    _delay_set.append(ms)
    return True


_delay_set: list[int] = []
"""The delays this process has set (the last one is in force)."""
