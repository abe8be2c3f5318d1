"""``train --max-memory``: choose the settings that keep a run under a memory cap, before
anything loads, or stop saying what would fit; and the prediction saved with a run."""

from __future__ import annotations

import copy
from collections.abc import Callable

from ..core.sizes import describe_bytes, parse_size
from .defaults import run_defaults


class MemoryCapError(ValueError):
    """No setting the planner knows keeps the run under ``--max-memory``."""


def apply_max_memory(cfg, log: Callable[[str], None]) -> dict | None:
    """With ``cfg.train.max_memory``: set token budget, gradient checkpointing, allocator
    and the generation copies' limit in ``cfg`` to the fastest setting predicted to stay
    under it (so ``config.yaml`` records them); returns that prediction."""
    t = cfg.train
    if not t.max_memory:
        return None
    from .planner import FIT_MARGIN, data_shape, fit_settings, target_device

    cap = parse_size(t.max_memory)
    device = target_device(t.device)
    try:
        data = data_shape(cfg)
    except (OSError, ValueError):
        data = None  # the run itself will report a bad dataset
    chosen, est = fit_settings(cfg, cap, data, device)
    if chosen is None:
        s, need = est.settings, est.peak / FIT_MARGIN
        raise MemoryCapError(
            f"--max-memory {t.max_memory}: no setting keeps {cfg.method} on "
            f"{cfg.model.name or 'the embedded model'} under {describe_bytes(cap)}; the "
            f"smallest predicted peak is {describe_bytes(est.peak)} (token budget "
            f"{s['token_budget']}, gradient checkpointing "
            f"{'on' if s['gradient_checkpointing'] else 'off'}, allocator "
            f"{s['allocator'] or 'n/a'}), and a setting needs a {1 - FIT_MARGIN:.0%} "
            f"margin. Nothing was trained. Raise the limit to at least {describe_bytes(need)}, "
            "or shorten max_length, use a smaller model, or a method with a smaller "
            "footprint (`peftlab plan --fit SIZE` compares them)"
        )
    levers = ("token_budget", "loss_chunk", "gradient_checkpointing", "allocator")
    before = {k: getattr(t, k) for k in levers}
    for k in before:
        setattr(t, k, chosen[k])
    t.generation_cache = (
        chosen["generation_cache"]
        if t.generation_cache is None
        else min(t.generation_cache, chosen["generation_cache"])
    )
    changed = [
        f"{k} {'unset' if before[k] is None else before[k]} -> {chosen[k]}"
        for k in before
        if before[k] != chosen[k]
    ]
    log(
        f"--max-memory {t.max_memory}: predicted peak {describe_bytes(est.peak)} of "
        f"{describe_bytes(cap)} with token budget {t.token_budget}, loss chunk "
        f"{t.loss_chunk}, gradient "
        f"checkpointing {'on' if t.gradient_checkpointing else 'off'}, allocator "
        f"{t.allocator}, generation copies up to {describe_bytes(t.generation_cache)}"
        + (f" (changed: {', '.join(changed)})" if changed else " (as asked)")
    )
    return est.to_dict()


def predicted_peak(cfg) -> dict | None:
    """The planner's prediction for ``cfg`` (what ``results.json`` keeps beside the
    measured peak); None when the model's shape cannot be read."""
    from .planner import data_shape, estimate_run

    try:
        c = copy.deepcopy(cfg)
        return estimate_run(c, data_shape(c), with_time=False).to_dict()
    except Exception as e:  # a prediction must never fail a finished run
        return {"error": f"{type(e).__name__}: {e}"}


FIXED_PARTS = ("runtime", "frozen weights", "trainable parameters", "gradients + AdamW state")


def step_room(cfg, planned: dict | None) -> tuple[int, int] | None:
    """Under ``--max-memory``: (the cap, the room a training step needs below it: the
    planned peak's step parts), for the run's host memory to keep free between steps
    (:class:`peftlab.host.CpuHost`); None when there is no cap or no plan."""
    if not planned or not cfg.train.max_memory or "parts" not in planned:
        return None
    step = sum(v for k, v in planned["parts"].items() if k not in FIXED_PARTS)
    return parse_size(cfg.train.max_memory), step


class _Hooks:
    """What the training loop calls (it may not import this package: it sits below)."""

    fit = staticmethod(apply_max_memory)
    defaults = staticmethod(run_defaults)
    room = staticmethod(step_room)
    predict = staticmethod(predicted_peak)


HOOKS = _Hooks()
