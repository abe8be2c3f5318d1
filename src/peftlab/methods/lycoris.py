"""What the two LyCORIS methods share (LoHa, :mod:`.loha`; LoKr, :mod:`.lokr`): options,
the layer's forward with peft's two dropouts, and the adapter_config.json keys.

Both make a dense update ΔW from small factors and add its product with the input
(LoHa's lean layers compute ΔW x without forming ΔW, :mod:`.lean`):

    h = W0 x + m · (d ⊙ ΔW x)

    m ∈ {0, 1}: module dropout, the whole update skipped with probability
                ``module_dropout`` per forward while training (peft: ``torch.rand(1) >
                module_dropout``);
    d ∈ R^out:  "rank" dropout, in peft's (and LyCORIS's) form a Bernoulli mask over the
                OUTPUT rows of ΔW (keep probability 1 - ``rank_dropout``), divided by its
                mean when the method rescales (LoHa always, LoKr with
                ``rank_dropout_scale``). Masking rows of ΔW and masking the product's
                output features are the same thing, so the mask acts on ΔW x here.

Both are 1 at evaluation. The scaling s = alpha / r is part of ΔW (peft's
``get_delta_weight``), so merging adds exactly ΔW.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.options import option
from .base import AdapterLayer, MethodConfig

# peft 0.21 LycorisConfig keys peftlab cannot honour: any other value is an error (an
# adapter with per-layer ranks, extra trained modules or excluded names would otherwise
# load wrongly). ``init_weights`` and ``use_effective_conv2d`` are accepted whatever
# their value: the first only picks start values, which the loaded tensors overwrite; the
# second concerns convolutions only, and peftlab adapts Linear layers.
PEFT_DEFAULTS_WE_REQUIRE = {
    "rank_pattern": {},
    "alpha_pattern": {},
    "layers_to_transform": None,
    "layers_pattern": None,
    "modules_to_save": None,
    "exclude_modules": None,
}


@dataclasses.dataclass
class LycorisConfig(MethodConfig):
    """Options of both LyCORIS methods (names as in the CLI, YAML and peft)."""

    r: int = option(8, "Rank of the update's low-rank factors")
    alpha: float = option(8.0, "Scale numerator: the update is multiplied by alpha / r")
    rank_dropout: float = option(
        0.0, "Probability of dropping each output row of the update while training (peft's)"
    )
    module_dropout: float = option(
        0.0, "Probability of skipping a layer's whole update in a training forward (peft's)"
    )

    def __post_init__(self):
        kind = type(self).__name__.removesuffix("Config")
        if int(self.r) != self.r or self.r < 1:
            raise ValueError(f"{kind} rank r must be a positive integer, got {self.r!r}")
        self.r = int(self.r)
        for name in ("rank_dropout", "module_dropout"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{kind} option {name} must be in [0, 1), got {p!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


class LycorisLinear(AdapterLayer):
    """``nn.Linear`` plus a dense update built from factors: ``base(x) + m · d ⊙ ΔW x``.

    Subclasses create their factors and implement :meth:`delta_weight` (ΔW, scaling
    included, out×in). ``rescale_rank_dropout``: divide the row mask by its mean.
    """

    rescale_rank_dropout: bool = True

    def __init__(
        self, base_layer: nn.Linear, scaling: float, rank_dropout: float, module_dropout: float
    ):
        super().__init__(base_layer)
        self.scaling = scaling
        self.rank_dropout = rank_dropout
        self.module_dropout = module_dropout

    def factor(self, *shape: int) -> nn.Parameter:
        """A new fp32 factor on the base's device (filled by the subclass's init): fp32
        whatever the base dtype, as every adapter weight the optimiser updates."""
        return nn.Parameter(torch.empty(shape, device=self.base_device(), dtype=torch.float32))

    def delta_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """h = W0 x + m · d ⊙ ΔW x (see the module's docstring)."""
        out = self.base_out(x)  # W0 x + b
        if self.merged or self._module_dropped():
            return out
        update = self.delta_x(x)  # ΔW x
        if self.training and self.rank_dropout > 0:
            update = update * self._row_mask(update)
        return out + update.to(out.dtype)

    def delta_x(self, x: torch.Tensor) -> torch.Tensor:
        """ΔW x with ΔW formed (peft's way); a method may compute it without ΔW."""
        delta = self.delta_weight()
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(delta.dtype)  # a bf16 input meets the fp32 update in one dtype
        return F.linear(x, delta)

    def _module_dropped(self) -> bool:
        # Drawn only when the option is on, so a run without it consumes no random numbers.
        return (
            self.training and self.module_dropout > 0 and bool(torch.rand(()) < self.module_dropout)
        )

    def _row_mask(self, like: torch.Tensor) -> torch.Tensor:
        """d: keep each output row with probability 1 - rank_dropout; / mean(d) if the
        method rescales (clamped so an all-dropped mask gives 0, not NaN)."""
        out_f = like.shape[-1]
        keep = (torch.rand(out_f, device=like.device) >= self.rank_dropout).to(like.dtype)
        if self.rescale_rank_dropout:
            keep = keep / keep.mean().clamp_min(1.0 / out_f)
        return keep

    def extra_repr(self) -> str:
        shapes = ", ".join(f"{k}={tuple(p.shape)}" for k, p in self.adapter_params().items())
        return f"{shapes}, scaling={self.scaling:g}"


def options_from_peft(cfg: dict[str, Any], kind: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Our options from a LyCORIS ``adapter_config.json``: refuse what peftlab cannot
    honour (naming the key), map the common keys and the method's own ``keys``."""
    for key, default in PEFT_DEFAULTS_WE_REQUIRE.items():
        value = cfg.get(key, default)
        if value not in (None, default, [], {}):
            raise ValueError(
                f"adapter_config.json sets {key}={value!r}, which peftlab's {kind} does not "
                f"support (expected {default!r})"
            )
    if cfg.get("target_modules") is None:
        raise ValueError(
            f"{kind} adapter_config.json has no target_modules; peftlab needs them written out"
        )
    opts = {
        "r": cfg.get("r", 8),
        "alpha": cfg.get("alpha", 8),
        "rank_dropout": cfg.get("rank_dropout", 0.0),
        "module_dropout": cfg.get("module_dropout", 0.0),
        "target_modules": cfg["target_modules"],
    }
    opts.update({k: cfg[k] for k in keys if k in cfg})
    return opts


def peft_config(c: LycorisConfig, peft_type: str, target_modules: Any) -> dict[str, Any]:
    """The ``adapter_config.json`` keys both LyCORIS methods write."""
    return {
        "peft_type": peft_type,
        "r": c.r,
        "alpha": c.alpha,
        "rank_dropout": c.rank_dropout,
        "module_dropout": c.module_dropout,
        "target_modules": target_modules,
        "exclude_modules": None,
        "init_weights": True,
        "use_effective_conv2d": False,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
