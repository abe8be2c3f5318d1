"""OFT: orthogonal fine-tuning (Qiu et al., 2023, "Controlling Text-to-Image Diffusion by
Orthogonal Finetuning", NeurIPS 2023, arXiv 2306.07280, eq. 3), in the block-diagonal,
Cayley-parametrised form Hugging Face peft 0.20+ saves.

    h = (W0 Rᵀ) x + b = W0 (x R)ᵀ + b,    R = diag(R_1, …, R_n),  R_i = Cayley(Q_i)

    x ── x·R (n blocks of size b×b, one R_i per block) ── W0 (frozen) ── h

The update is multiplicative: W0 is rotated, so the angles between its neurons (rows)
are kept (the paper's hyperspherical energy). Each R_i comes from a skew-symmetric Q_i
(b·(b−1)/2 trained numbers, zero at the start: R = I, a fresh adapter is the identity)
through the Cayley transform, exact or (peft's default) its Neumann series
(:mod:`.oft_math`). As in peft 0.21 the input is rotated before the frozen layer, which
is the same as the weight ``W0 Rᵀ`` that merging writes.

Options as peft's: ``oft_block_size`` (b) or ``r`` (n blocks), exactly one non-zero, moved
to the nearest divisor of a layer's input size when it does not divide it (with a
warning, as peft); ``block_share`` (one R_i for every block); ``coft`` with ``eps``
(COFT: ‖Q_i‖ kept small by projection after each update, the paper's §3.2);
``module_dropout`` (the paper's multiplicative dropout: while training, that share of
the blocks is replaced by I. peft 0.21 builds this layer but never calls it, so there
it changes nothing; here it acts as documented).

On disk (peft 0.21): ``<module>.oft_R.weight``, shaped (n, b·(b−1)/2) (1 row with
``block_share``), and the config keys above.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import torch
from torch import nn

from ..core.options import make_config, option
from ..quant.linear4bit import Linear4bit
from .base import AdapterLayer, Method, MethodConfig
from .oft_math import blocks_of, cayley_exact, cayley_neumann, coft_project, skew

PEFT_FORMAT_VERSION = "0.18.0"
"""Written as ``peft_version`` with the Neumann form: the series changed in peft 0.18,
and peft warns about files without a version at least this (they might hold the old
form). Files from an older peft that use the series are refused."""

# peft 0.21 OFTConfig keys peftlab cannot honour: any other value is an error.
_PEFT_DEFAULTS_WE_REQUIRE = {
    "bias": "none",
    "fan_in_fan_out": False,
    "modules_to_save": None,
    "exclude_modules": None,
    "layers_to_transform": None,
    "layers_pattern": None,
}


@dataclasses.dataclass
class OftConfig(MethodConfig):
    """OFT options (names as in the CLI and YAML)."""

    oft_block_size: int = option(
        32, "Size b of each orthogonal block (b·(b-1)/2 parameters per block); 0: use r"
    )
    r: int = option(0, "Number of orthogonal blocks per layer instead of oft_block_size (0: unset)")
    use_cayley_neumann: bool = option(
        True, "Cayley transform by its Neumann series (peft's default; no matrix solve)"
    )
    num_cayley_neumann_terms: int = option(5, "Terms of the Neumann series")
    block_share: bool = option(False, "One rotation shared by all blocks of a layer")
    coft: bool = option(False, "Constrained OFT: keep each block's ‖Q‖ within eps (§3.2)")
    eps: float = option(6e-5, "COFT's bound on the rotation (with coft only)")
    module_dropout: float = option(
        0.0, "Share of blocks replaced by the identity while training (multiplicative dropout)"
    )

    def __post_init__(self):
        for key in ("r", "oft_block_size", "num_cayley_neumann_terms"):
            value = getattr(self, key)
            if int(value) != value or value < 0:
                raise ValueError(f"OFT option {key} must be a non-negative integer, got {value!r}")
        if (self.r == 0) == (self.oft_block_size == 0):
            raise ValueError(
                f"OFT needs exactly one of r ({self.r}) and oft_block_size "
                f"({self.oft_block_size}) non-zero (r × oft_block_size = a layer's inputs); "
                "to give r, set oft_block_size to 0"
            )
        if not 0.0 <= self.module_dropout < 1.0:
            raise ValueError(f"OFT module_dropout must be in [0, 1), got {self.module_dropout!r}")
        if self.coft and self.eps <= 0:
            raise ValueError(f"OFT eps must be positive with coft, got {self.eps!r}")


class OftRotation(nn.Module):
    """The trained parameters of one layer's rotation: ``weight`` holds Q_i's strict
    upper triangles, one row per stored block (one row with block sharing)."""

    def __init__(self, stored: int, blocks: int, block: int, cfg: OftConfig, device=None):
        super().__init__()
        self.blocks, self.block, self.cfg = blocks, block, cfg
        n = block * (block - 1) // 2
        self.weight = nn.Parameter(torch.zeros(stored, n, device=device, dtype=torch.float32))

    def project_(self) -> None:
        """COFT: project the parameters in place (peft does so at every use)."""
        if self.cfg.coft:
            with torch.no_grad():
                self.weight.copy_(coft_project(self.weight, self.block, self.cfg.eps))

    def rotations(self, drop: bool = False) -> torch.Tensor:
        """(blocks, b, b): R_i = Cayley(Q_i) in fp32, autocast off (small, and the series
        in bf16 would lose the orthogonality it approximates); repeated when shared.
        ``drop``: in training mode, the multiplicative dropout sets some blocks to I."""
        self.project_()
        with torch.autocast(self.weight.device.type, enabled=False):
            q = skew(self.weight.float(), self.block)
            c = self.cfg
            r = (
                cayley_neumann(q, c.num_cayley_neumann_terms)
                if c.use_cayley_neumann
                else (cayley_exact(q))
            )
        r = r.expand(self.blocks, -1, -1) if r.shape[0] != self.blocks else r
        return self._drop_blocks(r) if drop else r

    def _drop_blocks(self, r: torch.Tensor) -> torch.Tensor:
        p, stored = self.cfg.module_dropout, self.weight.shape[0]
        if not (self.training and p > 0 and stored > 1):
            return r
        dropped = torch.randperm(stored, device=r.device)[: int(p * stored)]
        keep = torch.ones(stored, 1, 1, device=r.device, dtype=r.dtype)
        keep[dropped] = 0
        eye = torch.eye(self.block, device=r.device, dtype=r.dtype)
        return keep * r + (1 - keep) * eye


def rotate_blocks(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """x R for block-diagonal R = diag(r_1, …, r_n): (x_i R_i) for each block i of x's
    last dimension, returned in x's dtype.

    Computed as one batched matmul over the blocks, (n, tokens, b) @ (n, b, b), in fp32
    with autocast off: on the CPU that is several times faster than ``einsum`` over a
    3-D input (which took seconds per layer there) and than the bf16 batched matmul, and
    the rotation is exact to fp32 whatever the compute dtype."""
    n, b = r.shape[0], r.shape[1]
    with torch.autocast(x.device.type, enabled=False):
        xb = x.reshape(-1, n, b).transpose(0, 1).to(r.dtype)  # (n, tokens, b)
        y = torch.bmm(xb, r)  # y_c = Σ_k x_k R_kc, per block
    return y.transpose(0, 1).reshape(x.shape).to(x.dtype)


class OftLinear(AdapterLayer):
    """``nn.Linear`` whose input is rotated block by block: ``base(x R)`` (arXiv 2306.07280)."""

    def __init__(self, base_layer: nn.Module, cfg: OftConfig, name: str = ""):
        super().__init__(base_layer)
        self.in_features = base_layer.in_features
        blocks, block, moved = blocks_of(self.in_features, cfg.r, cfg.oft_block_size)
        if moved is not None:
            key = "r" if cfg.r else "oft_block_size"
            warnings.warn(
                f"OFT {key}={moved} does not divide the {self.in_features} inputs of "
                f"{name or 'a layer'}; using {blocks} blocks of {block} there (as peft does)"
            )
        stored = 1 if cfg.block_share else blocks
        self.oft_R = OftRotation(stored, blocks, block, cfg, device=self.base_device())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """h = W0 (x R) + b: each block of b inputs rotated by its R_i (eq. 3)."""
        if self.merged:
            return self.ops.frozen_linear(self.base_layer, x)
        rotated = rotate_blocks(x, self.oft_R.rotations(drop=True))
        return self.ops.frozen_linear(self.base_layer, rotated)

    def _rotate_weight(self, w: torch.Tensor, inverse: bool) -> torch.Tensor:
        """W Rᵀ (or W R⁻ᵀ), block by block, in fp64: never the dense in×in R."""
        r = self.oft_R.rotations().detach().double()
        if inverse:
            r = torch.linalg.inv(r)
        wb = w.double().unflatten(-1, (r.shape[0], r.shape[1]))  # (out, n, b)
        return torch.einsum("onk,nck->onc", wb, r).flatten(-2)

    def _merge(self) -> None:
        w = self.base_layer.weight
        w.copy_(self._rotate_weight(w, inverse=False).to(w.dtype))

    def _unmerge(self) -> None:
        w = self.base_layer.weight
        w.copy_(self._rotate_weight(w, inverse=True).to(w.dtype))

    def delta_weight(self) -> torch.Tensor:
        """W0 Rᵀ − W0 in fp32."""
        w = self.base_weight()
        w0 = self._rotate_weight(w, inverse=True) if self.merged else w.double()
        return (self._rotate_weight(w0, inverse=False) - w0).float()

    def extra_repr(self) -> str:
        o = self.oft_R
        return f"in={self.in_features}, blocks={o.blocks}×{o.block}, stored={o.weight.shape[0]}"


class OFT(Method):
    """Orthogonal fine-tuning: a learned block-diagonal rotation of each layer's input."""

    name = "oft"
    peft_type = "OFT"
    config_cls = OftConfig

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        if not isinstance(module, (nn.Linear, Linear4bit)):
            raise TypeError(f"OFT can wrap nn.Linear only; {name} is {type(module).__name__}")
        return OftLinear(module, self.config, name)

    def to_peft_config(self, target_modules: Any, layers=None) -> dict[str, Any]:
        c = self.config
        cfg = {
            "peft_type": "OFT",
            "target_modules": target_modules,
            "exclude_modules": None,
            "fan_in_fan_out": False,
            "bias": "none",
            "init_weights": True,
            **{
                f.name: getattr(c, f.name)
                for f in dataclasses.fields(c)
                if f.name != "target_modules"
            },
        }
        if c.use_cayley_neumann:
            cfg["peft_version"] = PEFT_FORMAT_VERSION
        return cfg

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> OFT:
        for key, default in _PEFT_DEFAULTS_WE_REQUIRE.items():
            value = cfg.get(key, default)
            if value not in (None, default, []):
                raise ValueError(
                    f"adapter_config.json sets {key}={value!r}, which peftlab's OFT does "
                    f"not support (expected {default!r})"
                )
        if "oft_block_size" not in cfg:
            raise ValueError(
                "OFT adapter_config.json has no oft_block_size: it was written by peft "
                "before 0.14, whose OFT format peftlab (like peft since) cannot read"
            )
        if cfg.get("use_cayley_neumann", True) and _older(cfg.get("peft_version"), "0.18.0"):
            raise ValueError(
                f"OFT adapter_config.json: written by peft {cfg.get('peft_version')} with the "
                "Cayley-Neumann series, whose form changed in peft 0.18; peftlab reads only "
                "the newer form"
            )
        if cfg.get("target_modules") is None:
            raise ValueError("OFT adapter_config.json has no target_modules")
        names = {f.name for f in dataclasses.fields(OftConfig)}
        opts = {k: cfg[k] for k in names if k in cfg}
        return cls(make_config(cls.config_cls, opts, where="OFT adapter_config.json"))


def _older(version: Any, than: str) -> bool:
    """Whether a ``peft_version`` string (``"0.17.1"``, ``"0.18.0.dev0@abc"``) is below
    ``than``; a missing version counts as new (peftlab's own files before this key)."""
    if not isinstance(version, str):
        return False
    parts = []
    for piece in version.partition("@")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece else ""
        parts.append(int(digits) if digits else 0)
    return tuple(parts) < tuple(int(p) for p in than.split("."))
