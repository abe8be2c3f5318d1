"""Lean layers: the same equations, computed so that backward keeps less.

An adapter layer writes its paper's equation with a few named ops, and a SwiGLU MLP its
product with one more:

    frozen_linear(layer, x)             W0 x + b          the frozen base layer
    dropout_linear(x, A, dropout)       A · dropout(x)    an adapter's first factor
    add_scaled_linear(y, h, B, s)       y + s · B h       the update, added to W0 x
    scale_rows(z, f)                    f ⊙ z             DoRA's magnitude, per row
    silu_mul(g, u)                      silu(g) ⊙ u       SwiGLU (Shazeer 2020,
                                                          arXiv 2002.05202)
    hadamard_linear(x, B1, A1, B2, A2, s)
                                        s ((B1 A1) ⊙ (B2 A2)) x   LoHa's (:mod:`.loha`)

:class:`PlainOps` computes each as PyTorch's modules do (what peft and transformers
run). :class:`LeanOps` computes the same values and keeps less for backward:

- ``frozen_linear``: a reference to the frozen weight instead of autocast's copy of it
  (:class:`~.frozen.FrozenLinear`); same bits.
- ``dropout_linear``: the dropped input in the compute dtype with the dropout mask in its
  sign bits (:class:`~.lora_down.DropoutDown`), not a mask in the input's dtype beside a
  cast copy; the same mask from the same random draw.
- ``add_scaled_linear``: ``B h`` added into the base output by one in-place ``addmm``:
  no output-sized tensor beyond the base's.
- ``scale_rows``: saves its output, which the next op usually saves too, instead of its
  input (:class:`ScaleRows`).
- ``silu_mul``: saves ``g`` and ``u`` and recomputes ``silu(g)`` in backward
  (:class:`SiluMul`); same bits.
- ``hadamard_linear``: (B1 A1) ⊙ (B2 A2) = B' A' with B' the r² column-wise products
  B1[:, i] ⊙ B2[:, j] and A' the r² row-wise products A1[i] ⊙ A2[j] (the face-splitting
  identity), so ΔW x = B' (A' x): backward keeps x and an r²-wide intermediate instead of
  the dense ΔW, whenever r²·(in + out) < in·out (else ΔW is formed, as peft does).

Where the two differ, they differ by rounding only: the in-place sum rounds once where
the plain one rounds the product and the sum; under autocast the lean dropout drops the
input after its cast to the compute dtype, the plain one before. The tests hold each
pair to its bound (``tests/test_lean.py``).

A layer computes with its ``ops`` attribute (:class:`LeanOps` unless switched); the one
switch for a whole model is :func:`peftlab.model.inject.use_lean_layers`, which a run
calls with its ``train.lean_layers`` option.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .frozen import frozen_linear
from .lora_down import lora_down


class PlainOps:
    """The ops as the paper's equations and PyTorch's modules state them."""

    @staticmethod
    def frozen_linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """W0 x + b: the frozen base layer's own forward."""
        return layer(x)

    @staticmethod
    def dropout_linear(x: torch.Tensor, weight: torch.Tensor, dropout: nn.Module) -> torch.Tensor:
        """weight · dropout(x), in weight's dtype (fp32) unless autocast picks one."""
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(weight.dtype)  # a bf16 input meets the fp32 adapter in one dtype
        return F.linear(dropout(x), weight)

    @staticmethod
    def add_scaled_linear(
        y: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """y + scale · weight h, the sum in y's dtype."""
        return y + (F.linear(h, weight) * scale).to(y.dtype)

    @staticmethod
    def scale_rows(z: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """f ⊙ z over the last dimension, f kept fp32 in the product, the result in z's
        dtype (bf16 would round a trained f ≈ 1.003 to 1)."""
        return (f * z).to(z.dtype)

    @staticmethod
    def silu_mul(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """silu(g) ⊙ u."""
        return F.silu(g) * u

    @staticmethod
    def hadamard_linear(
        x: torch.Tensor,
        b1: torch.Tensor,
        a1: torch.Tensor,
        b2: torch.Tensor,
        a2: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        """s · ((B1 A1) ⊙ (B2 A2)) x with the Hadamard product formed, as peft does."""
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(a1.dtype)
        return F.linear(x, ((b1 @ a1) * (b2 @ a2)) * scale)


class LeanOps(PlainOps):
    """The same ops, keeping less for backward (see the module's docstring)."""

    frozen_linear = staticmethod(frozen_linear)

    @staticmethod
    def dropout_linear(x: torch.Tensor, weight: torch.Tensor, dropout: nn.Module) -> torch.Tensor:
        p = dropout.p if isinstance(dropout, nn.Dropout) and dropout.training else 0.0
        return lora_down(x, weight, p)

    @staticmethod
    def add_scaled_linear(
        y: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """One addmm into ``y`` whenever the dtypes let it do the whole sum: no
        output-sized tensor beyond ``y`` instead of three more (``B h``, its scaling, the
        sum), which on the CPU are fresh memory faulted in each time. ``y`` must be the
        caller's own temporary (a base layer's output: its backward does not read it)."""
        t = y.device.type
        one_dtype = (
            y.dtype == torch.get_autocast_dtype(t)
            if torch.is_autocast_enabled(t)
            else y.dtype == weight.dtype
        )
        if not one_dtype:
            return PlainOps.add_scaled_linear(y, h, weight, scale)
        if y.dim() != 2:  # on rows; a view written in place costs a copy in backward
            rows = LeanOps.add_scaled_linear(
                y.reshape(-1, y.shape[-1]), h.reshape(-1, h.shape[-1]), weight, scale
            )
            return rows.view(y.shape)
        # A leaf is never written in place. Compiled (``--compile``), the same sum out of
        # place: the compiler plans its own buffers, and a tensor's grad_fn cannot be read
        # while tracing.
        if torch.compiler.is_compiling() or (y.requires_grad and y.grad_fn is None):
            return torch.addmm(y, h, weight.t().to(y.dtype), alpha=scale)
        # autocast does not cast for in-place ops: the weight is cast here
        return y.addmm_(h, weight.t().to(y.dtype), alpha=scale)

    @staticmethod
    def scale_rows(z: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return ScaleRows.apply(z, f)

    @staticmethod
    def hadamard_linear(
        x: torch.Tensor,
        b1: torch.Tensor,
        a1: torch.Tensor,
        b2: torch.Tensor,
        a2: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        """B' (A' x) · s with B'[:, (i, j)] = B1[:, i] ⊙ B2[:, j] and A'[(i, j)] = A1[i] ⊙
        A2[j] (r1·r2 of them), when that costs fewer FLOPs than forming ΔW."""
        (out_f, r1), (r2, in_f) = b1.shape, a2.shape
        if r1 * r2 * (in_f + out_f) >= in_f * out_f:
            return PlainOps.hadamard_linear(x, b1, a1, b2, a2, scale)
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(a1.dtype)
        a = (a1[:, None, :] * a2[None, :, :]).reshape(r1 * r2, in_f)  # A'
        b = (b1[:, :, None] * b2[:, None, :]).reshape(out_f, r1 * r2)  # B'
        return F.linear(F.linear(x, a), b) * scale

    @staticmethod
    def silu_mul(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (g.requires_grad or u.requires_grad):
            return SiluMul.apply(g, u)
        return PlainOps.silu_mul(g, u)  # nothing to keep for backward


def layer_ops(lean: bool) -> type[PlainOps]:
    """The op set of the lean-layers switch's setting."""
    return LeanOps if lean else PlainOps


class ScaleRows(torch.autograd.Function):
    """y = f ⊙ z over the last dimension, saving y instead of z for f's gradient.

    ∂L/∂z = f ⊙ ∂L/∂y and ∂L/∂f = Σ_tokens ∂L/∂y ⊙ z with z = y / f recovered in backward.
    Saving the output lets autograd share it with the next op, which usually saves it too
    (attention's q, k, v; the MLP's gate and up). Rows where f = 0 lose z (y = 0 there);
    their magnitude gradient is then taken as 0.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        y = PlainOps.scale_rows(z, f)
        ctx.save_for_backward(y, f)
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        y, f = ctx.saved_tensors
        gz = (gy * f).to(gy.dtype) if ctx.needs_input_grad[0] else None
        gf = None
        if ctx.needs_input_grad[1]:
            # Σ gy ⊙ y, reduced in fp32, then / f: one transient in the activation dtype.
            gyy = (gy * y).reshape(-1, f.shape[-1]).sum(0, dtype=torch.float32)
            safe = torch.where(f == 0, torch.ones_like(f), f)
            gf = torch.where(f == 0, torch.zeros_like(gyy), gyy / safe)
        return gz, gf


class SiluMul(torch.autograd.Function):
    """silu(g) ⊙ u, saving g and u only.

    Run as three autograd ops, backward keeps g (for SiLU) and both factors of the
    product, silu(g) and u: three tensors of the MLP's intermediate size per token. This
    keeps two and computes silu(g) again in backward (one elementwise pass, far cheaper
    than any matmul of the layer), with autograd's own two formulas: ``grad · u`` into
    SiLU's backward, and ``grad · silu(g)``; so the gradients are the same bits.
    """

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
