"""LoRA started from factors of the weight itself, the base keeping the residual.

PiSSA and OLoRA (``pissa.py``) share one shape: at wrap time the frozen weight W is
factored into a rank-r part and a residual,

    W = W_res + s · B0 A0,        h = W_res x + s · B A x,   (A, B) = (A0, B0) at the start,

so a fresh adapter is the identity on the *original* model (up to fp32 rounding of the
subtraction) while training moves the principal (or QR) directions of W.

The trained model is W_res + s·B A = W + s·(B A − B0 A0): on the unmodified base it is a
LoRA of rank 2r, ``[B, −B0] · [A; A0]`` with the same scaling s. That is how the adapter
is saved by default (``save_as_lora``), as peft's ``path_initial_model_for_weight_conversion``
does, so peft, vLLM and llama.cpp apply it to the base model they already have. With
``save_as_lora: false`` the rank-r adapter is saved with ``init_lora_weights`` naming the
initialisation; a loader then has to factor the same base again (peft does so too).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.options import make_config, option
from ..quant.linear4bit import Linear4bit
from .base import AdapterLayer, check_rank
from .lora import LoRA, LoraConfig, LoraLinear

Factorize = Callable[[torch.Tensor, int, float], tuple[torch.Tensor, torch.Tensor]]
"""``(W fp32 out×in, r, s) -> (A0 r×in, B0 out×r)``: the initial factors of a weight."""


@dataclasses.dataclass
class ResidualConfig(LoraConfig):
    """Options of a LoRA initialised from the weight (LoRA's, plus how it is saved)."""

    save_as_lora: bool = option(
        True,
        "Save the adapter as a plain rank-2r LoRA on the original base "
        "(W + s·(B A − B0 A0)), so any tool applies it to the unmodified model; "
        "false: the rank-r adapter, which needs the residual base",
    )


class ResidualLoraLinear(LoraLinear):
    """``W_res x + s · B A x`` with (A, B) started at (A0, B0) from ``factorize(W)``.

    A0 and B0 are kept as non-persistent buffers (they are not trained and not part of
    the state dict) for the conversion to a LoRA on the original base.
    """

    save_as_lora: bool = True
    """Whether :meth:`export_params` gives the rank-2r LoRA on the original base (set per
    layer by the method that wraps it)."""

    def __init__(self, base_layer: nn.Linear, r: int, scaling: float, dropout: float, factorize):
        self._factorize: Factorize | None = None  # LoraLinear.__init__ calls reset_adapter
        super().__init__(base_layer, r, scaling, dropout)
        self._factorize = factorize
        self.reset_adapter()

    def reset_adapter(self) -> None:
        """(A, B) = factorize(W), base weight <- W − s·B A (in fp32, stored in its dtype)."""
        if self._factorize is None:
            return  # still in LoraLinear.__init__: no random draws beyond nn.Linear's own
        w = self.base_layer.weight
        with torch.no_grad():
            w32 = w.detach().float()
            a0, b0 = self._factorize(w32, self.lora_A.out_features, self.scaling)
            self.lora_A.weight.copy_(a0)
            self.lora_B.weight.copy_(b0)
            residual = w32 - self.scaling * (self.lora_B.weight @ self.lora_A.weight)
            w.copy_(residual.to(w.dtype))
        self.register_buffer("lora_A0", self.lora_A.weight.detach().clone(), persistent=False)
        self.register_buffer("lora_B0", self.lora_B.weight.detach().clone(), persistent=False)

    def original_base_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``([A; A0], [B, −B0])``: the trained update as a rank-2r LoRA on the original W
        (B A − B0 A0 = [B, −B0] [A; A0]), with this layer's scaling."""
        a = torch.cat([self.lora_A.weight, self.lora_A0.to(self.lora_A.weight.dtype)], dim=0)
        b = torch.cat([self.lora_B.weight, -self.lora_B0.to(self.lora_B.weight.dtype)], dim=1)
        return a, b

    def low_rank_factors(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Relative to the original base (what a llama.cpp adapter is applied to)."""
        a, b = self.original_base_factors()
        return a, b, self.scaling

    def export_params(self) -> dict[str, torch.Tensor]:
        if not self.save_as_lora:
            return super().export_params()
        a, b = self.original_base_factors()
        return {"lora_A.weight": a, "lora_B.weight": b}


class ResidualLoRA(LoRA):
    """A LoRA-family method whose layers start from factors of W (subclasses name them)."""

    config_cls: ClassVar[type[ResidualConfig]] = ResidualConfig
    rewrites_base = True
    init_name: ClassVar[str]
    """The base of peft's ``init_lora_weights`` value for this initialisation."""

    @property
    def factorize(self) -> Factorize:
        """The pure function giving a weight's initial factors (:data:`Factorize`)."""
        raise NotImplementedError

    def init_lora_weights(self) -> str:
        """peft's ``init_lora_weights`` for this method's options."""
        return self.init_name

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        if isinstance(module, Linear4bit):
            raise ValueError(
                f"{self.name} needs a full-precision weight to factor, but {name} is 4-bit; "
                "for a 4-bit base use --method qlora --loftq-iter N (LoftQ)"
            )
        if not isinstance(module, nn.Linear):
            raise TypeError(
                f"{self.name} can wrap nn.Linear only; {name} is {type(module).__name__}"
            )
        c = self.config
        check_rank(c.r, module, name, "r")
        layer = ResidualLoraLinear(module, c.r, c.scaling, c.dropout, self.factorize)
        layer.save_as_lora = c.save_as_lora
        return layer

    def check_base(self, config: Any, targets: dict[str, nn.Module]) -> None:
        if getattr(config, "quantization_config", None):
            raise ValueError(
                f"method {self.name} needs a full-precision base to factor, but the model "
                "is a quantized checkpoint; for a 4-bit base use --method qlora --loftq-iter N"
            )
        super().check_base(config, targets)

    def to_peft_config(self, target_modules: Any, layers=None) -> dict[str, Any]:
        cfg = super().to_peft_config(target_modules, layers)
        c = self.config
        if not c.save_as_lora:
            return {**cfg, "init_lora_weights": self.init_lora_weights()}
        # Rank 2r, same scaling: alpha/r needs alpha doubled, alpha/sqrt(r) alpha·sqrt(2).
        alpha = c.alpha * (math.sqrt(2.0) if c.use_rslora else 2.0)
        return {**cfg, "r": 2 * c.r, "lora_alpha": alpha, "init_lora_weights": True}

    @classmethod
    def accepts_peft_config(cls, cfg: dict[str, Any]) -> bool:
        init = cfg.get("init_lora_weights")
        return (
            cfg.get("peft_type") == "LORA"
            and not cfg.get("use_dora", False)
            and isinstance(init, str)
            and init.lower().startswith(cls.init_name)
        )

    @classmethod
    def options_from_init(cls, init: str) -> dict[str, Any]:
        """Options encoded in peft's ``init_lora_weights`` value (PiSSA's ``niter``)."""
        return {}

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> ResidualLoRA:
        opts = cls.lora_options_from_peft(cfg)
        opts.update(cls.options_from_init(cfg["init_lora_weights"]), save_as_lora=False)
        return cls(make_config(cls.config_cls, opts, where=f"{cls.name} adapter_config.json"))
