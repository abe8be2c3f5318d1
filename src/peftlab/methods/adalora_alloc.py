"""AdaLoRA's rank allocator (Zhang et al., 2023, "AdaLoRA: Adaptive Budget Allocation for
Parameter-Efficient Fine-Tuning", arXiv 2303.10512, §3.2-3.3 and Algorithm 1).

Every adapted matrix is ΔW = P Λ Q, a sum of *triplets* (P_{:,i}, λ_i, Q_{i,:}). The
allocator scores each triplet and keeps the best ones within a budget (the total number of
triplets kept over all layers) that shrinks on a cubic schedule:

* sensitivity of one entry: I(w) = |w · ∂L/∂w|                                (Eq. 8)
* smoothed sensitivity:     Ī ← β1 Ī + (1 − β1) I                               (Eq. 9)
* uncertainty:              Ū ← β2 Ū + (1 − β2) |I − Ī|                        (Eq. 10)
* entry score:              s = Ī · Ū                                           (Eq. 11)
* triplet score:            S_i = s(λ_i) + mean_k s(P_{k,i}) + mean_j s(Q_{i,j})  (Eq. 7)
* budget b(t): init until tinit, then cubic decay to target at T − tfinal      (Eq. 12)

The numerics are pure functions; :class:`ImportanceEMA` holds the only state (Ī and Ū per
parameter). The arithmetic follows Hugging Face peft's ``RankAllocator`` operation for
operation, so both keep exactly the same triplets when fed the same gradients (ties and
rounding included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Schedule:
    """The budget schedule of Eq. (12), in optimiser steps counted from 1."""

    init_budget: int
    target_budget: int
    tinit: int
    tfinal: int
    total: int
    delta_t: int

    def __post_init__(self):
        if self.tinit + self.tfinal >= self.total:
            raise ValueError(
                f"AdaLoRA needs a budgeting phase: tinit ({self.tinit}) + tfinal "
                f"({self.tfinal}) = {self.tinit + self.tfinal} must be below the run's "
                f"total steps ({self.total}). Lower tinit and/or tfinal, or train for more "
                "steps (max_steps / epochs)."
            )
        if self.init_budget < self.target_budget:
            raise ValueError(
                f"AdaLoRA's budget cannot grow: the adapters hold {self.init_budget} "
                f"triplets but the target budget is {self.target_budget}; target_r must not "
                "exceed the ranks the layers start with"
            )

    @property
    def final_step(self) -> int:
        """The step of the last allocation; afterwards the rank pattern stays fixed."""
        return self.total - self.tfinal

    def budget(self, step: int) -> tuple[int, bool]:
        """(budget at ``step``, whether to reallocate now).

        Kept bit for bit as peft computes it: Python floats, ``int()`` truncation (so the
        budget can stay at the initial value for a few steps after tinit when the decay is
        slow), and a reallocation whenever ``step`` is a multiple of deltaT.
        """
        if step <= self.tinit:
            return self.init_budget, False
        if step > self.final_step:
            return self.target_budget, True
        remaining = 1 - (step - self.tinit) / (self.final_step - self.tinit)
        span = self.init_budget - self.target_budget
        return int(span * remaining**3 + self.target_budget), step % self.delta_t == 0


def smooth_importance(
    param: torch.Tensor,
    grad: torch.Tensor | None,
    ema_ipt: torch.Tensor,
    ema_unc: torch.Tensor,
    beta1: float,
    beta2: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of Eqs. (8)-(10); returns the new (Ī, Ū).

    A parameter without a gradient (the loss did not reach it) has sensitivity zero; peft
    would fail there instead. The order of operations is peft's, so the scores agree to
    the last bit and ties in the ranking break the same way.
    """
    if grad is None:
        grad = torch.zeros_like(param)
    ipt = (param * grad).abs().detach()
    ema_ipt = beta1 * ema_ipt + (1 - beta1) * ipt
    ema_unc = beta2 * ema_unc + (1 - beta2) * (ipt - ema_ipt).abs()
    return ema_ipt, ema_unc


def element_score(ema_ipt: torch.Tensor, ema_unc: torch.Tensor) -> torch.Tensor:
    """Eq. (11): s = Ī · Ū (smoothed sensitivity times its uncertainty)."""
    return ema_ipt * ema_unc


