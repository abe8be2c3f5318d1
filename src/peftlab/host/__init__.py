"""Host memory: the one seam for the CPU's allocator, heap and frozen-weight stash.

Training on the CPU is bounded by the process's resident memory, and there the malloc,
its heap and where the frozen weights live matter as much as the tensors (one epoch of
the embedded model: 0.24x Trainer + peft's peak, BENCHMARKS.md). None of it is how a GPU
run works. So the training loop sees only :class:`HostMemory`, made once per run by
:func:`for_run`, and calls it at a few moments:

    host.start()                 before the model loads: the allocator setting applied
    host.narrowed(layers, dtype) while training: frozen weights in the compute dtype
    host.after_step()            after each optimiser step
    host.end_phase(name)         after loading, each evaluation and the training phase

:class:`HostMemory` itself does only what every device needs (the high-water mark of
each phase, the weight stash in host memory); :class:`CpuHost` adds the heap's part.
The parts: :mod:`.seam` (these classes), :mod:`.malloc` (mimalloc under the ``peftlab``
command, chosen by the entry point before torch loads: so this package imports nothing
until a name is asked for), :mod:`.heap` (allocator settings, trims, mapped pages) and
:mod:`.stash` (the fp32 weights set aside).
"""

from importlib import import_module

__all__ = [
    "ALLOCATOR_MODES",
    "CpuHost",
    "HostMemory",
    "for_run",
    "malloc_name",
    "reclaim",
    "resolve_allocator",
]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module(".seam", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
