"""SwiGLU's product without keeping SiLU's output for backward.

A Llama-family MLP computes ``down(silu(gate(x)) * up(x))`` (Shazeer, "GLU Variants
Improve Transformer", arXiv 2002.05202). Run as three autograd ops, backward keeps the
gate output ``g`` (for SiLU), and both factors of the product, ``silu(g)`` and ``u``:
three tensors of the intermediate size per token. :class:`SiluMul` keeps ``g`` and ``u``
and computes ``silu(g)`` again in backward (one elementwise pass, far cheaper than any
matmul of the layer): a third of what the MLP's activation saves, with the same forward
values and the same gradients, bit for bit, as the three ops (the backward uses the
same two formulas autograd does: ``grad · u`` into SiLU's own backward, ``grad ·
silu(g)``).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


class SiluMul(torch.autograd.Function):
    """``silu(g) * u``; saves ``g`` and ``u`` only."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(g, u)
        return F.silu(g) * u

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g, u = ctx.saved_tensors
        grad_g = grad_u = None
        if ctx.needs_input_grad[0]:
            grad_g = torch.ops.aten.silu_backward(grad * u, g)
        if ctx.needs_input_grad[1]:
            grad_u = grad * F.silu(g)
        return grad_g, grad_u


def _swiglu_forward(self, x: torch.Tensor) -> torch.Tensor:
    g, u = self.gate_proj(x), self.up_proj(x)
    if torch.is_grad_enabled() and (g.requires_grad or u.requires_grad):
        return self.down_proj(SiluMul.apply(g, u))
    return self.down_proj(F.silu(g) * u)


def _is_silu(act: nn.Module) -> bool:
    return isinstance(act, nn.SiLU) or type(act).__name__ == "SiLUActivation"


def fuse_swiglu(model: nn.Module) -> int:
    """Give every SwiGLU MLP of ``model`` (``gate_proj``, ``up_proj``, ``down_proj`` and a
    SiLU ``act_fn``, as Llama, Mistral and Qwen2 have) the forward above; returns how many.
    MLPs with hooks that replace their forward (accelerate's offloading) are left alone."""
    n = 0
    for module in model.modules():
        if (all(hasattr(module, k) for k in ("gate_proj", "up_proj", "down_proj"))
                and _is_silu(getattr(module, "act_fn", None) or nn.Identity())
                and not hasattr(module, "_hf_hook") and "forward" not in vars(module)):
            module.forward = types.MethodType(_swiglu_forward, module)
            n += 1
    return n
