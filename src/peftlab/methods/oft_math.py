"""OFT's numerics as pure functions: skew-symmetric blocks, the Cayley transform (exact,
or peft's Neumann-series form), COFT's projection and peft's block-size adjustment.

Qiu et al., 2023, "Controlling Text-to-Image Diffusion by Orthogonal Finetuning",
NeurIPS 2023, arXiv 2306.07280, §3: R = (I + Q)(I − Q)⁻¹ with Q = −Qᵀ is orthogonal;
Liu et al., 2024, "Parameter-Efficient Orthogonal Finetuning via Butterfly
Factorization" (OFTv2, arXiv 2311.06243) for the Neumann approximation peft uses.
The conventions (which triangle holds the parameters, the sign in the exact form, the
coefficients of the series) are peft 0.21's, so that saved adapters mean the same.
"""

from __future__ import annotations

import math

import torch


def skew(vec: torch.Tensor, block: int) -> torch.Tensor:
    """(n, block, block) skew-symmetric matrices from (n, block·(block−1)/2) parameters:
    the strict upper triangle in row-major order (``torch.triu_indices``), minus its
    transpose."""
    rows, cols = torch.triu_indices(block, block, 1, device=vec.device)
    m = vec.new_zeros(vec.shape[0], block, block)
    m[:, rows, cols] = vec
    return m - m.transpose(-2, -1)


def cayley_exact(q: torch.Tensor) -> torch.Tensor:
    """R = (I − Q)(I + Q)⁻¹ for a batch of skew-symmetric Q: exactly orthogonal (peft's
    ``use_cayley_neumann=False``: ``linalg.solve(I + Q, I − Q, left=False)``)."""
    eye = torch.eye(q.shape[-1], device=q.device, dtype=q.dtype).expand_as(q)
    return torch.linalg.solve(eye + q, eye - q, left=False)


def cayley_neumann(q: torch.Tensor, terms: int) -> torch.Tensor:
    """R ≈ (I + Q)(I − Q)⁻¹ with (I − Q)⁻¹ = I + Q + Q² + … cut short (peft ≥ 0.18):

        terms ≤ 1: I;   terms = 2: I + 2Q;
        terms ≥ 3: I + 2(Q + Q² + … + Q^(m−1)) + Q^m,   m = max(terms − 1, 3)

    (so 3 and 4 terms give the same R: peft's loop). Orthogonal only up to the cut; cheap
    (no solve) and what peft uses by default."""
    eye = torch.eye(q.shape[-1], device=q.device, dtype=q.dtype).expand_as(q)
    if terms <= 1:
        return eye.clone()
    r = eye + 2.0 * q
    if terms == 2:
        return r
    power = q
    for _ in range(2, max(terms - 1, 3)):
        power = power @ q
        r = r + 2.0 * power
    return r + power @ q


def coft_project(vec: torch.Tensor, block: int, eps: float) -> torch.Tensor:
    """COFT (the paper's constrained OFT, §3.2): each block's Q is pulled back to
    ‖Q‖_F ≤ eps / √(blocks stored), as peft's ``_project_batch`` does; returns the
    parameters of the projected blocks."""
    limit = eps / math.sqrt(vec.shape[0])
    norm = skew(vec, block).flatten(1).norm(dim=1, keepdim=True)  # ‖Q‖_F per block
    return vec * torch.clamp(limit / norm, max=1.0)  # norm 0: inf, clamped to 1


def adjust_to_divisor(in_features: int, value: int) -> int:
    """peft's ``adjust_oft_parameters``: the divisor of ``in_features`` nearest
    ``value`` (ties go down); ``in_features`` itself when ``value`` is not smaller."""
    if value >= in_features:
        return in_features
    higher = value
    while higher <= in_features and in_features % higher != 0:
        higher += 1
    lower = value
    while lower > 1 and in_features % lower != 0:
        lower -= 1
    return lower if value - lower <= higher - value else higher


def blocks_of(in_features: int, r: int, block_size: int) -> tuple[int, int, int | None]:
    """(blocks, block size, the value that was adjusted or None) for a layer: exactly one
    of ``r`` (blocks) and ``block_size`` is given (non-zero), the other follows from
    ``in_features``; a value that does not divide it is moved to the nearest divisor, as
    peft does (with a warning there and here)."""
    if r == 0:
        if in_features % block_size == 0 and block_size <= in_features:
            return in_features // block_size, block_size, None
        b = adjust_to_divisor(in_features, block_size)
        return in_features // b, b, block_size
    if in_features % r == 0 and r <= in_features:
        return r, in_features // r, None
    n = adjust_to_divisor(in_features, r)
    return n, in_features // n, r
