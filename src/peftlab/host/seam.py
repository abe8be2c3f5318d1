"""The host-memory seam's interface and its two implementations (see the package)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..core.runtime import peak_memory_bytes, resident_bytes
from . import malloc
from .heap import ALLOCATOR_MODES, resolve_allocator, set_allocator, trim_heap
from .stash import narrowed

__all__ = [
    "ALLOCATOR_MODES",
    "CpuHost",
    "HostMemory",
    "for_run",
    "malloc_name",
    "reclaim",
    "resolve_allocator",
]


class HostMemory:
    """The seam's interface, and what it does where the heap is not ours to manage (a
    GPU run): phases recorded, nothing else."""

    allocator = "default"

    def __init__(self, device: torch.device, log: Callable[[str], None] = print):
        self.device, self.log = device, log
        self.phases: dict[str, int] = {}

    def start(self) -> None:
        """Before the model loads."""
        self.phases["start"] = peak_memory_bytes(self.device)

    def after_step(self) -> None:
        """After each optimiser step."""

    def end_phase(self, name: str) -> None:
        """Record the high-water mark after a phase: the first to reach the peak set it."""
        self.phases[name] = peak_memory_bytes(self.device)

    def narrowed(self, layers: dict, dtype: torch.dtype | None, folder: Path, log=None):
        """A context in which the frozen ``layers``' weights are stored in ``dtype``;
        yields the bytes saved (:func:`.stash.narrowed`)."""
        return narrowed(layers, dtype, folder, log, spill=False)

    def describe(self) -> str:
        return ""

    def summary(self) -> dict:
        """What results.json records of the host."""
        return {"allocator": self.allocator, "malloc": None, "memory_phases": self.phases}

    def environment(self) -> dict:
        """What the run's environment record says of the host."""
        return {"malloc": malloc.name()}


class CpuHost(HostMemory):
    """A CPU run: the ``allocator`` setting applied, free pages given back between
    phases (the next phase starts from live tensors: without it a 3-step capped run
    measured ~25% above its plan), every step under ``trim``, or when the resident set
    leaves less than ``room`` below ``cap`` (``--max-memory``), and frozen fp32 weights
    spilled to a file while training."""

    def __init__(
        self,
        device: torch.device,
        allocator: str = "auto",
        memory_first: bool = False,
        cap: int | None = None,
        room: int = 0,
        log: Callable[[str], None] = print,
    ):
        super().__init__(device, log)
        self.asked, self.memory_first = allocator, memory_first
        self.limit = cap - room if cap else None
        self.cap = cap

    def start(self) -> None:
        trim_heap()  # whatever ran before the run (the planner's probes) freed
        self.allocator = set_allocator(self.asked, self.memory_first)
        super().start()

    def after_step(self) -> None:
        if self.allocator == "trim":
            trim_heap()
        elif self.limit is not None and resident_bytes() > self.limit:
            self._make_room()

    def _make_room(self) -> None:
        """Under ``--max-memory``: glibc's heap keeps freed activations and, over a long
        run of varying batch shapes, fragments (an epoch of alpaca_en_demo: 8.7 GiB
        against ~4 GiB of live tensors), which no prediction of live memory covers. The
        free pages go back to the OS; if that is not enough, buffers of 1 MiB and more
        are mapped fresh from then on (the lean setting, slower steps)."""
        trim_heap()
        if resident_bytes() > self.limit and self.allocator != "lean":
            if set_allocator("lean") == "lean":
                self.allocator = "lean"
                from ..core.sizes import describe_bytes

                self.log(
                    f"--max-memory: the heap keeps {describe_bytes(resident_bytes())}"
                    f" between steps, too close to {describe_bytes(self.cap)}: freed "
                    "buffers go back to the OS at once from now on (allocator lean)"
                )

    def end_phase(self, name: str) -> None:
        super().end_phase(name)
        trim_heap()

    def narrowed(self, layers: dict, dtype: torch.dtype | None, folder: Path, log=None):
        return narrowed(layers, dtype, folder, log, spill=True)

    def describe(self) -> str:
        return f"allocator {self.allocator} ({malloc.name()})"

    def summary(self) -> dict:
        return {**super().summary(), "allocator": self.allocator, "malloc": malloc.name()}


def for_run(
    device: torch.device,
    allocator: str = "auto",
    memory_first: bool = False,
    cap: int | None = None,
    room: int = 0,
    log: Callable[[str], None] = print,
) -> HostMemory:
    """The host-memory manager of one run on ``device``."""
    if device.type == "cpu":
        return CpuHost(device, allocator, memory_first, cap, room, log)
    return HostMemory(device, log)


def reclaim() -> None:
    """Give freed memory back to the OS now (a loader calls it between large tensors)."""
    trim_heap()


def malloc_name() -> str:
    """The malloc this process runs on: ``mimalloc`` or ``system``."""
    return malloc.name()
