"""The step plan of a run (steps per epoch, warm-up, which micro-batches each step takes)
and its learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Plan:
    """How many steps, known before the first one (AdaLoRA's schedule reads it)."""

    batch_size: int
    grad_accum: int
    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    processes: int = 1
    """Training processes; each takes its share of every global micro-batch."""

    @property
    def global_batch(self) -> int:
        """Records per micro-batch over all processes."""
        return self.batch_size * self.processes

    def micro_batches(self, step: int) -> tuple[int, slice]:
        """(epoch, slice of that epoch's micro-batches) for 0-based optimiser ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        start = k * self.grad_accum
        return epoch, slice(start, min(start + self.grad_accum, self.micro_per_epoch))


def make_plan(n_examples: int, t, processes: int = 1) -> Plan:
    if t.batch_size < 1 or t.grad_accum < 1:
        raise ValueError("batch_size and grad_accum must be at least 1")
    micro = math.ceil(n_examples / (t.batch_size * processes))
    per_epoch = math.ceil(micro / t.grad_accum)
    total = t.max_steps if t.max_steps else max(1, math.ceil(per_epoch * t.epochs))
    return Plan(
        t.batch_size,
        t.grad_accum,
        micro,
        per_epoch,
        total,
        int(round(total * t.warmup_ratio)),
        processes,
    )


def warmup_cosine(plan: Plan):
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to 0."""

    def f(step: int) -> float:
        if step < plan.warmup_steps:
            return (step + 1) / (plan.warmup_steps + 1)
        span = max(1, plan.total_steps - plan.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - plan.warmup_steps) / span)))

    return f
