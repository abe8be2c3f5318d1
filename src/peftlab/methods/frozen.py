"""A frozen ``nn.Linear`` under autocast that keeps no weight copy for backward.

Under autocast, ``F.linear`` casts the fp32 weight to bf16 and autograd keeps that copy
until backward (it needs the weight for the input's gradient). For a frozen base layer
the fp32 parameter is alive anyway, so :class:`FrozenLinear` keeps only a reference to
it and casts again in backward: no bf16 copy of any adapted layer's weight is held from
forward to backward, for one more cast of each weight per backward. The values and
gradients are those of ``F.linear`` under autocast, bit for bit. It is the lean form of
``frozen_linear`` (:mod:`.lean`).

:func:`castable_linears` names the frozen Linear layers whose weight only their own
forward reads: while training under autocast such a weight can be *stored* in the compute
dtype (the bits autocast would cast it to anyway), which halves it; the host-memory seam
(``peftlab.host``) stores them so and keeps the originals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.modules import output_head


class FrozenLinear(torch.autograd.Function):
    """``x · Wᵀ + b`` in ``dtype``; saves the weight parameter itself, not its cast."""

    @staticmethod
    def forward(ctx, x, weight, bias, dtype: torch.dtype):
        ctx.save_for_backward(weight)
        ctx.dtype, ctx.x_dtype = dtype, x.dtype
        b = bias.to(dtype) if bias is not None else None
        return F.linear(x.to(dtype), weight.to(dtype), b)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        gx = None
        if ctx.needs_input_grad[0]:
            gx = (grad_out.to(ctx.dtype) @ weight.to(ctx.dtype)).to(ctx.x_dtype)
        return gx, None, None, None


def frozen_linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, through :class:`FrozenLinear` when ``layer`` is a plain frozen
    ``nn.Linear`` run under autocast with a gradient to carry back."""
    t = x.device.type
    w = layer.weight if type(layer) is nn.Linear else None
    if (
        w is None
        or w.requires_grad
        or not torch.is_autocast_enabled(t)
        or not torch.is_grad_enabled()
        or not x.requires_grad
        or (layer.bias is not None and layer.bias.requires_grad)
    ):
        return layer(x)
    dtype = torch.get_autocast_dtype(t)
    rows = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    with torch.autocast(t, enabled=False):
        # On rows: F.linear with a bias returns a 3-D result as a view of its 2-D one, and
        # a view made inside a custom Function may not be written in place (the lean sum
        # of an adapter writes into this output). The same matmul either way.
        y = FrozenLinear.apply(rows, w, layer.bias, dtype)
    # Rows in, rows out: the Function's own output, which an in-place sum may write into
    # without autograd copying it in backward (as it must for a view).
    return y if x.dim() == 2 else y.view(*x.shape[:-1], y.shape[-1])


def castable_linears(model: nn.Module, dtype: torch.dtype) -> dict[str, nn.Linear]:
    """Frozen ``nn.Linear`` layers (by name) whose weight, stored wider than ``dtype``,
    could be stored in ``dtype`` without changing any value computed under autocast in
    ``dtype``: only the layer's own forward reads it. Left out: the output head (the
    chunked loss reads its weight, which may be tied to the embedding), a weight shared
    with any other module, and the base layer of an adapter that reads its base weight
    itself (``reads_base_weight``: DoRA's row norms)."""
    owners: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        for p in m.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    excluded = {id(output_head(model))}
    for m in model.modules():
        if getattr(m, "reads_base_weight", False):
            excluded.update(id(sub) for sub in m.base_layer.modules())
    out = {}
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if (
            type(m) is nn.Linear
            and id(m) not in excluded
            and not w.requires_grad
            and w.is_floating_point()
            and w.element_size() > dtype.itemsize
            and owners.get(id(w)) == 1
        ):
            out[name] = m
    return out
