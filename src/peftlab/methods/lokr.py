"""LoKr: low-rank Kronecker product (Yeh et al., 2024, "Navigating Text-To-Image
Customization: From LyCORIS Fine-Tuning to Model Evaluation", ICLR 2024, arXiv 2309.14859;
as packaged by LyCORIS and Hugging Face peft 0.21).

    ΔW = s · W1 ⊗ W2,   s = alpha / r
    h  = W0 x + ΔW x

    W1: a×c  (peft: ``lokr_w1``, or ``lokr_w1_a`` (a×r) · ``lokr_w1_b`` (r×c))
    W2: b×d  (peft: ``lokr_w2``, or ``lokr_w2_a`` (b×r) · ``lokr_w2_b`` (r×d))
    out = a·b, in = c·d

The shapes follow peft's rule: ``in = c·d`` and ``out = a·b`` are split by
:func:`factorization` (near the square root, or around ``decompose_factor``), the
smaller part going to W1. W2 is kept as two rank-r factors when r < max(b, d)/2, else
whole; W1 likewise, but only with ``decompose_both``. As in peft, W1 (or its left factor)
starts at zero and the others Kaiming-uniform, so ΔW = 0 at initialisation. The rank and
module dropouts are :mod:`.lycoris`'s; the row mask is rescaled only with
``rank_dropout_scale``, as in peft.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from ..core.options import make_config, option
from ..quant.linear4bit import Linear4bit
from .base import AdapterLayer, Method
from .lycoris import LycorisConfig, LycorisLinear, options_from_peft, peft_config


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """Split ``dimension`` into two factors, peft 0.21's (and LyCORIS's) rule.

    A positive ``factor`` that divides ``dimension`` is taken as is: ``(factor,
    dimension // factor)``, in that order. Otherwise the divisors are walked upwards
    while the running divisor m stays below dimension / m and no divisor exceeds
    ``factor`` (-1: no bound), so the result is the pair nearest the square root that
    respects the bound, the smaller first. A prime gives (1, dimension).
    """
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    bound = dimension if factor == -1 else factor
    m = 1
    for d in range(2, dimension + 1):
        if m >= dimension // m or d > bound:
            break
        if dimension % d == 0:
            m = d
    n = dimension // m
    return min(m, n), max(m, n)


@dataclasses.dataclass
class LokrConfig(LycorisConfig):
    """LoKr options (names as in the CLI, YAML and peft's LoKrConfig)."""

    decompose_both: bool = option(
        False, "Also split the left Kronecker factor W1 into two rank-r factors (peft's)"
    )
    decompose_factor: int = option(
        -1,
        "How in/out features are split for the Kronecker factors: -1 near the square "
        "root, else a part of about this size (peft's)",
    )
    rank_dropout_scale: bool = option(
        False, "Divide the rank-dropout row mask by its mean (peft's)"
    )

    def __post_init__(self):
        super().__post_init__()
        if self.decompose_factor != -1 and self.decompose_factor < 1:
            raise ValueError(
                f"LoKr option decompose_factor must be -1 or a positive integer, "
                f"got {self.decompose_factor!r}"
            )


class LokrLinear(LycorisLinear):
    """``nn.Linear`` plus ``s · W1 ⊗ W2`` (arXiv 2309.14859)."""

    def __init__(self, base_layer: nn.Linear, c: LokrConfig):
        super().__init__(base_layer, c.scaling, c.rank_dropout, c.module_dropout)
        self.rescale_rank_dropout = c.rank_dropout_scale
        a, b = factorization(base_layer.out_features, c.decompose_factor)
        cc, d = factorization(base_layer.in_features, c.decompose_factor)
        self._kron_factor(
            "lokr_w1", a, cc, c.r, whole=not (c.decompose_both and c.r < max(a, cc) / 2)
        )
        self._kron_factor("lokr_w2", b, d, c.r, whole=not c.r < max(b, d) / 2)
        self.reset_adapter()

    def _kron_factor(self, name: str, rows: int, cols: int, r: int, whole: bool) -> None:
        """``name`` as one rows×cols matrix, or ``name_a`` (rows×r) · ``name_b`` (r×cols);
        the absent names are registered as None, so they hold no parameter."""
        parts = {name: (rows, cols)} if whole else {f"{name}_a": (rows, r), f"{name}_b": (r, cols)}
        for key in (name, f"{name}_a", f"{name}_b"):
            self.register_parameter(key, self.factor(*parts[key]) if key in parts else None)

    def reset_adapter(self) -> None:
        """W1 (or its left factor) = 0, every other factor Kaiming-uniform: ΔW = 0."""
        zero = self.lokr_w1 if self.lokr_w1 is not None else self.lokr_w1_a
        for p in self.adapter_params().values():
            if p is zero:
                nn.init.zeros_(p)
            else:
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))

    def kron_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W1, W2), each whole or as the product of its two factors."""
        w1 = self.lokr_w1 if self.lokr_w1 is not None else self.lokr_w1_a @ self.lokr_w1_b
        w2 = self.lokr_w2 if self.lokr_w2 is not None else self.lokr_w2_a @ self.lokr_w2_b
        return w1, w2

    def delta_weight(self) -> torch.Tensor:
        """ΔW = s · W1 ⊗ W2, fp32, out×in."""
        w1, w2 = self.kron_factors()
        return torch.kron(w1, w2) * self.scaling


class LoKr(Method):
    """LoKr: a Kronecker product of two (optionally low-rank) factors (LyCORIS)."""

    name = "lokr"
    peft_type = "LOKR"
    config_cls = LokrConfig

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        # A 4-bit Linear too: the base's forward dequantizes, and merging adds ΔW to a
        # dense fp32 copy (AdapterLayer._densify_base).
        if not isinstance(module, (nn.Linear, Linear4bit)):
            raise TypeError(f"LoKr can wrap nn.Linear only; {name} is {type(module).__name__}")
        return LokrLinear(module, self.config)

    def to_peft_config(self, target_modules: Any, layers=None) -> dict[str, Any]:
        c = self.config
        return {
            **peft_config(c, "LOKR", target_modules),
            "decompose_both": c.decompose_both,
            "decompose_factor": c.decompose_factor,
            "rank_dropout_scale": c.rank_dropout_scale,
        }

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> LoKr:
        keys = ("decompose_both", "decompose_factor", "rank_dropout_scale")
        opts = options_from_peft(cfg, "LoKr", keys)
        return cls(make_config(cls.config_cls, opts, where="LoKr adapter_config.json"))
