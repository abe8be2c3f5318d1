"""AdaLoRA: adaptive budget allocation (Zhang et al., 2023, arXiv 2303.10512).

Each adapted matrix gets an SVD-shaped update (Eq. 3)

    h = W0 x + (alpha / ranknum) · P Λ Q x,   P = lora_B (out×r), Λ = diag(lora_E) (r×1),
                                              Q = lora_A (r×in)

with Λ = 0 and P, Q ~ N(0, 0.02²) at the start (so a fresh adapter is the identity), and
``ranknum`` = init_r for the whole life of the adapter (peft's convention: the scale does
not change when triplets are pruned, nor when a cut adapter is loaded). During training the
rank allocator (:mod:`.adalora_alloc`) zeroes the λ of unimportant triplets, and the loss
gets the orthogonality penalty of Eq. (4) so that P and Q stay close to singular vectors.

Saved in the PEFT format as peft writes it (:mod:`.adalora_peft`): ``peft_type:
ADALORA``, a ``rank_pattern`` (module → which of the init_r triplets are kept) and
tensors cut to the kept triplets.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..core.options import make_config, option
from .adalora_alloc import ImportanceEMA, Schedule, keep_masks, triplet_scores
from .adalora_peft import parse_rank_pattern, peft_config, peft_options
from .base import AdapterLayer, Method, MethodConfig, check_rank

INIT_STD = 0.02
"""Std of P and Q at initialisation (peft's ``reset_lora_parameters`` and the authors'
loralib both use N(0, 0.02))."""
RANKNUM_EPS = 1e-5
"""Added to ranknum in the scale, as peft does (there a guard for a layer cut to rank 0)."""
FACTORS = ("lora_A", "lora_E", "lora_B")


@dataclasses.dataclass
class AdaloraConfig(MethodConfig):
    """AdaLoRA options (names as in the CLI and YAML; defaults as in peft unless noted).
    The total step count is not an option: it comes from the training plan."""

    init_r: int = option(
        12,
        "AdaLoRA: initial rank of every adapted matrix (the budget "
        "starts at init_r x number of adapted matrices)",
    )
    target_r: int = option(
        8, "AdaLoRA: average rank to end with (final budget: target_r x number of adapted matrices)"
    )
    alpha: float = option(
        8.0, "Scale numerator: the update is multiplied by alpha / r (AdaLoRA: alpha / init_r)"
    )
    # 0.05 as peftlab's LoRA (peft's AdaLoRA default is 0), so compared runs differ in
    # the method only.
    dropout: float = option(0.05, "Dropout on the adapter's input (not on the base path)")
    tinit: int = option(0, "AdaLoRA: warm-up steps before the budget starts to shrink")
    tfinal: int = option(0, "AdaLoRA: last steps, trained with the final rank pattern fixed")
    deltaT: int = option(1, "AdaLoRA: reallocate the budget every deltaT steps")
    beta1: float = option(0.85, "AdaLoRA: EMA factor of the sensitivity |w * grad|")
    beta2: float = option(0.85, "AdaLoRA: EMA factor of the sensitivity's uncertainty")
    orth_reg_weight: float = option(0.5, "AdaLoRA: weight of the orthogonality penalty on P and Q")

    def __post_init__(self):
        for name in ("init_r", "target_r", "tinit", "tfinal", "deltaT"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(
                    f"AdaLoRA option {name} must be a non-negative integer, got {value!r}"
                )
            setattr(self, name, int(value))
        if self.init_r < 1 or self.deltaT < 1:
            raise ValueError(
                f"AdaLoRA init_r and deltaT must be at least 1, got "
                f"init_r={self.init_r}, deltaT={self.deltaT}"
            )
        if self.target_r > self.init_r:
            raise ValueError(
                f"AdaLoRA target_r ({self.target_r}) must not exceed init_r "
                f"({self.init_r}): the budget only shrinks"
            )
        for name in ("beta1", "beta2"):
            if not 0.0 < getattr(self, name) < 1.0:  # peft asserts the same
                raise ValueError(f"AdaLoRA {name} must be in (0, 1), got {getattr(self, name)}")
        if self.alpha <= 0:
            raise ValueError(f"AdaLoRA alpha must be positive, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"AdaLoRA dropout must be in [0, 1), got {self.dropout!r}")
        if self.orth_reg_weight < 0:
            raise ValueError(f"AdaLoRA orth_reg_weight must be >= 0, got {self.orth_reg_weight!r}")


class AdaLoraLinear(AdapterLayer):
    """``nn.Linear`` plus ``(alpha / ranknum) · P Λ Q x`` (Eq. 3 of arXiv 2303.10512).

    ``kept``: which of this layer's rows survive the last allocation (``None``: all, no
    allocation yet). ``origin``: for an adapter loaded cut, which of the init_r triplets
    its rows are (``None``: the rows *are* the init_r triplets).
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        r: int,
        ranknum: int,
        alpha: float,
        dropout: float,
        origin: list[bool] | None = None,
    ):
        super().__init__(base_layer)
        in_f, out_f = base_layer.in_features, base_layer.out_features
        # fp32 whatever the base dtype: these are what the optimiser updates.
        kw = dict(device=base_layer.weight.device, dtype=torch.float32)
        self.lora_A = nn.Parameter(torch.empty(r, in_f, **kw))
        self.lora_E = nn.Parameter(torch.empty(r, 1, **kw))
        self.lora_B = nn.Parameter(torch.empty(out_f, r, **kw))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.alpha, self.ranknum, self.origin = alpha, float(ranknum), origin
        # A buffer so that it follows .to(device); not persistent, so state_dict() stays the
        # parameters (checkpoints save it through Method.state_tensors instead).
        self.register_buffer("kept", None, persistent=False)
        self.reset_adapter()

    @property
    def r(self) -> int:
        return self.lora_A.shape[0]

    def reset_adapter(self) -> None:
        """Λ = 0 (the identity update), P and Q ~ N(0, INIT_STD²)."""
        nn.init.zeros_(self.lora_E)
        nn.init.normal_(self.lora_A, mean=0.0, std=INIT_STD)
        nn.init.normal_(self.lora_B, mean=0.0, std=INIT_STD)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        """(alpha / ranknum) · P Λ Q dropout(x), in peft's order of operations (the
        layer's forward adds it to W0 x: :meth:`AdapterLayer.forward`)."""
        h = self.ops.dropout_linear(x, self.lora_A * self.lora_E, self.lora_dropout)
        return (h @ self.lora_B.T) * self.alpha / (self.ranknum + RANKNUM_EPS)

    def delta_weight(self) -> torch.Tensor:
        a, e, b = (p.float() for p in (self.lora_A, self.lora_E, self.lora_B))
        return (b @ (a * e)) * self.alpha / (self.ranknum + RANKNUM_EPS)

    def apply_mask(self) -> None:
        """Zero λ of the pruned triplets (the mask of Eq. 5); P and Q are left alone."""
        if self.kept is not None:
            with torch.no_grad():
                self.lora_E.masked_fill_(~self.kept.view(-1, 1), 0.0)

    def export_params(self) -> dict[str, torch.Tensor]:
        """The kept triplets only, as peft saves them (rows of Q and Λ, columns of P)."""
        if self.kept is None:
            return dict(self.adapter_params())
        k = self.kept
        return {"lora_A": self.lora_A[k], "lora_E": self.lora_E[k], "lora_B": self.lora_B[:, k]}

    def rank_pattern(self) -> list[bool] | None:
        """Which of the init_r triplets this layer keeps (``None``: all, never pruned)."""
        if self.origin is None and self.kept is None:
            return None
        rows = iter(self.kept.tolist() if self.kept is not None else [True] * self.r)
        return [bool(next(rows)) if o else False for o in (self.origin or [True] * self.r)]


