"""The process heap on the CPU: the ``allocator`` setting, giving free pages back to the
OS, and releasing the pages of weights left in a file mapping.

glibc serves freed buffers again from its heap, raises its memory-map threshold as
buffers are freed (up to 32 MB) and keeps the heap's free pages: a training step's peak
resident memory grows well past its live tensors, and over an epoch of varying batch
shapes the heap fragments further. The ``allocator`` option trades speed for memory:

- ``default``: as the malloc in use behaves (mimalloc returns pages after 30 s unused);
- ``trim``: the heap's free pages go back to the OS after every step;
- ``lean``: on glibc every buffer of 1 MiB and more is mapped on allocation and unmapped
  on free (``mallopt(M_MMAP_THRESHOLD)``), at the cost of zeroing fresh pages; on
  mimalloc free pages are returned at once;
- ``auto``: ``lean`` for a method that exists to save memory (QLoRA) on glibc's malloc,
  else ``default``. On mimalloc ``lean`` (pages returned at once) faults every buffer in
  again each time it is allocated (a purge delay of 1 s instead of 30 s already made
  LoRA's steps 1.4x slower, :mod:`.malloc`); ``make demo`` on mimalloc trained QLoRA at
  half LoRA's speed under ``lean`` (issue 27). ``default`` gives up part of QLoRA's lower
  CPU peak for that speed (how much is not yet measured on mimalloc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache

import torch

from . import malloc

ALLOCATOR_MODES = ("auto", "lean", "trim", "default")
LEAN_MMAP_THRESHOLD = 1 << 20
"""Allocations from this size up get their own memory map under the lean setting."""
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_MADV_DONTNEED = 4


@lru_cache(maxsize=1)
def _glibc():
    """glibc, for ``mallopt``, ``malloc_trim`` and ``madvise`` (None elsewhere: musl,
    macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
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


def resolve_allocator(
    mode: str, memory_first: bool = False, on_mimalloc: bool | None = None
) -> str:
    """``auto`` → ``lean`` for memory-first methods (QLoRA) on glibc's malloc, else
    ``default`` (the fastest; BENCHMARKS.md). ``on_mimalloc``: whether this process runs
    on mimalloc (None: find out)."""
    if mode not in ALLOCATOR_MODES:
        raise ValueError(f"allocator must be one of {', '.join(ALLOCATOR_MODES)}, not {mode!r}")
    if mode == "auto":
        if on_mimalloc is None:
            on_mimalloc = malloc.loaded() is not None
        return "lean" if memory_first and not on_mimalloc else "default"
    return mode


def set_allocator(mode: str, memory_first: bool = False) -> str:
    """Apply the ``allocator`` option; returns the setting in force (``default`` where
    the malloc in use cannot do what was asked)."""
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
    if lib.madvise(first, last - first, _MADV_DONTNEED) != 0:
        return 0
    return last - first
