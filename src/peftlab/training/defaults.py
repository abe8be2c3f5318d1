"""Device-aware defaults: the token budget and the loss chunk a run leaves unset (None).

What wins on a 2-core CPU is not what wins on a GPU. On the CPU, cutting a micro-batch
into pieces of 2,048 tokens and taking the loss 256 positions at a time keep activations
small and the heap tidy at no cost in time (BENCHMARKS.md). On a GPU every piece is a
whole forward and backward of extra kernel launches (and, for QLoRA, every weight
dequantized again), and a small model's step is launch-bound: the GPU default is one
piece and the whole loss at once, and the run gives that up only where the planner
predicts the step would not fit the free memory: first the loss in chunks sized for the
GPU, then the largest token budget that fits.

:func:`resolve_defaults` is the rule, a pure function of the device kind, its free memory
and a view of the planner's prediction (:class:`PlanView`); ``memory/defaults.py`` makes
the view for a run, ``memory/planner.py`` searches settings in the same order, and the
loop writes what was chosen into ``config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..core.sizes import describe_bytes

CPU_TOKEN_BUDGET = 2048
"""Tokens per micro-batch piece on the CPU (rows x longest row; BENCHMARKS.md)."""
CPU_LOSS_CHUNK = 256
"""Positions per cross-entropy chunk on the CPU."""
GPU_LOSS_CHUNK = 4096
"""Positions per chunk on a GPU whose free memory is not known (evaluation outside a
training run, a plan made for a GPU from another machine): one chunk for most batches,
and a 128k-vocabulary model's logits stay near 5 GiB."""
GPU_LOGIT_SHARE = 0.125
"""A chunk sized for a GPU: its logits (and their fp32 copies) take at most this share of
the memory a run may use."""
MIN_PIECE = 256
"""The smallest token budget and loss chunk tried."""


class PlanView(Protocol):
    """What the rule needs of the planner's prediction for one run."""

    full_tokens: int
    """Tokens of the run's largest micro-batch uncut (rows x max_length)."""
    logit_bytes: int
    """Bytes one loss position holds at the loss's peak (vocabulary x bytes per logit)."""

    def peak(self, token_budget: int, loss_chunk: int) -> int:
        """The predicted peak of the run with these settings."""
        ...


@dataclass(frozen=True)
class Defaults:
    """A resolved token budget and loss chunk, and why."""

    token_budget: int
    loss_chunk: int
    why: str
    peak: int | None = None
    """The planner's predicted peak with them (GPU runs with a known free memory)."""


def sized_chunk(room: float, logit_bytes: int) -> int:
    """Positions per loss chunk whose logits take :data:`GPU_LOGIT_SHARE` of ``room``
    (a multiple of :data:`MIN_PIECE`, at least one)."""
    positions = int(room * GPU_LOGIT_SHARE) // max(1, logit_bytes)
    return max(MIN_PIECE, positions // MIN_PIECE * MIN_PIECE)


def smaller_budgets(full_tokens: int) -> list[int]:
    """Token budgets below ``full_tokens`` (a whole micro-batch), halving down to
    :data:`MIN_PIECE`: the largest first."""
    out, b = [], full_tokens
    while b > MIN_PIECE:
        b //= 2
        out.append(b)
    return out


def gpu_options(
    full_tokens: int, chunk: int, token_budget: int | None, loss_chunk: int | None
) -> list[tuple[int, int]]:
    """(token budget, loss chunk) pairs to try on a GPU, fastest first: no cutting before
    any cutting, and at each budget the whole loss before chunks of ``chunk`` positions. A
    value the run set is the only one tried."""
    budgets = [token_budget] if token_budget is not None else [0, *smaller_budgets(full_tokens)]
    chunks = [loss_chunk] if loss_chunk is not None else list(dict.fromkeys([0, chunk]))
    return [(b, c) for b in budgets for c in chunks]


def resolve_defaults(
    device: str,
    free: int | None,
    plan: PlanView | None,
    token_budget: int | None = None,
    loss_chunk: int | None = None,
    margin: float = 1.0,
) -> Defaults:
    """The token budget and loss chunk of a run on ``device`` (``cpu``, ``cuda``...) whose
    own settings are ``token_budget`` and ``loss_chunk`` (None: the default). ``free``: the
    device's free memory in bytes (None: unknown); a setting fits when ``plan.peak`` stays
    within ``margin`` of it. The CPU's defaults are fixed; a GPU's are the first of
    :func:`gpu_options` that fits (the smallest prediction when none does)."""
    if device != "cuda":
        return Defaults(
            CPU_TOKEN_BUDGET if token_budget is None else token_budget,
            CPU_LOSS_CHUNK if loss_chunk is None else loss_chunk,
            f"{device} defaults",
        )
    if free is None or plan is None:
        return Defaults(
            0 if token_budget is None else token_budget,
            GPU_LOSS_CHUNK if loss_chunk is None else loss_chunk,
            "GPU defaults, free memory not known",
        )
    room = free * margin
    smallest: Defaults | None = None
    for budget, chunk in gpu_options(
        plan.full_tokens, sized_chunk(room, plan.logit_bytes), token_budget, loss_chunk
    ):
        peak = plan.peak(budget, chunk)
        if peak <= room:
            return Defaults(budget, chunk, "the fastest setting predicted to fit", peak)
        if smallest is None or peak < smallest.peak:
            smallest = Defaults(budget, chunk, "no setting is predicted to fit", peak)
    return smallest


def describe(d: Defaults, free: int | None) -> str:
    """One line for the run's log."""
    room = f"{describe_bytes(free)} free" if free is not None else "free memory not known"
    peak = f", predicted peak {describe_bytes(d.peak)}" if d.peak is not None else ""
    return (
        f"device defaults ({room}): token budget {d.token_budget or 'off'}, loss chunk "
        f"{d.loss_chunk or 'off'} ({d.why}{peak})"
    )


def apply_defaults(cfg, dist, memory=None, log=None) -> Defaults | None:
    """Fill the run's unset token budget and loss chunk in ``cfg`` (so ``config.yaml``
    records them) for ``dist.device``: on a GPU from its free memory (the least over the
    processes, which must cut alike) and the planner's prediction (``memory``: the hooks
    ``api.train`` passes; without them the GPU defaults as if memory were plentiful)."""
    import torch

    t, device = cfg.train, dist.device
    if t.token_budget is not None and t.loss_chunk is not None:
        return None
    free = None
    if device.type == "cuda":
        free = min(dist.gather(int(torch.cuda.mem_get_info(device)[0])))
    if free is not None and memory is not None:
        d = memory.defaults(cfg, device.type, free)
    else:
        d = resolve_defaults(device.type, free, None, t.token_budget, t.loss_chunk)
    t.token_budget, t.loss_chunk = d.token_budget, d.loss_chunk
    if device.type == "cuda" and log is not None:
        log(describe(d, free))
    return d
