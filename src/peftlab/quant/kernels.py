"""Dequantization kernels for NF4 weights, chosen by name, all giving the same bits.

- ``torch`` (pure PyTorch, the fallback everywhere): :func:`~.nf4.dequantize_nf4`, one
  gather per *byte* from a 256-entry table of level pairs, in cache-sized chunks.
- ``bitsandbytes``: bitsandbytes' own C++/CUDA kernel (``torch.ops.bitsandbytes.
  dequantize_4bit``), when it is installed and supports the device. Before its first use
  on a (device, dtype) its output is compared bit for bit with ``torch`` on a probe
  tensor; a mismatch turns it off with a warning, so numerics never depend on the switch.
- ``auto``: ``bitsandbytes`` for large weights (7B-class layers) when it is installed,
  ``torch`` otherwise (what measured fastest per training step here; BENCHMARKS.md),
  unless ``PEFTLAB_NF4_KERNEL`` names one.

:func:`workspace` hands out one reusable buffer per thread, device and dtype for the
dense weight a 4-bit matmul needs for a moment. On the CPU a fresh buffer of a large
weight is new memory the kernel must fault in page by page (measured: 8x slower than
writing into memory already mapped), and it is freed straight back; reusing one buffer
for every layer costs one weight's worth of memory, which the step needed anyway.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import threading
import warnings

import torch

from .nf4 import NF4Tensor, block_absmax, dequantize_nf4, quantize_nf4

KERNELS = ("auto", "torch", "bitsandbytes")
ENV_VAR = "PEFTLAB_NF4_KERNEL"
# Elements per bitsandbytes call: its CPU op has no out= form, so it writes a chunk that
# stays in cache and is copied into the buffer (a whole large weight would be fresh pages).
_BNB_CHUNK = 1 << 18

AUTO_BNB_MIN = 1 << 24
"""``auto`` picks bitsandbytes' kernel (when installed) for weights this large: on this
CPU it dequantized a Mistral-7B-shaped decoder layer's weights faster (fwd + bwd of one
layer, 256 tokens: 413 against 569 ms), while for the 191M model's layers (2M values)
the pure kernel made the faster step (BENCHMARKS.md)."""

_local = threading.local()


def check_kernel(name: str) -> str:
    if name not in KERNELS:
        raise ValueError(f"nf4 kernel must be one of {', '.join(KERNELS)}, not {name!r}")
    return name


def resolve_kernel(name: str, device: torch.device, numel: int = 0) -> str:
    """The kernel that will run for ``name`` on ``device`` for a weight of ``numel``
    values: ``torch`` or ``bitsandbytes`` (only where it is installed, supports the
    device and matched the pure path on the probe). ``auto``: bitsandbytes' for weights
    of :data:`AUTO_BNB_MIN` values or more when it is installed, else torch."""
    check_kernel(name)
    if name == "auto":
        name = check_kernel(os.environ.get(ENV_VAR, "auto") or "auto")
        if name == "auto":
            name = "bitsandbytes" if numel >= AUTO_BNB_MIN and bitsandbytes_installed() else "torch"
    if name == "bitsandbytes" and not _bnb_usable(device.type):
        return "torch"
    return name


@functools.cache
def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


@functools.cache
def _bnb_op():
    if not bitsandbytes_installed():
        return None
    # bitsandbytes logs a warning about an optional kernels package on import.
    log = logging.getLogger("bitsandbytes")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import bitsandbytes  # noqa: F401  (registers torch.ops.bitsandbytes)
    except Exception:  # noqa: BLE001  (a broken install is the same as none here)
        return None
    finally:
        log.setLevel(level)
    return torch.ops.bitsandbytes.dequantize_4bit.default


@functools.cache
def _bnb_usable(device_type: str) -> bool:
    op = _bnb_op()
    if op is None or device_type not in ("cpu", "cuda"):
        return False
    g = torch.Generator().manual_seed(0)
    probe = quantize_nf4((torch.randn(64, 4096, generator=g) * 0.02).to(device_type))
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        try:
            got = _bnb_dequantize(
                probe, dtype, torch.empty(probe.shape, dtype=dtype, device=device_type)
            )
        except Exception as e:  # noqa: BLE001
            warnings.warn(
                f"bitsandbytes' NF4 kernel failed on {device_type} ({e}); "
                "using the pure PyTorch one",
                stacklevel=3,
            )
            return False
        if not torch.equal(got, dequantize_nf4(probe, dtype)):
            warnings.warn(
                f"bitsandbytes' NF4 kernel does not match peftlab's bit for bit "
                f"on {device_type} ({dtype}); using the pure PyTorch one",
                stacklevel=3,
            )
            return False
    return True


def _bnb_dequantize(q: NF4Tensor, dtype: torch.dtype, out: torch.Tensor) -> torch.Tensor:
    op, n, bs = _bnb_op(), q.numel, q.blocksize
    absmax = block_absmax(q)
    flat = out.view(-1)
    step = _BNB_CHUNK if out.device.type == "cpu" else n
    for start in range(0, n, step):
        stop = min(start + step, n)
        # every chunk but the last is whole blocks and whole bytes (step % 64 == 0)
        flat[start:stop] = op(
            q.packed[start // 2 : (stop + 1) // 2],
            absmax[start // bs : -(-stop // bs)],
            bs,
            "nf4",
            (stop - start,),
            dtype,
        )
    return out


def dequantize(
    q: NF4Tensor, dtype: torch.dtype, kernel: str = "auto", out: torch.Tensor | None = None
) -> torch.Tensor:
    """``dequantize_nf4(q, dtype, out)`` with the kernel ``kernel`` resolves to."""
    if out is None:
        out = torch.empty(q.shape, dtype=dtype, device=q.packed.device)
    if resolve_kernel(kernel, q.packed.device, q.numel) == "bitsandbytes" and q.blocksize in (
        32,
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
    ):
        return _bnb_dequantize(q, dtype, out)
    return dequantize_nf4(q, dtype, out=out)


def _thread_dict(name: str) -> dict:
    """This thread's dict ``name`` of buffers (made on first use)."""
    d = getattr(_local, name, None)
    if d is None:
        d = {}
        setattr(_local, name, d)
    return d


