"""Frozen weights stored in the compute dtype while training under autocast.

Under bf16 autocast every fp32 frozen projection is cast to bf16 at each use, so the
fp32 bits serve no computation of a training step; they only matter afterwards, when an
adapter is merged into the base (in fp32) or the model runs without autocast. While the
loop runs, :func:`narrowed` therefore keeps each frozen Linear weight that only its own
forward reads (the training loop names them: ``methods.frozen.castable_linears``) in the
compute dtype, and sets the fp32 weights aside: in a temporary file beside the run on
CPU (the memory being saved is the host's), in host memory for a GPU run. They are put
back bit for bit when the loop ends, however it ends. Every value a step computes is the
same (autocast of the fp32 weight gives these very bits); the base's share of memory
halves: 0.2 GiB of SmolLM2-135M's 0.54 GB, 13 GiB of an fp32 Mistral-7B's 29 GB.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .heap import drop_mapped_pages, file_mapped_ranges, trim_heap


class _FileStash:
    """fp32 tensors written one after another to a temporary file, read back in place
    into fresh tensors (no copy of the whole set in memory at any time)."""

    def __init__(self, folder: Path):
        fd, self.path = tempfile.mkstemp(dir=folder, prefix=".fp32-weights.", suffix=".tmp")
        self.file = os.fdopen(fd, "w+b")
        self.index: dict[str, tuple[int, torch.Size, torch.dtype]] = {}

    def put(self, name: str, t: torch.Tensor) -> None:
        t = t.detach().contiguous()
        self.index[name] = (self.file.tell(), t.shape, t.dtype)
        self.file.write(memoryview(t.view(torch.uint8).numpy()))

    def get(self, name: str) -> torch.Tensor:
        offset, shape, dtype = self.index[name]
        out = torch.empty(shape, dtype=dtype)
        self.file.seek(offset)
        view = memoryview(out.view(torch.uint8).numpy())
        if self.file.readinto(view) != view.nbytes:
            raise OSError(
                f"{self.path}: the fp32 weights set aside for training came back short at {name}"
            )
        return out

    def ready(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        Path(self.path).unlink(missing_ok=True)


class _HostStash:
    """fp32 tensors copied to host memory (a GPU run)."""

    def __init__(self):
        self.kept: dict[str, torch.Tensor] = {}

    def put(self, name: str, t: torch.Tensor) -> None:
        self.kept[name] = t.detach().to("cpu", copy=True)

    def get(self, name: str) -> torch.Tensor:
        return self.kept[name]

    def ready(self) -> None:
        pass

    def close(self) -> None:
        self.kept.clear()


@contextlib.contextmanager
def narrowed(
    layers: dict[str, nn.Module],
    dtype: torch.dtype | None,
    folder: Path,
    log=None,
    spill: bool = True,
):
    """Within the block, the weights of ``layers`` (by name) are stored in ``dtype``
    (None, or no layers: nothing changes); yields the bytes saved. The originals are set
    aside (``spill``: in a temporary file under ``folder``, and the pages they held go
    back to the OS; else copied to host memory) and restored bit for bit on exit, however
    the block ends. If they cannot be set aside (a full disk), the weights stay as they
    are and ``log`` says so."""
    if dtype is None or not layers:
        yield 0
        return
    device = next(iter(layers.values())).weight.device
    spill = spill and device.type == "cpu"
    make = (lambda: _FileStash(Path(folder))) if spill else _HostStash
    stash = _set_aside(layers, make, folder, log)
    if stash is None:
        yield 0
        return
    saved = 0
    # Weights that safetensors left in its file mapping: their pages stay resident while
    # the other weights keep the mapping, unless released by hand.
    mapped = file_mapped_ranges() if spill else []
    try:
        with torch.no_grad():
            for m in layers.values():
                w = m.weight.data
                saved += w.numel() * (w.element_size() - dtype.itemsize)
                m.weight.data = w.to(dtype)
                if mapped:
                    drop_mapped_pages(w, mapped)
                del w
        if spill:
            trim_heap()  # the fp32 weights' pages back to the OS, not kept in the heap
        if log is not None:
            where = stash.path if isinstance(stash, _FileStash) else "host memory"
            log(
                f"frozen weights of {len(layers)} Linear layers stored in "
                f"{str(dtype).removeprefix('torch.')} while training "
                f"({saved / 2**30:.2f} GiB less; the originals wait in {where})"
            )
        yield saved
    finally:
        try:
            with torch.no_grad():
                for name, m in layers.items():
                    m.weight.data = stash.get(name).to(device)
        finally:
            stash.close()
            if spill:
                trim_heap()


def _set_aside(layers: dict[str, nn.Module], make_stash, folder: Path, log):
    """The stash holding every layer's weight, or None (logged) when it cannot."""
    stash = None
    try:
        stash = make_stash()
        for name, m in layers.items():
            stash.put(name, m.weight.data)
        stash.ready()
        return stash
    except OSError as e:
        if stash is not None:
            stash.close()
        if log is not None:
            log(
                f"warning: frozen weights stay in {next(iter(layers.values())).weight.dtype}"
                f" while training: could not set them aside under {folder} ({e})"
            )
        return None