def triplet_scores(
    score_a: torch.Tensor, score_e: torch.Tensor, score_b: torch.Tensor
) -> torch.Tensor:
    """Eq. (7): one score per rank index i of a layer, shape ``(r,)``.

    ``score_a``: entry scores of Q = lora_A (r×in), row i belongs to triplet i;
    ``score_e``: of Λ = lora_E (r×1); ``score_b``: of P = lora_B (out×r), column i.
    """
    # Same reductions as peft (a mean over each row of A and each column of B), then the
    # two means added before λ's score, so the sums round identically.
    mean_a = torch.mean(score_a, dim=1, keepdim=True)
    mean_b = torch.mean(score_b, dim=0, keepdim=False).view(-1, 1)
    vectors = torch.cat([mean_a, mean_b], dim=1).sum(dim=1, keepdim=False)
    return score_e.view(-1) + vectors.view(-1)


def keep_masks(
    scores: dict[str, torch.Tensor], init_budget: int, budget: int
) -> dict[str, torch.Tensor]:
    """Which triplets to keep so that at most ``budget`` of ``init_budget`` survive.

    The threshold is the (init_budget − budget)-th smallest score over *all* layers, and
    every triplet scoring at or below it is masked: with ties more than asked are dropped,
    exactly as peft does (``<=``, and ``~(s <= t)`` rather than ``s > t`` so that a NaN
    score is kept as in peft). When nothing needs to go (the truncated budget can equal
    the initial one just after tinit) every triplet is kept; peft would call
    ``kthvalue(k=0)`` there and fail.
    """
    n_masked = init_budget - budget
    if n_masked <= 0:
        return {
            k: torch.ones(s.shape, dtype=torch.bool, device=s.device) for k, s in scores.items()
        }
    everything = torch.cat([s.view(-1) for s in scores.values()])
    threshold = torch.kthvalue(everything, k=n_masked)[0].item()
    return {k: ~(s <= threshold) for k, s in scores.items()}


class ImportanceEMA:
    """Ī and Ū of every scored parameter, keyed ``<layer name>.<lora_A|lora_E|lora_B>``.

    Starts empty; a key's averages start at zero the first time it is updated (as peft's).
    """

    def __init__(self, beta1: float, beta2: float):
        self.beta1, self.beta2 = beta1, beta2
        self.ipt: dict[str, torch.Tensor] = {}
        self.unc: dict[str, torch.Tensor] = {}

    def update(self, key: str, param: torch.Tensor, grad: torch.Tensor | None) -> None:
        with torch.no_grad():
            if key not in self.ipt:
                self.ipt[key] = torch.zeros_like(param)
                self.unc[key] = torch.zeros_like(param)
            ipt, unc = self.ipt[key], self.unc[key]
            self.ipt[key], self.unc[key] = smooth_importance(
                param, grad, ipt, unc, self.beta1, self.beta2
            )

    def score(self, key: str) -> torch.Tensor:
        if key not in self.ipt:
            raise RuntimeError(f"AdaLoRA has no importance score for {key} yet")
        return element_score(self.ipt[key], self.unc[key])

    def reset(self) -> None:
        """Forget all scores (after the final allocation nothing needs them)."""
        self.ipt, self.unc = {}, {}

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"ema_ipt.{k}": v for k, v in self.ipt.items()}
        out.update({f"ema_unc.{k}": v for k, v in self.unc.items()})
        return out

    def load(self, tensors: dict[str, torch.Tensor], device_of: dict[str, torch.device]):
        """Restore from :meth:`tensors`' output; ``device_of`` maps each key to its device."""
        self.reset()
        for full, t in tensors.items():
            kind, _, key = full.partition(".")
            if kind not in ("ema_ipt", "ema_unc"):
                continue
            if key not in device_of:
                raise ValueError(
                    f"AdaLoRA state tensor {full} names no AdaLoRA parameter of "
                    "this model (was the checkpoint written for another model?)"
                )
            (self.ipt if kind == "ema_ipt" else self.unc)[key] = t.to(device_of[key])
        if self.ipt.keys() != self.unc.keys():
            raise ValueError(
                "AdaLoRA state is incomplete: sensitivity and uncertainty "
                "averages cover different parameters"
            )
