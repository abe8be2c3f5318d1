"""LoRA's first factor with its dropout, saving only the layer's input for backward.

``h = dropout_p(x) · Aᵀ`` written as ``nn.Dropout`` then ``nn.Linear`` makes autograd
keep, per adapted projection, the dropout mask (in the input's dtype: fp32 on the
residual stream), the dropped input, and under autocast its bf16 cast: on a Llama block
with every linear layer adapted that is 25.7 KB per token per layer for SmolLM2-135M,
more than half of everything a training step saves. q, k and v (and gate and up) read the
same input, yet each kept its own three copies.

:class:`DropoutDown` keeps the input itself (one tensor, shared by every projection that
reads it) and a seed: backward draws the same mask again from the seed and recomputes
the dropped input, an elementwise pass over one activation. Same values and gradients as
the two modules (the mask is drawn from its own generator, so a given seed gives other
masks than ``nn.Dropout`` would).
"""

from __future__ import annotations

import torch

_SEED_RANGE = 1 << 62


def _dropped(x: torch.Tensor, p: float, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype`` with the dropout of ``seed`` applied (scaled by 1 / (1 - p))."""
    out = x.to(dtype)
    if p > 0:
        out = out * _mask(x, p, seed, dtype)
    return out


def _mask(x: torch.Tensor, p: float, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator(device=x.device).manual_seed(seed)
    keep = torch.empty(x.shape, dtype=dtype, device=x.device).bernoulli_(1.0 - p, generator=g)
    return keep.mul_(1.0 / (1.0 - p))


class DropoutDown(torch.autograd.Function):
    """``dropout_p(x) · Aᵀ`` computed in ``dtype``; saves ``x`` and a seed, not the mask
    or the dropped copy. The gradient of ``A`` is cast to ``A``'s dtype (fp32)."""

    @staticmethod
    def forward(ctx, x, weight, p: float, dtype: torch.dtype, seed: int):
        ctx.save_for_backward(x, weight)
        ctx.p, ctx.dtype, ctx.seed = p, dtype, seed
        return _dropped(x, p, seed, dtype) @ weight.to(dtype).t()

    @staticmethod
    def backward(ctx, grad_h):
        x, weight = ctx.saved_tensors
        p, dtype, seed = ctx.p, ctx.dtype, ctx.seed
        grad_h = grad_h.to(dtype)
        gx = gw = None
        if ctx.needs_input_grad[1]:
            xd = _dropped(x, p, seed, dtype)
            gw = (grad_h.reshape(-1, grad_h.shape[-1]).t()
                  @ xd.reshape(-1, xd.shape[-1])).to(weight.dtype)
            del xd
        if ctx.needs_input_grad[0]:
            gx = grad_h @ weight.to(dtype)
            if p > 0:
                gx = gx * _mask(x, p, seed, dtype)
            gx = gx.to(x.dtype)
        return gx, gw, None, None, None


def lora_down(x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
    """``dropout_p(x) · weightᵀ`` in the autocast dtype (or the weight's, outside
    autocast); ``p`` 0 means no dropout (evaluation, or none configured)."""
    t = x.device.type
    dtype = torch.get_autocast_dtype(t) if torch.is_autocast_enabled(t) else weight.dtype
    seed = int(torch.randint(_SEED_RANGE, (1,)).item()) if p > 0 else 0
    with torch.autocast(t, enabled=False) if torch.is_autocast_enabled(t) else \
            _nullcontext():
        return DropoutDown.apply(x, weight, p, dtype, seed)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
