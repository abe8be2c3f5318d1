"""Devices, mixed precision, seeding and resource readings shared by every command."""

from __future__ import annotations

import os
import platform
import random
import resource
import sys
from functools import lru_cache

import torch

from . import malloc

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}") from None


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but CUDA is not available")
    return dev


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 matmul (AVX-512 BF16 or AMX) — where bf16 autocast
    runs ~2x faster than fp32; elsewhere bf16 is emulated and slower."""
    if sys.platform != "linux":
        return platform.machine() == "arm64"  # Apple silicon has bf16 in its matrix units
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(mode: str, device: torch.device) -> str:
    """Resolve ``auto`` to what accelerate calls ``no``, ``bf16`` or ``fp16``."""
    if mode not in ("auto", "no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, not {mode!r}")
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs a GPU; on CPU use bf16 or no")
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "no"


LEAN_MMAP_THRESHOLD = 1 << 20
"""Allocations from this size up get their own memory map under the lean setting."""
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
ALLOCATOR_MODES = ("auto", "lean", "trim", "default")


@lru_cache(maxsize=1)
def _glibc():
    """glibc, for ``mallopt``, ``malloc_trim`` and ``madvise`` (None elsewhere: musl,
    macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not all(hasattr(lib, f) for f in ("malloc_trim", "mallopt", "madvise")):
        return None
    lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lib


def trim_heap() -> None:
    """Give the heap's free pages back to the OS (``mi_collect`` on mimalloc, glibc's
    ``malloc_trim``; else nothing)."""
    if malloc.collect():
        return
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)


def file_mapped_ranges() -> list[tuple[int, int]]:
    """Address ranges of this process's private file mappings (Linux; else none): where
    safetensors leaves the weights it loads (``mmap``), so their pages count as resident
    for as long as any tensor of the file lives, whatever happens to the others."""
    try:
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1].endswith("p") and parts[4] != "0":
            lo, hi = parts[0].split("-")
            out.append((int(lo, 16), int(hi, 16)))
    return out


def drop_mapped_pages(t: torch.Tensor, ranges: list[tuple[int, int]]) -> int:
    """Release the whole pages of ``t``'s storage if they lie in one of ``ranges``
    (:func:`file_mapped_ranges`) and ``t`` is the storage's only tensor; returns the bytes
    released. For a tensor about to be dropped: a later read of those addresses would see
    the file's bytes again, not the tensor's."""
    storage = t.untyped_storage()
    start, size = storage.data_ptr(), storage.nbytes()
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    lib = _glibc()
    if lib is None or use_count is None or use_count(storage._cdata) > 2:
        return 0  # (2: ``t`` and the ``storage`` object here)
    if not any(lo <= start and start + size <= hi for lo, hi in ranges):
        return 0
    page = os.sysconf("SC_PAGE_SIZE")
    first, last = -(-start // page) * page, (start + size) // page * page
    if last <= first:
        return 0
    if lib.madvise(first, last - first, 4) != 0:  # MADV_DONTNEED
        return 0
    return last - first


def resolve_allocator(mode: str, memory_first: bool = False) -> str:
    """``auto`` → ``lean`` for memory-first methods (QLoRA), else ``default`` (fastest:
    on alpaca_en_demo, before the token budget, ``trim`` cut the epoch's peak from 13.7
    to 10.3 GiB but took 31% longer; BENCHMARKS.md)."""
    if mode not in ALLOCATOR_MODES:
        raise ValueError(f"allocator must be one of {', '.join(ALLOCATOR_MODES)}, not "
                         f"{mode!r}")
    if mode == "auto":
        return "lean" if memory_first else "default"
    return mode


def set_allocator(mode: str, memory_first: bool = False) -> str:
    """Apply the ``allocator`` option (CPU memory); returns the setting in force:
    ``lean``, ``trim`` (the loop calls :func:`trim_heap` after every step) or ``default``.

    glibc serves freed buffers again from its heap, raises its memory-map threshold as
    buffers are freed (up to 32 MB) and keeps the heap's free pages: a training step's
    peak resident memory grows well past its live tensors, and over an epoch of varying
    batch shapes the heap fragments further (measured: QLoRA on a 191M model, 3.0 GiB
    against 1.8 GiB lean). ``lean`` fixes the threshold at 1 MiB: every larger buffer is
    mapped on allocation and unmapped on free, at the cost of zeroing fresh pages (~1.5x
    slower steps on CPU). ``trim`` returns the free pages once per step. Without glibc
    the setting is ``default`` whatever was asked.

    On mimalloc (:mod:`.malloc`, what the ``peftlab`` command runs on) the same settings
    mean: ``default`` returns free pages after 30 s unused, ``lean`` at once, ``trim``
    once per step.
    """
    mode = resolve_allocator(mode, memory_first)
    if malloc.loaded() is not None:
        if mode == "lean" and not malloc.set_purge_delay(0):
            return "default"
        return mode
    lib = _glibc()
    if mode == "default" or lib is None:
        return "default"
    if mode == "lean" and not lib.mallopt(_M_MMAP_THRESHOLD, LEAN_MMAP_THRESHOLD):
        return "default"
    return mode


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak GPU memory allocated on CUDA; peak resident set size of the process on CPU.

    On Linux the process's own high-water mark (``VmHWM``): ``ru_maxrss`` also counts the
    parent's resident set at the fork that started this process (Linux keeps the old
    address space's mark across ``exec``), so a child of a large process would report
    at least its parent's size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def end_phase(phases: dict, name: str, device: torch.device) -> None:
    """Record the high-water mark after a phase of a run (load, evaluation, training);
    on CPU then give the heap's free pages back, so the next phase starts from live
    tensors. Without it, glibc keeps a phase's freed buffers resident, and the next
    phase's allocations (generation's bf16 weight copies after training, say) land on
    top of them: a 3-step capped run measured ~25% above its plan that way."""
    phases[name] = peak_memory_bytes(device)
    if device.type == "cpu":
        trim_heap()


def environment() -> dict:
    """Library versions and hardware, saved with every result."""
    import accelerate
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "cpu": platform.processor() or platform.machine(), "threads":
                torch.get_num_threads(), "cpus": os.cpu_count(), "malloc": malloc.name()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