def workspace(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A reusable contiguous buffer of ``shape`` for this thread: valid until the next
    call with the same device and dtype, so the caller must be done with it by then (a
    4-bit matmul is). On a GPU, where the caching allocator already reuses memory, a
    fresh tensor."""
    if device.type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    pool = _thread_dict("pool")
    n = shape.numel()
    buf = pool.get(dtype)
    if buf is None or buf.numel() < n:
        with torch.inference_mode(False):  # usable later outside inference mode too
            buf = pool[dtype] = torch.empty(n, dtype=dtype)
    return buf[:n].view(shape)


def borrow(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A buffer of ``shape`` that stays the caller's until :func:`give_back` (the dense
    weights a checkpointing recomputation hands to backward: several are alive at
    once, one decoder layer's worth). On the CPU a returned buffer of the same size and
    dtype is reused, so these weights are not fresh pages faulted in at every step."""
    if device.type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    free = _thread_dict("spare").get((dtype, shape.numel()))
    if free:
        return free.pop().view(shape)
    with torch.inference_mode(False):
        return torch.empty(shape, dtype=dtype)


def give_back(buf: torch.Tensor) -> None:
    """Return a buffer from :func:`borrow` for reuse (CPU; elsewhere nothing)."""
    if buf.device.type != "cpu":
        return
    _thread_dict("spare").setdefault((buf.dtype, buf.numel()), []).append(buf.view(-1))


def release_workspace() -> None:
    """Free this thread's buffers (e.g. after training, before a long generation)."""
    _local.pool, _local.spare = {}, {}
