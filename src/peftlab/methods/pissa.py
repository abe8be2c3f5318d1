"""PiSSA and OLoRA: LoRA started from the weight's own factors (see ``residual.py``).

PiSSA (Meng et al., 2024, arXiv 2404.02948): principal singular values and vectors,

    W = U S Vᵀ,   A0 = diag(√(S_r / s)) V_rᵀ  (r×in),   B0 = U_r diag(√(S_r / s))  (out×r),

so s·B0 A0 = U_r S_r V_rᵀ is W's best rank-r approximation and the base keeps
W_res = W − s·B0 A0 (paper Eq. 2-4; dividing by s, as peft does, makes the adapter
start at the principal part whatever alpha is). ``niter: N`` uses the randomized SVD
(Halko et al., 2011; ``torch.svd_lowrank`` with N subspace iterations), peft's
``pissa_niter_N``: far cheaper on large weights, top-r directions up to its error.

OLoRA (Büyükakyüz, 2024, arXiv 2406.01775): the QR decomposition W = Q R,

    B0 = Q[:, :r]  (orthonormal columns, out×r),   A0 = R[:r, :]  (r×in),

and W_res = W − s·B0 A0 (not divided by s: the orthonormal basis is the point, as in
peft's ``olora``).

Both compute in fp32 whatever the weight's dtype, as peft does, and store the residual
back in the weight's dtype.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import torch

from ..core.options import option
from .residual import ResidualConfig, ResidualLoRA


def pissa_factors(w: torch.Tensor, r: int, scaling: float, niter: int = 0):
    """(A0, B0) of PiSSA from fp32 ``w`` (out×in): full SVD, or randomized with ``niter``."""
    if niter:
        u, s, v = torch.svd_lowrank(w, q=r, niter=niter)  # draws from torch's RNG
        vh = v.T
    else:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        u, s, vh = u[:, :r], s[:r], vh[:r]
    root = torch.sqrt(s / scaling)
    return root[:, None] * vh, u * root[None, :]


def olora_factors(w: torch.Tensor, r: int, scaling: float):
    """(A0, B0) of OLoRA from fp32 ``w`` (out×in): the first r rows of R, columns of Q."""
    q, rr = torch.linalg.qr(w)
    return rr[:r].contiguous(), q[:, :r].contiguous()


@dataclasses.dataclass
class PissaConfig(ResidualConfig):
    """PiSSA options: LoRA's, how the SVD is computed, how the adapter is saved."""

    niter: int = option(
        0,
        "0: exact SVD (peft's init 'pissa'); N > 0: randomized SVD with N subspace "
        "iterations (peft's 'pissa_niter_N'), much faster on large weights",
    )

    def __post_init__(self):
        super().__post_init__()
        if int(self.niter) != self.niter or self.niter < 0:
            raise ValueError(f"PiSSA option niter must be an integer >= 0, got {self.niter!r}")
        self.niter = int(self.niter)


@dataclasses.dataclass
class OloraConfig(ResidualConfig):
    """OLoRA options: LoRA's and how the adapter is saved."""


class PiSSA(ResidualLoRA):
    """LoRA on the principal singular directions of each weight (arXiv 2404.02948)."""

    name = "pissa"
    config_cls = PissaConfig
    init_name = "pissa"

    @property
    def factorize(self):
        return functools.partial(pissa_factors, niter=self.config.niter)

    def init_lora_weights(self) -> str:
        n = self.config.niter
        return f"pissa_niter_{n}" if n else "pissa"

    @classmethod
    def options_from_init(cls, init: str) -> dict[str, Any]:
        m = re.fullmatch(r"pissa(?:_niter_(\d+))?", init.lower())
        if m is None:
            raise ValueError(f"init_lora_weights={init!r} is not 'pissa' or 'pissa_niter_N'")
        return {"niter": int(m.group(1) or 0)}


class OLoRA(ResidualLoRA):
    """LoRA on the orthonormal QR factors of each weight (arXiv 2406.01775)."""

    name = "olora"
    config_cls = OloraConfig
    init_name = "olora"

    @property
    def factorize(self):
        return olora_factors
