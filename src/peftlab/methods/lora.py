"""LoRA: low-rank adaptation (Hu et al., 2021, arXiv 2106.09685).

    h = W0 x + s · B A dropout(x),   s = alpha / r   (rsLoRA, Kalajdzievski 2023,
                                                      arXiv 2312.03732: s = alpha / sqrt(r))

    x ─┬─ W0 (frozen, out×in) ──────────────────────────┐
       └─ dropout ── A (r×in) ── B (out×r) ── × s ──── (+) ── h

A (r×in) starts random and B (out×r) starts at zero, so a fresh adapter is the identity.
The dropout acts on the adapter's input only, as in peft.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from ..core.options import make_config, option
from ..quant.linear4bit import Linear4bit
from .base import AdapterLayer, Method, MethodConfig, check_rank
from .loraplus import loraplus_groups

# PEFT keys we understand; anything else in an adapter_config.json must be at its default
# (a LoRA adapter using layer-wise ranks or trained biases would otherwise load wrongly).
_PEFT_DEFAULTS_WE_REQUIRE = {
    "bias": "none",
    "fan_in_fan_out": False,
    "rank_pattern": {},
    "alpha_pattern": {},
    "layers_to_transform": None,
    "modules_to_save": None,
    "lora_bias": False,
    "layer_replication": None,
    "use_qalora": False,
}

# peft ``init_lora_weights`` values that change the base weight when the adapter is made.
_BASE_REWRITING_INITS = ("pissa", "olora", "loftq", "corda")


@dataclasses.dataclass
class LoraConfig(MethodConfig):
    """LoRA options (names as in the CLI and YAML)."""

    r: int = option(8, "Rank of the update B·A")
    alpha: float = option(
        16.0,
        "Scale numerator: the update is multiplied by alpha / r (alpha / sqrt(r) with use_rslora)",
    )
    dropout: float = option(0.05, "Dropout on the adapter's input (not on the base path)")
    use_rslora: bool = option(
        False, "Rank-stabilised scaling alpha / sqrt(r) (rsLoRA, arXiv 2312.03732)"
    )
    loraplus_lr_ratio: float | None = option(
        None,
        "LoRA+ (arXiv 2402.12354): train B at this multiple of the learning rate "
        "(the paper suggests 16); unset: one rate for A and B",
    )
    loraplus_lr_embedding: float = option(
        1e-6, "LoRA+: learning rate of adapters on embedding layers (peft's default)"
    )

    def __post_init__(self):
        if int(self.r) != self.r or self.r < 1:
            raise ValueError(f"LoRA rank r must be a positive integer, got {self.r!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        self.r = int(self.r)
        if self.loraplus_lr_ratio is not None and not self.loraplus_lr_ratio > 0:
            raise ValueError(f"loraplus_lr_ratio must be > 0, got {self.loraplus_lr_ratio!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)


class LoraLinear(AdapterLayer):
    """``nn.Linear`` plus a low-rank update: ``base(x) + s · B(A(dropout(x)))``."""

    def __init__(self, base_layer: nn.Linear, r: int, scaling: float, dropout: float):
        super().__init__(base_layer)
        in_f, out_f = base_layer.in_features, base_layer.out_features
        self.scaling = scaling
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Adapter weights stay fp32 whatever the base dtype: they are what the optimiser
        # updates, and bf16 steps of ~lr·grad vanish against weights of size ~1.
        device = self.base_device()
        self.lora_A = nn.Linear(in_f, r, bias=False, device=device, dtype=torch.float32)
        self.lora_B = nn.Linear(r, out_f, bias=False, device=device, dtype=torch.float32)
        self.reset_adapter()

    def reset_adapter(self) -> None:
        """A ~ Kaiming-uniform (as nn.Linear's default), B = 0: the identity update."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """h = W0 x + s · B A dropout(x), with the layer's ops (:mod:`.lean`), on rows
        (one per token: the lean sum writes into W0 x itself, not into a view of it)."""
        ops, rows = self.ops, x.reshape(-1, x.shape[-1])
        out = ops.frozen_linear(self.base_layer, rows)  # W0 x + b
        if not self.merged:
            h = ops.dropout_linear(rows, self.lora_A.weight, self.lora_dropout)  # A dropout(x)
            out = ops.add_scaled_linear(out, h, self.lora_B.weight, self.scaling)  # + s B h
        return out.view(*x.shape[:-1], out.shape[-1])

    def update(self, x: torch.Tensor) -> torch.Tensor:
        """s · B A dropout(x) (the low-rank path alone)."""
        h = self.ops.dropout_linear(x, self.lora_A.weight, self.lora_dropout)
        return self.lora_B(h) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B.weight.float() @ self.lora_A.weight.float()) * self.scaling

    def low_rank_factors(self) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        return self.lora_A.weight, self.lora_B.weight, self.scaling


class LoRA(Method):
    """Low-rank adaptation of Linear layers."""

    name = "lora"
    peft_type = "LORA"
    config_cls = LoraConfig

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        # A 4-bit Linear too: an already-quantized model takes a LoRA adapter as is.
        if not isinstance(module, (nn.Linear, Linear4bit)):
            raise TypeError(f"LoRA can wrap nn.Linear only; {name} is {type(module).__name__}")
        c = self.config
        check_rank(c.r, module, name, "r")
        return LoraLinear(module, c.r, c.scaling, c.dropout)

    def check_base(self, config: Any, targets: dict[str, nn.Module]) -> None:
        for name, module in targets.items():
            check_rank(self.config.r, module, name, "r")

    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        """LoRA+'s groups (:mod:`.loraplus`) when ``loraplus_lr_ratio`` is set."""
        c = self.config
        if c.loraplus_lr_ratio is None:
            return super().param_groups(model, lr, weight_decay)
        return loraplus_groups(
            model, lr, weight_decay, c.loraplus_lr_ratio, c.loraplus_lr_embedding
        )

    def to_peft_config(self, target_modules: Any, layers=None) -> dict[str, Any]:
        c = self.config
        return {
            "peft_type": "LORA",
            "r": c.r,
            "lora_alpha": c.alpha,
            "lora_dropout": c.dropout,
            "use_rslora": c.use_rslora,
            "target_modules": target_modules,
            "bias": "none",
            "fan_in_fan_out": False,
            "init_lora_weights": True,
            "use_dora": False,
            "rank_pattern": {},
            "alpha_pattern": {},
        }

    @classmethod
    def accepts_peft_config(cls, cfg: dict[str, Any]) -> bool:
        # An initialisation that rewrote the base (PiSSA's residual, ...) is not a LoRA on
        # the base it will be loaded onto: that file is read by its own method.
        init = cfg.get("init_lora_weights")
        rewrites = isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS)
        return cfg.get("peft_type") == "LORA" and not cfg.get("use_dora", False) and not rewrites

    @classmethod
    def lora_options_from_peft(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        """Shared by LoRA-family methods: check unsupported keys, map the rest."""
        for key, default in _PEFT_DEFAULTS_WE_REQUIRE.items():
            value = cfg.get(key, default)
            if value not in (None, default):
                raise ValueError(
                    f"adapter_config.json sets {key}={value!r}, which peftlab does not "
                    f"support (expected {default!r})"
                )
        return {
            "r": cfg["r"],
            "alpha": cfg.get("lora_alpha", 8),
            "dropout": cfg.get("lora_dropout", 0.0),
            "use_rslora": cfg.get("use_rslora", False),
            "target_modules": cfg["target_modules"],
        }

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> LoRA:
        opts = cls.lora_options_from_peft(cfg)
        return cls(make_config(cls.config_cls, opts, where="LoRA adapter_config.json"))
