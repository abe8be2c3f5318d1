"""Peak memory of a training run, predicted part by part before anything is loaded.

The parts (bytes), for the phase that peaks:

- ``runtime``: the Python process with torch and transformers imported (CPU only; a
  GPU's ``max_memory_allocated`` does not count it), measured on this project's CPU;
- ``frozen weights``, ``trainable parameters``: exact, from a meta-device skeleton of the
  model with the method's adapter (:mod:`.shapes`); while training under mixed precision,
  the frozen Linear weights only matmuls read count in the compute dtype;
- ``gradients + AdamW state``: three times the trainable bytes (gradient, two moments);
- ``activations: KIND``: what autograd saves for backward for the largest micro-batch
  piece of the run, per decoder layer as measured by the probe (:mod:`.probe`), times
  the layers; with gradient checkpointing, each layer's input plus one layer recomputed;
- ``output head and loss``: the chunked cross-entropy's logits of one chunk (the
  vocabulary projection, its fp32 copy and its gradient) and the saved hidden states;
- evaluation: one no-grad batch of ``eval_batch_size`` rows, and generation's bf16 weight
  copies (``model/inference.py``: at most min(4 GiB, a quarter of the free memory));
- ``allocator``: on CPU with glibc's default setting, freed buffers stay in the heap
  and the resident set runs above live tensors (measured factor, :data:`ALLOCATOR_SLACK`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .probe import LayerCensus

GiB = 1 << 30
RUNTIME_BYTES = int(0.242 * GiB)
"""Resident set of a ``peftlab train`` process beside its tensors (CPU, measured on the
2-core machine, torch 2.13, transformers 5: 0.226 GiB before the model loads)."""
LAYER_RESIDENT = int(5.2 * (1 << 20))
"""Resident memory per decoder layer that stays after the first step beyond weights and
optimiser state (heap blocks of small allocations; measured: 0.17 GiB with 30 layers,
0.09 GiB with 14)."""
LOGIT_BYTES_TRAIN = 11
"""Bytes per logit of one loss chunk at its peak (measured 10.1-11.5): the projection in
the compute dtype (2), its fp32 copy (4), the log-softmax pieces (4)."""
LOGIT_BYTES_EVAL = 10
"""Bytes per logit of one evaluation chunk: bf16 logits, their fp32 copy, log-softmax."""
EVAL_LAYER_SHARE = 0.5
"""A no-grad layer keeps this share of what its training forward saves alive at once
(its intermediates are freed op by op)."""
ALLOCATOR_SLACK = {"lean": 0.3, "trim": 0.3, "default": 0.3}
"""Resident memory above live tensors, as a share of a step's activations and loss
transients (autocast weight copies excepted: a few large buffers that do not fragment):
freed activations the heap cannot hand out again at the next step's sizes. Measured on
runs of a few steps (bench/memory_plan.py); 0 on a GPU, whose figure is allocated
memory."""
KEPT_AFTER_EVAL = {"default": 1.0, "trim": 0.5, "lean": 0.5}
"""Share of the first evaluation's buffers still resident while training (CPU)."""
EVAL_HEAP = {"default": 0.8, "trim": 0.8, "lean": 0.15}
"""Resident memory an evaluation batch leaves above its live tensors, as a share of them,
while generation's weight copies are made after it (CPU): its freed buffers wait in the
heap (mimalloc returns free pages after 30 s). Measured on the ~197M model with LoRA:
perplexity left 222 MiB resident for a 123 MiB batch; generation's copies are large
buffers made once: none."""


@dataclass
class Piece:
    """The largest micro-batch piece a run trains on: ``rows`` × ``seq`` tokens."""

    rows: int
    seq: int
    loss_tokens: int


@dataclass
class Estimate:
    peak: int
    phase: str
    parts: dict[str, int]
    phases: dict[str, int]
    piece: Piece
    settings: dict = field(default_factory=dict)
    step_seconds: float | None = None

    def to_dict(self) -> dict:
        return {
            "peak_bytes": self.peak,
            "peak_phase": self.phase,
            "parts": self.parts,
            "phases": self.phases,
            "piece": vars(self.piece),
            "settings": self.settings,
            "step_seconds": self.step_seconds,
        }


