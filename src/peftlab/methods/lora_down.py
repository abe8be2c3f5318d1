"""A low-rank adapter's first factor with its dropout, keeping no separate mask.

``h = dropout_p(x) · Aᵀ`` written as ``nn.Dropout`` then ``nn.Linear`` makes autograd
keep, per adapted projection, the dropout mask in the input's dtype (fp32 on the residual
stream: 4 bytes per value) and, under autocast, the bf16 cast of the dropped input.

:class:`DropoutDown` keeps only the dropped input, in the compute dtype (which the
matmul's weight gradient needs anyway), with the mask drawn once by
``torch.native_dropout`` as ``nn.Dropout`` draws it and kept inside it: a dropped value is
stored as −0.0 and a kept zero as +0.0, so backward reads the mask back from the sign
bits (:func:`_hide_mask`, :func:`_mask_of`): 2 bytes per value instead of 6, with the
same products (±0 contribute nothing to a matmul). It is the lean form of
``dropout_linear`` (:mod:`.lean`). (Saving the input once for q, k and v with a seed and
drawing the mask again in backward would save a little more, but costs a second random
draw and more passes over the input per step.)
"""

from __future__ import annotations

import torch


class DropoutDown(torch.autograd.Function):
    """``dropout_p(x) · Aᵀ`` in ``dtype``; saves the dropped input, the mask in its signs.
    The gradient of ``A`` is cast to ``A``'s dtype (fp32), that of ``x`` to ``x``'s."""

    @staticmethod
    def forward(ctx, x, weight, p: float, dtype: torch.dtype):
        xd = x.to(dtype)
        if p > 0:
            xd, mask = torch.native_dropout(xd, p, True)
            _hide_mask(xd, mask)
            del mask
        ctx.save_for_backward(xd, weight)
        ctx.p, ctx.x_dtype = p, x.dtype
        return xd @ weight.to(dtype).t()

    @staticmethod
    def backward(ctx, grad_h):
        xd, weight = ctx.saved_tensors
        mask = _mask_of(xd) if ctx.p > 0 else None
        grad_h = grad_h.to(xd.dtype)
        gx = gw = None
        if ctx.needs_input_grad[1]:
            gw = (grad_h.reshape(-1, grad_h.shape[-1]).t() @ xd.reshape(-1, xd.shape[-1])).to(
                weight.dtype
            )
        if ctx.needs_input_grad[0]:
            gx = grad_h @ weight.to(xd.dtype)
            if mask is not None:
                gx = torch.ops.aten.native_dropout_backward(gx, mask, 1.0 / (1.0 - ctx.p))
            gx = gx.to(ctx.x_dtype)
        return gx, gw, None, None


_SIGNED = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _hide_mask(xd: torch.Tensor, mask: torch.Tensor) -> None:
    """In place: kept zeros become +0.0, dropped values −0.0 (sign bit only)."""
    xd.add_(0.0)  # -0.0 + 0.0 is +0.0; every other value is unchanged
    xd.masked_fill_(mask.logical_not(), -0.0)


def _mask_of(xd: torch.Tensor) -> torch.Tensor:
    """The kept positions of a tensor made by :func:`_hide_mask`: all but the values
    whose bits are the sign bit alone."""
    ints = xd.view(_SIGNED[xd.element_size()])
    return ints != torch.iinfo(ints.dtype).min


def lora_down(x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
    """``dropout_p(x) · weightᵀ`` in the autocast dtype (or the weight's, outside
    autocast); ``p`` 0 means no dropout (evaluation, or none configured)."""
    t = x.device.type
    if not torch.is_autocast_enabled(t):
        return DropoutDown.apply(x, weight, p, weight.dtype)
    with torch.autocast(t, enabled=False):  # the Function casts for itself
        return DropoutDown.apply(x, weight, p, torch.get_autocast_dtype(t))
