"""VeRA: vector-based random matrix adaptation (Kopiczko, Blankevoort and Asano, 2024,
"VeRA: Vector-based Random Matrix Adaptation", ICLR 2024, arXiv 2310.11454, eq. 2).

    h = W0 x + Λ_b B Λ_d A dropout(x)

    x ─┬─ W0 (frozen, out×in) ─────────────────────────────────────────┐
       └─ dropout ── A (r×in, frozen) ── ⊙ λ_d (r) ── B (out×r, frozen) ── ⊙ λ_b (out) ── (+) ── h

One pair of random matrices A and B is drawn once per model and shared by every adapted
layer; only the two vectors λ_d and λ_b are trained per layer, so an adapter has
``r + out`` parameters per layer instead of LoRA's ``r·(in + out)``. λ_b starts at zero
(a fresh adapter is the identity), λ_d at ``d_initial`` (0.1, the paper's Table 6c).

Learning rate: about 1e-3 (``configs/compare-wide.yaml``). At 3e-3 on the embedded
SmolLM2-135M (AdamW, clip 1.0, batch 4 × 128) the loss rose from 1.59 to 5.24 within six
steps, and peft 0.21's VeRA gave the same losses and gradient norms to 5 digits: the
method at that rate, not this implementation.

As in Hugging Face peft 0.21 (``tuners/vera``), so that adapters pass between the two:

- A and B are sized to the largest targeted layer (``r × max in``, ``max out × r``) and
  each layer uses their top-left slice, ``A[:, :in]`` and ``B[:out, :]``;
- both are Kaiming-uniform (gain √2, fan-in) from one ``torch.Generator`` seeded with
  ``projection_prng_key``, A drawn before B, so a key gives the same projections here and
  in peft;
- the file holds ``<module>.vera_lambda_b`` (out) and ``<module>.vera_lambda_d`` (r) per
  layer and, with ``save_projection`` (the default), the projections themselves under
  ``base_model.vera_A`` and ``base_model.vera_B``; without it a loader draws them again
  from the key.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import torch
from torch import nn

from ..core.options import make_config, option
from ..quant.linear4bit import Linear4bit
from .base import AdapterLayer, Method, MethodConfig

KAIMING_GAIN = math.sqrt(2.0)
"""peft's ``_kaiming_init`` for the projections: gain √2 on the fan-in, uniform bound
√3 · gain / √fan_in (torch's kaiming_uniform_ with a=0, drawn from a given generator)."""

# peft 0.21 VeraConfig keys peftlab cannot honour: any other value is an error.
# ``init_weights`` is accepted either way: it only picks start values the file replaces.
_PEFT_DEFAULTS_WE_REQUIRE = {
    "bias": "none",
    "fan_in_fan_out": False,
    "modules_to_save": None,
    "layers_to_transform": None,
    "layers_pattern": None,
}


@dataclasses.dataclass
class VeraConfig(MethodConfig):
    """VeRA options (names as in the CLI and YAML)."""

    r: int = option(
        256,
        "Rank of the shared random projections A (r×in) and B (out×r); VeRA's trainable "
        "parameters grow only by r per layer, so it is larger than LoRA's (peft default 256)",
    )
    d_initial: float = option(
        0.1, "Start value of every λ_d entry (the paper's Table 6c: small values, <= 0.1)"
    )
    projection_prng_key: int = option(
        0, "Seed of the generator that draws the shared projections A and B"
    )
    save_projection: bool = option(
        True,
        "Save A and B in adapter_model.safetensors (as peft does by default); without "
        "them a loader redraws them from projection_prng_key",
    )
    dropout: float = option(0.0, "Dropout on the adapter's input (not on the base path)")

    def __post_init__(self):
        if int(self.r) != self.r or self.r < 1:
            raise ValueError(f"VeRA rank r must be a positive integer, got {self.r!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"VeRA dropout must be in [0, 1), got {self.dropout!r}")
        self.r = int(self.r)


def draw_projections(
    r: int, max_in: int, max_out: int, key: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B), r×max_in and max_out×r, Kaiming-uniform from a generator seeded with
    ``key``: A first, then B, each with its own fan-in (max_in, then r), as peft draws."""
    gen = torch.Generator(device="cpu").manual_seed(int(key))

    def draw(shape: tuple[int, int]) -> torch.Tensor:
        bound = math.sqrt(3.0) * KAIMING_GAIN / math.sqrt(shape[1])
        return torch.empty(shape).uniform_(-bound, bound, generator=gen)

    return draw((r, max_in)), draw((max_out, r))


class VeraProjections(nn.Module):
    """The shared frozen A and B: one module, referenced by every :class:`VeraLinear` of
    a model, so that ``.to()`` moves one copy. Non-persistent buffers: they are saved
    once (``VeRA.shared_tensors``), not once per layer."""

    def __init__(self, vera_A: torch.Tensor, vera_B: torch.Tensor):
        super().__init__()
        self.register_buffer("vera_A", vera_A, persistent=False)
        self.register_buffer("vera_B", vera_B, persistent=False)


class VeraLinear(AdapterLayer):
    """``nn.Linear`` plus ``λ_b ⊙ B[:out] (λ_d ⊙ A[:, :in] dropout(x))`` (arXiv 2310.11454)."""

    def __init__(
        self, base_layer: nn.Module, shared: VeraProjections, cfg: VeraConfig, name: str = ""
    ):
        super().__init__(base_layer)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        a, b = shared.vera_A, shared.vera_B
        if a.shape[1] < self.in_features or b.shape[0] < self.out_features:
            raise ValueError(
                f"layer {name or type(base_layer).__name__} ({self.in_features} inputs, "
                f"{self.out_features} outputs) does not fit the shared VeRA projections "
                f"{tuple(a.shape)} / {tuple(b.shape)}"
            )
        self.vera_shared = shared
        self.vera_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        device = self.base_device()
        # fp32 whatever the base dtype, as every adapter here: the optimiser's updates.
        self.vera_lambda_b = nn.Parameter(
            torch.zeros(self.out_features, device=device, dtype=torch.float32)
        )
        self.vera_lambda_d = nn.Parameter(
            torch.full((cfg.r,), float(cfg.d_initial), device=device, dtype=torch.float32)
        )

    def sliced(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's A[:, :in] (r×in) and B[:out, :] (out×r)."""
        s = self.vera_shared
        return s.vera_A[:, : self.in_features], s.vera_B[: self.out_features, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """h = W0 x + Λ_b B Λ_d A dropout(x) (eq. 2), the vectors kept fp32 in the products."""
        out = self.ops.frozen_linear(self.base_layer, x)  # W0 x + b
        if self.merged:
            return out
        return out + self.update(x).to(out.dtype)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.sliced()
        h = self.ops.dropout_linear(x, a, self.vera_dropout)  # A dropout(x)
        return self.vera_lambda_b * nn.functional.linear(self.vera_lambda_d * h, b)

    def delta_weight(self) -> torch.Tensor:
        a, b, _ = self.low_rank_factors()
        return b.float() @ a.float()

    def low_rank_factors(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """ΔW = (Λ_b B)(Λ_d A): a rank-r update in LoRA's form with s = 1."""
        a, b = self.sliced()
        return self.vera_lambda_d[:, None] * a.float(), self.vera_lambda_b[:, None] * b.float(), 1.0

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.vera_lambda_d.numel()}"


def _device(module: nn.Module) -> torch.device:
    return next(itertools.chain(module.parameters(), module.buffers())).device


class VeRA(Method):
    """VeRA: per-layer scaling vectors around one pair of shared frozen random matrices."""

    name = "vera"
    peft_type = "VERA"
    config_cls = VeraConfig
    supports_sharding = False
    """Every layer reads one shared pair of buffers; FSDP's per-layer units were not
    built for a buffer outside them (untested), so VeRA trains data-parallel (DDP)."""

    def __init__(self, config: VeraConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self.projections: VeraProjections | None = None

    def before_wrap(self, model: nn.Module, targets: list[str]) -> None:
        """Draw A and B sized to the largest target, as peft's ``_find_dim`` does."""
        modules = [model.get_submodule(t) for t in targets]
        for name, m in zip(targets, modules):
            if not isinstance(m, (nn.Linear, Linear4bit)):
                raise TypeError(f"VeRA can wrap nn.Linear only; {name} is {type(m).__name__}")
        max_in = max(m.in_features for m in modules)
        max_out = max(m.out_features for m in modules)
        c, device = self.config, _device(modules[0])
        if device.type == "meta":  # a planner's skeleton: shapes only
            a, b = torch.empty(c.r, max_in, device=device), torch.empty(max_out, c.r, device=device)
        else:
            a, b = draw_projections(c.r, max_in, max_out, c.projection_prng_key)
        self.projections = VeraProjections(a.to(device), b.to(device))

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        if self.projections is None:
            raise RuntimeError("VeRA.wrap before before_wrap: inject the model with inject()")
        return VeraLinear(module, self.projections, self.config, name)

    def _projection_tensors(self) -> dict[str, torch.Tensor]:
        p = self.projections
        return {} if p is None else {"vera_A": p.vera_A, "vera_B": p.vera_B}

    def shared_tensors(self) -> dict[str, torch.Tensor]:
        return self._projection_tensors() if self.config.save_projection else {}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The projections, so that a resumed run continues on the very same A and B."""
        return self._projection_tensors()

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        mine = self._projection_tensors()
        if set(tensors) != set(mine) or any(tensors[k].shape != mine[k].shape for k in mine):
            raise ValueError(
                "checkpoint's VeRA projections "
                f"{ {k: tuple(v.shape) for k, v in tensors.items()} } do not fit this run's "
                f"{ {k: tuple(v.shape) for k, v in mine.items()} }"
            )
        with torch.no_grad():
            for k, t in mine.items():
                t.copy_(tensors[k])

    def to_peft_config(self, target_modules: Any, layers=None) -> dict[str, Any]:
        c = self.config
        return {
            "peft_type": "VERA",
            "r": c.r,
            "target_modules": target_modules,
            "projection_prng_key": c.projection_prng_key,
            "save_projection": c.save_projection,
            "vera_dropout": c.dropout,
            "d_initial": c.d_initial,
            "fan_in_fan_out": False,
            "bias": "none",
            "init_weights": True,
        }

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> VeRA:
        for key, default in _PEFT_DEFAULTS_WE_REQUIRE.items():
            value = cfg.get(key, default)
            if value not in (None, default, []):
                raise ValueError(
                    f"adapter_config.json sets {key}={value!r}, which peftlab's VeRA does "
                    f"not support (expected {default!r})"
                )
        if cfg.get("target_modules") is None:
            raise ValueError("VeRA adapter_config.json has no target_modules")
        opts = {
            "r": cfg.get("r", 256),
            "target_modules": cfg["target_modules"],
            "projection_prng_key": cfg.get("projection_prng_key", 0),
            "save_projection": cfg.get("save_projection", True),
            "dropout": cfg.get("vera_dropout", 0.0),
            "d_initial": cfg.get("d_initial", 0.1),
        }
        return cls(make_config(cls.config_cls, opts, where="VeRA adapter_config.json"))
