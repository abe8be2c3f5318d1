"""Weights ready for generation: no per-token work that is the same for every token.

Decoding runs every Linear once per new token. Two costs repeat although the weights do
not change while generating:

- under autocast (bf16 on this CPU), every fp32 weight is cast to bf16 at every call:
  autocast caches casts only of weights that require grad, inside a grad-enabled region;
- a 4-bit (NF4) base is dequantized again at every call.

:func:`inference_weights` removes both for the duration of a generation: each frozen
``nn.Linear`` gets a copy of its weight (and bias) in the autocast dtype, each
:class:`~peftlab.quant.linear4bit.Linear4bit` a dense copy of its weight. The numbers
are the same bits as without the cache (a bf16 matmul of the same bf16 operands);
memory grows by 2 bytes per cached weight in bf16 (4 in fp32), which is why there is a
budget (at most 4 GiB and a quarter of the memory free): layers are cached in model order
until it is spent.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..quant import kernels
from ..quant.linear4bit import Linear4bit

DEFAULT_BUDGET = 4 * 2**30
"""Extra bytes the cache may take by default (``PEFTLAB_GENERATION_CACHE`` overrides it,
in bytes; 0 turns the cache off)."""


_LIMIT: list[int] = []  # innermost last: budget_limit() contexts in force


@contextlib.contextmanager
def budget_limit(limit: int | None):
    """Within the block the cache takes at most ``limit`` bytes (None: no limit): a run
    under ``max_memory`` keeps generation inside its plan (``generation_cache``)."""
    if limit is None:
        yield
        return
    _LIMIT.append(int(limit))
    try:
        yield
    finally:
        _LIMIT.pop()


def cache_budget(device: torch.device | None = None) -> int:
    """``PEFTLAB_GENERATION_CACHE`` if set; else the smaller of :data:`DEFAULT_BUDGET`
    and a quarter of the memory free now on ``device`` (so that a 4-bit model, whose
    point is its small footprint, is not made dense behind the user's back); never more
    than a :func:`budget_limit` in force."""
    budget = _cache_budget(device)
    return min(budget, _LIMIT[-1]) if _LIMIT else budget


def env_budget() -> int | None:
    """``PEFTLAB_GENERATION_CACHE`` in bytes, or None when it is not set."""
    raw = os.environ.get("PEFTLAB_GENERATION_CACHE", "")
    if not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"PEFTLAB_GENERATION_CACHE must be a number of bytes (0 turns "
            f"the generation copies off), got {raw!r}"
        ) from None


def _cache_budget(device: torch.device | None) -> int:
    if (budget := env_budget()) is not None:
        return budget
    free = _free_bytes(device or torch.device("cpu"))
    return DEFAULT_BUDGET if free is None else min(DEFAULT_BUDGET, free // 4)


def _free_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _compute_dtype(device: torch.device, layer: nn.Module) -> torch.dtype | None:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return getattr(layer, "compute_dtype", None)  # a 4-bit layer outside autocast


def _plain(t: torch.Tensor) -> bool:
    """A tensor with its values here (not a DTensor shard under FSDP)."""
    return type(t.detach()) is torch.Tensor


def _cast_forward(layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None):
    original = type(layer).forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        t = x.device.type
        if (
            torch.is_grad_enabled()
            or not torch.is_autocast_enabled(t)
            or torch.get_autocast_dtype(t) != weight.dtype
        ):
            return original(layer, x)  # not the setting the copy was made for
        return F.linear(x.to(weight.dtype), weight, bias)

    return forward


@contextlib.contextmanager
def inference_weights(model: nn.Module, device: torch.device, budget: int | None = None):
    """Within the block, frozen Linears compute from cached copies (see module doc);
    call it inside the autocast region the generation runs in. Yields the bytes cached."""
    budget = cache_budget(device) if budget is None else budget
    # The 4-bit matmul's reusable buffers are not needed while generating: give them back.
    kernels.release_workspace()
    cast_layers, dense_layers, used = [], [], 0
    try:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, Linear4bit):
                    dtype = _compute_dtype(device, module)
                    size = module.weight_numel * dtype.itemsize
                    if used + size > budget:
                        break
                    module._dense = module.dequantized_weight(dtype)
                    dense_layers.append(module)
                elif type(module) is nn.Linear and _plain(module.weight):
                    # (any Linear: generation changes no weight; a sharded one is left
                    # alone, its values exist only while its layer runs)
                    dtype = _compute_dtype(device, module)
                    if dtype is None or dtype == module.weight.dtype:
                        continue
                    size = module.weight.numel() * dtype.itemsize
                    if used + size > budget:
                        break
                    bias = module.bias.to(dtype) if module.bias is not None else None
                    module.forward = _cast_forward(module, module.weight.to(dtype), bias)
                    cast_layers.append(module)
                else:
                    continue
                used += size
        yield used
    finally:
        for module in dense_layers:
            module._dense = None
        for module in cast_layers:
            del module.forward
