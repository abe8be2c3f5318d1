"""LoftQ: a 4-bit base and a LoRA start that approximate the full-precision weight
together (Li et al., 2023, arXiv 2310.08659, Algorithm 1).

Plain QLoRA starts from Q = NF4(W) and B = 0, so the model begins off by W − Q. LoftQ
alternates, for T iterations (t = 1..T),

    Q_t = NF4(W − s·B_{t−1} A_{t−1})          (B_0 A_0 = 0: Q_1 = NF4(W), QLoRA's base)
    s·B_t A_t = SVD_r(W − Q_t)                (the best rank-r fit of what Q_t misses)

and starts training from (Q_T, A_T, B_T), so ‖W − Q_T − s·B_T A_T‖ ≤ ‖W − Q_1‖ already at
T = 1. The factors split the singular values evenly, A = diag(√(S_r/s)) V_rᵀ,
B = U_r diag(√(S_r/s)); dividing by s makes s·B A the fit whatever alpha is (peft's
``loftq_init`` leaves s out, which is exact only when s = 1).
"""

from __future__ import annotations

import torch

from ..quant.nf4 import BLOCKSIZE, dequantize_nf4, quantize_nf4


def loftq_factors(
    w: torch.Tensor, r: int, scaling: float, iters: int, double_quant: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(to_quantize, A, B)`` for weight ``w`` (out×in, any float dtype): the tensor
    whose NF4 quantization is the base Q_T (in ``w``'s dtype, so quantizing it again gives
    the same Q_T), and the fp32 factors A (r×in) and B (out×r)."""
    w32 = w.detach().float()
    to_quantize, a, b = w.detach(), None, None
    for t in range(iters):
        if t:  # Q_t quantizes what the previous factors leave
            to_quantize = (w32 - scaling * (b @ a)).to(w.dtype)
        q = dequantize_nf4(quantize_nf4(to_quantize, BLOCKSIZE, double_quant), torch.float32)
        u, s, vh = torch.linalg.svd(w32 - q, full_matrices=False)
        root = torch.sqrt(s[:r] / scaling)
        a, b = root[:, None] * vh[:r], u[:, :r] * root[None, :]
    return to_quantize, a, b


def approximation_error(w: torch.Tensor, base: torch.Tensor, delta: torch.Tensor | None) -> float:
    """‖W − (base + delta)‖_F in fp32: how far a start is from the full-precision weight."""
    approx = base.float() if delta is None else base.float() + delta.float()
    return torch.linalg.matrix_norm(w.float() - approx).item()