def orthogonality_penalty(layers: list[AdaLoraLinear]) -> torch.Tensor:
    """R(P, Q) of Eq. (4), as the authors' code and peft compute it: the *plain* (not
    squared) Frobenius norms ‖QQᵀ − I‖ and ‖PᵀP − I‖, averaged over all matrices."""
    norms = []
    for layer in layers:
        for gram in (layer.lora_A @ layer.lora_A.T, layer.lora_B.T @ layer.lora_B):
            eye = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
            norms.append(torch.linalg.matrix_norm(gram - eye, ord="fro"))
    return torch.stack(norms).sum() / len(norms)


def _adalora_layers(model: nn.Module) -> dict[str, AdaLoraLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, AdaLoraLinear)}


class AdaLoRA(Method):
    """SVD-shaped low-rank adaptation with importance-driven rank allocation."""

    name = "adalora"
    peft_type = "ADALORA"
    config_cls = AdaloraConfig
    # The rank allocator scores every triplet from whole |theta * grad| on every process;
    # under FSDP a process holds shards only. Under DDP the gradients are averaged before
    # on_step_end, so every process computes the same scores and masks.
    supports_sharding = False

    def __init__(self, config: AdaloraConfig | None = None, **options: Any):
        super().__init__(config, **options)
        c = self.config
        self.importance = ImportanceEMA(c.beta1, c.beta2)
        self.total_step: int | None = None  # from the plan (or a loaded adapter_config)
        self.saved_pattern: dict[str, list[bool]] = {}  # module -> kept, of a loaded adapter
        self._layers: dict[str, AdaLoraLinear] = {}

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        if not isinstance(module, nn.Linear):
            raise TypeError(f"AdaLoRA can wrap nn.Linear only; {name} is {type(module).__name__}")
        c = self.config
        check_rank(c.init_r, module, name, "init_r")
        pattern = self.saved_pattern.get(name)
        if pattern is not None and len(pattern) != c.init_r:
            raise ValueError(
                f"rank_pattern for {name} has {len(pattern)} entries but init_r is {c.init_r}"
            )
        # A loaded adapter is built at its kept rank, but its scale keeps ranknum = init_r.
        r = sum(pattern) if pattern is not None else c.init_r
        layer = AdaLoraLinear(module, r, c.init_r, c.alpha, c.dropout, origin=pattern)
        self._layers[name] = layer
        return layer

    # -- training hooks ----------------------------------------------------------------------
    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """orth_reg_weight · R(P, Q) (Eq. 4), in fp32 even under autocast: a bf16 Gram
        matrix minus I loses most of the deviation it is meant to penalise."""
        layers = list(_adalora_layers(model).values())
        if self.config.orth_reg_weight == 0 or not layers:
            return None
        with torch.autocast(layers[0].lora_A.device.type, enabled=False):
            return self.config.orth_reg_weight * orthogonality_penalty(layers)

    def on_step_end(self, model: nn.Module, step: int, plan: Any) -> dict | None:
        """Algorithm 1 of the paper, after the optimiser step of ``step`` (from 1), with the
        phases peft uses: score and reallocate every deltaT steps until T − tfinal, the
        final allocation at T − tfinal, then re-apply that fixed pattern every step."""
        layers = _adalora_layers(model)
        if not layers:
            raise ValueError("AdaLoRA.on_step_end: the model has no AdaLoRA layers")
        schedule = self.schedule(layers, plan.total_steps)
        self.total_step = plan.total_steps
        # peft scores only before T - tfinal; a run whose first step is already T - tfinal
        # would find no scores (peft fails there), so it scores that step once.
        final = schedule.final_step
        if step < final or (step == final and not self.importance.ipt):
            for name, layer in layers.items():
                for factor in FACTORS:
                    p = getattr(layer, factor)
                    self.importance.update(f"{name}.{factor}", p, p.grad)
        if step < final:
            budget, now = schedule.budget(step)
            return self._allocate(layers, schedule, budget) if now else None
        if step == final:
            metrics = self._allocate(layers, schedule, schedule.target_budget)
            self.importance.reset()  # the pattern is final; the scores are not needed again
            return metrics
        for layer in layers.values():  # the final phase: pruned λ stay zero
            layer.apply_mask()
        return None

    def schedule(self, layers: dict[str, AdaLoraLinear], total_steps: int) -> Schedule:
        c = self.config
        return Schedule(
            init_budget=sum(layer.r for layer in layers.values()),
            target_budget=c.target_r * len(layers),
            tinit=c.tinit,
            tfinal=c.tfinal,
            total=total_steps,
            delta_t=c.deltaT,
        )

    def _allocate(self, layers: dict[str, AdaLoraLinear], schedule: Schedule, budget: int) -> dict:
        scores = {
            name: triplet_scores(*(self.importance.score(f"{name}.{f}") for f in FACTORS))
            for name in layers
        }
        masks = keep_masks(scores, schedule.init_budget, budget)
        for name, layer in layers.items():
            layer.kept = masks[name]
            layer.apply_mask()
        return {
            "adalora_budget": budget,
            "adalora_ranks": {name: int(m.sum()) for name, m in masks.items()},
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The importance averages, each layer's kept mask and the total step count."""
        out = dict(self.importance.tensors())
        out.update(
            {f"kept.{n}": layer.kept for n, layer in self._layers.items() if layer.kept is not None}
        )
        if self.total_step is not None:
            out["total_step"] = torch.tensor(self.total_step, dtype=torch.int64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        devices = {
            f"{n}.{f}": layer.lora_A.device for n, layer in self._layers.items() for f in FACTORS
        }
        self.importance.load(tensors, devices)
        for key, t in tensors.items():
            if key.startswith("kept."):
                layer = self._layers.get(key[len("kept.") :])
                if layer is None or t.shape != (layer.r,):
                    raise ValueError(f"AdaLoRA state tensor {key} does not fit this model")
                layer.kept = t.to(device=layer.lora_A.device, dtype=torch.bool)
            elif key == "total_step":
                self.total_step = int(t)
            elif not key.startswith(("ema_ipt.", "ema_unc.")):
                raise ValueError(f"unknown AdaLoRA state tensor {key}")

    # -- PEFT format -----------------------------------------------------------------------
    def to_peft_config(
        self, target_modules: Any, layers: dict[str, AdapterLayer] | None = None
    ) -> dict[str, Any]:
        ada = {n: lay for n, lay in (layers or {}).items() if isinstance(lay, AdaLoraLinear)}
        return peft_config(self.config, target_modules, ada, self.total_step)

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> AdaLoRA:
        where = "AdaLoRA adapter_config.json"
        method = cls(make_config(cls.config_cls, peft_options(cfg, where), where=where))
        method.saved_pattern = parse_rank_pattern(cfg.get("rank_pattern"), where)
        method.total_step = cfg.get("total_step")
        return method
