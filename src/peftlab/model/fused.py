"""SwiGLU MLPs that keep less for backward: the lean ``silu_mul``.

A Llama-family MLP computes ``down(silu(gate(x)) * up(x))`` (Shazeer, "GLU Variants
Improve Transformer", arXiv 2002.05202). :func:`fuse_swiglu` gives each such MLP a forward
that computes the product with :meth:`~peftlab.methods.lean.LeanOps.silu_mul`, which keeps
``gate(x)`` and ``up(x)`` for backward but not ``silu(gate(x))``: a third less of what the
MLP keeps, the same bits. :func:`unfuse_swiglu` gives the MLPs their own forward back (the
plain path). The lean-layers switch (:func:`peftlab.model.inject.use_lean_layers`) calls
one or the other.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from ..methods.lean import LeanOps


def _swiglu_forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(LeanOps.silu_mul(self.gate_proj(x), self.up_proj(x)))


def _is_silu(act: nn.Module) -> bool:
    return isinstance(act, nn.SiLU) or type(act).__name__ == "SiLUActivation"


def _is_fused(module: nn.Module) -> bool:
    return getattr(vars(module).get("forward"), "__func__", None) is _swiglu_forward


def fuse_swiglu(model: nn.Module) -> int:
    """Give every SwiGLU MLP of ``model`` (``gate_proj``, ``up_proj``, ``down_proj`` and a
    SiLU ``act_fn``, as Llama, Mistral and Qwen2 have) the forward above; returns how many
    have it. MLPs whose forward is replaced already (accelerate's offloading hooks, say)
    are left alone."""
    n = 0
    for module in model.modules():
        if _is_fused(module):
            n += 1
        elif (
            all(hasattr(module, k) for k in ("gate_proj", "up_proj", "down_proj"))
            and _is_silu(getattr(module, "act_fn", None) or nn.Identity())
            and not hasattr(module, "_hf_hook")
            and "forward" not in vars(module)
        ):
            module.forward = types.MethodType(_swiglu_forward, module)
            n += 1
    return n


def unfuse_swiglu(model: nn.Module) -> int:
    """Undo :func:`fuse_swiglu`: the MLPs run their own forward again; returns how many."""
    fused = [m for m in model.modules() if _is_fused(m)]
    for module in fused:
        del module.forward
    return len(fused)