def activation_parts(
    census: LayerCensus, layers: int, piece: Piece, checkpointing: bool
) -> dict[str, int]:
    """Bytes saved for backward over the whole decoder, by kind."""
    one = census.per_layer(piece.rows, piece.seq)
    tokens = piece.rows * piece.seq
    if checkpointing:  # every layer's input kept; one layer's activations recomputed
        out = {f"activations: {k}": int(v) for k, v in one.items() if v}
        out["activations: checkpointed layer inputs"] = int(census.layer_input * tokens * layers)
    else:
        out = {f"activations: {k}": int(v * layers) for k, v in one.items() if v}
    return out


def head_bytes(census: LayerCensus, piece: Piece, vocab: int, chunk: int, logit_bytes: int) -> int:
    """The loss: saved hidden states of the target positions and one chunk's logits."""
    positions = piece.loss_tokens if chunk <= 0 else min(chunk, piece.loss_tokens)
    return int(census.head_linear * piece.rows * piece.seq + positions * vocab * logit_bytes)


def eval_batch_bytes(
    census: LayerCensus, rows: int, seq: int, loss_positions: int, vocab: int, chunk: int
) -> int:
    """One no-grad evaluation batch: a layer's intermediates and one chunk's logits (the
    head runs at the target positions only)."""
    one = sum(census.per_layer(rows, seq).values()) * EVAL_LAYER_SHARE
    positions = loss_positions if chunk <= 0 else min(chunk, loss_positions)
    return int(one + positions * vocab * LOGIT_BYTES_EVAL)


def combine(
    *,
    runtime: int,
    frozen: int,
    trainable: int,
    acts: dict[str, int],
    head: int,
    eval_batch: int,
    generation: int,
    allocator: str | None,
    piece: Piece,
    settings: dict,
    narrowed: int = 0,
) -> Estimate:
    """The two phases that can peak (a training step; the evaluation after training,
    when the optimiser state exists and generation keeps its weight copies) and the
    larger one's parts. ``narrowed``: bytes of frozen weights stored in the compute dtype
    while training only (``training/residency.py``)."""
    fixed = {
        "runtime": runtime,
        "frozen weights": frozen,
        "trainable parameters": trainable,
        "gradients + AdamW state": 3 * trainable,
    }
    slack = ALLOCATOR_SLACK.get(allocator, 0.0) if allocator else 0.0
    step_dynamic = sum(v for k, v in acts.items() if "weight copies" not in k) + head
    # The evaluation before training leaves its buffers in the heap (CPU): the steps'
    # activations, of other sizes, do not reuse them (lean: the large ones go back).
    kept = (eval_batch + generation) * KEPT_AFTER_EVAL.get(allocator, 0.0) if allocator else 0
    train = {
        **fixed,
        "frozen weights": frozen - narrowed,
        **acts,
        "output head and loss": head,
        "allocator": int(slack * step_dynamic + kept),
    }
    evaluation = {
        **fixed,
        "evaluation batch": eval_batch,
        "generation weight copies": generation,
        "allocator": int(EVAL_HEAP.get(allocator, 0.0) * eval_batch) if allocator else 0,
    }
    totals = {"train": sum(train.values()), "eval": sum(evaluation.values())}
    phase = max(totals, key=totals.get)
    parts = train if phase == "train" else evaluation
    return Estimate(
        totals[phase], phase, {k: int(v) for k, v in parts.items() if v}, totals, piece, settings
    )


def matmul_rate(dtype: torch.dtype = torch.bfloat16, n: int = 1024) -> float:
    """This machine's matmul rate now (FLOP/s), best of a few ``n``³ products (CPU)."""
    import time

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


MATMUL_EFFICIENCY = 0.17
"""Share of the 1024³ matmul rate a whole training step reaches on this CPU, counting
only the projections' and head's FLOPs: the issue-6 epoch (LoRA on SmolLM2-135M,
alpaca_en_demo) took 4.6 s per step where these FLOPs at the measured bf16 rate take
0.8 s. Small models spend much of a step outside matmuls; a rough figure."""


def step_flops(
    linear_params: int,
    head_params: int,
    tokens: int,
    loss_tokens: int,
    trains_base: bool,
    checkpointing: bool,
) -> float:
    """Matmul FLOPs of one optimiser step: forward and input gradients of every frozen
    projection (2 + 2 per parameter per token), weight gradients when the base trains
    (+2), the forward again under checkpointing (+2); the head at the loss positions,
    recomputed in backward (2 + 2 + 2)."""
    per = 4 + (2 if trains_base else 0) + (2 if checkpointing else 0)
    return per * linear_params * tokens + 6 * head_params * loss_tokens
