"""LoHa: low-rank Hadamard product (Hyeon-Woo et al., 2022, "FedPara: Low-Rank Hadamard
Product for Communication-Efficient Federated Learning", arXiv 2108.06098;
as packaged by LyCORIS and Hugging Face peft 0.21).

    ΔW = s · (B1 A1) ⊙ (B2 A2),   s = alpha / r
    h  = W0 x + ΔW x

    B1, B2: out×r  (peft: ``hada_w1_a``, ``hada_w2_a``)
    A1, A2: r×in   (peft: ``hada_w1_b``, ``hada_w2_b``)

The Hadamard product of two rank-r products has rank up to r², for the parameters of a
rank-2r LoRA (the paper's point). As in peft, B1, A1 and B2 start Kaiming-uniform and A2
starts at zero, so ΔW = 0 and a fresh adapter is the identity. peft's rank and module
dropouts are :mod:`.lycoris`'s; LoHa always rescales the rank-dropout mask by its mean.
``use_effective_conv2d`` (peft) concerns convolutions only; peftlab adapts Linear layers.

peft forms ΔW each forward and keeps it for backward (out×in per layer). With lean layers
(:meth:`~.lean.LeanOps.hadamard_linear`) peftlab uses the face-splitting identity
(B1 A1) ⊙ (B2 A2) = B' A', B' the r² column products B1[:, i] ⊙ B2[:, j] and A' the r² row
products A1[i] ⊙ A2[j], and computes B' (A' x) whenever that is cheaper.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from ..core.options import make_config
from ..quant.linear4bit import Linear4bit
from .base import AdapterLayer, Method, check_rank
from .lycoris import LycorisConfig, LycorisLinear, options_from_peft, peft_config


@dataclasses.dataclass
class LohaConfig(LycorisConfig):
    """LoHa options (names as in the CLI, YAML and peft's LoHaConfig)."""


class LohaLinear(LycorisLinear):
    """``nn.Linear`` plus ``s · (B1 A1) ⊙ (B2 A2)`` (arXiv 2108.06098)."""

    rescale_rank_dropout = True  # peft's LoHa divides the row mask by its mean, always

    def __init__(self, base_layer: nn.Linear, c: LohaConfig):
        super().__init__(base_layer, c.scaling, c.rank_dropout, c.module_dropout)
        out_f, in_f = base_layer.out_features, base_layer.in_features
        self.hada_w1_a = self.factor(out_f, c.r)  # B1
        self.hada_w1_b = self.factor(c.r, in_f)  # A1
        self.hada_w2_a = self.factor(out_f, c.r)  # B2
        self.hada_w2_b = self.factor(c.r, in_f)  # A2
        self.reset_adapter()

    def reset_adapter(self) -> None:
        """B1, A1, B2 ~ Kaiming-uniform (FedPara's He init, as peft), A2 = 0: ΔW = 0."""
        for p in (self.hada_w1_a, self.hada_w1_b, self.hada_w2_a):
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
        nn.init.zeros_(self.hada_w2_b)

    def delta_x(self, x: torch.Tensor) -> torch.Tensor:
        """s · ((B1 A1) ⊙ (B2 A2)) x with the layer's ops: :class:`~.lean.PlainOps` forms
        ΔW, :class:`~.lean.LeanOps` uses the rank-r² factorisation when cheaper."""
        return self.ops.hadamard_linear(
            x, self.hada_w1_a, self.hada_w1_b, self.hada_w2_a, self.hada_w2_b, self.scaling
        )

    def delta_weight(self) -> torch.Tensor:
        """ΔW = s · (B1 A1) ⊙ (B2 A2), fp32, out×in."""
        w1 = self.hada_w1_a @ self.hada_w1_b  # B1 A1
        w2 = self.hada_w2_a @ self.hada_w2_b  # B2 A2
        return (w1 * w2) * self.scaling


class LoHa(Method):
    """LoHa: a Hadamard product of two low-rank products (FedPara, LyCORIS)."""

    name = "loha"
    peft_type = "LOHA"
    config_cls = LohaConfig

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        # A 4-bit Linear too: the base's forward dequantizes, and merging adds ΔW to a
        # dense fp32 copy (AdapterLayer._densify_base).
        if not isinstance(module, (nn.Linear, Linear4bit)):
            raise TypeError(f"LoHa can wrap nn.Linear only; {name} is {type(module).__name__}")
        check_rank(self.config.r, module, name, "r")
        return LohaLinear(module, self.config)

    def to_peft_config(self, target_modules: Any, layers=None) -> dict[str, Any]:
        return peft_config(self.config, "LOHA", target_modules)

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> LoHa:
        opts = options_from_peft(cfg, "LoHa", ())
        return cls(make_config(cls.config_cls, opts, where="LoHa adapter_config.json"))
