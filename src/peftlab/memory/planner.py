"""``peftlab plan``: will a run fit, and what does fit.

:func:`estimate_run` predicts a run's peak memory from its configuration (the same flags
and YAML as ``train``), reading only the model's ``config.json`` (and, when a dataset is
given, its records, for their length distribution). :func:`fit_settings` searches the
memory levers (token budget, gradient checkpointing, CPU allocator setting, generation
copies) for the fastest setting under a cap; ``train --max-memory`` applies it.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from ..config import RunConfig
from ..core.runtime import parse_dtype
from ..core.sizes import describe_bytes, parse_size
from ..host import resolve_allocator
from ..methods import METHODS, get_method
from ..training.defaults import gpu_options, resolve_defaults, sized_chunk, smaller_budgets
from .estimate import (
    LAYER_RESIDENT,
    LOGIT_BYTES_TRAIN,
    MATMUL_EFFICIENCY,
    RUNTIME_BYTES,
    Estimate,
    GiB,
    Piece,
    activation_parts,
    combine,
    eval_batch_bytes,
    head_bytes,
    matmul_rate,
    step_flops,
)
from .probe import cached_census, layer_census
from .shapes import model_config, shape_of

DEFAULT_GENERATION_CAP = 4 * GiB  # model/inference.py: DEFAULT_BUDGET


def target_device(name: str) -> str:
    """``cpu`` or ``cuda`` (``auto``: what this machine has; a GPU may be planned for
    from a machine without one)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name).type


def _precision(mode: str, device: str) -> str:
    from ..core.runtime import cpu_has_fast_bf16

    if mode != "auto":
        return mode
    if device == "cuda":
        return "bf16"  # every GPU of the last five years (Ampere and later)
    return "bf16" if cpu_has_fast_bf16() else "no"


def _autocast(precision: str):
    import contextlib

    dtype = {"bf16": torch.bfloat16, "fp16": torch.bfloat16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast("cpu", dtype=dtype)  # the probe runs on this CPU


@dataclasses.dataclass
class DataShape:
    """Lengths of the training records and the largest piece each step trains on."""

    lengths: list[int]
    loss: list[int]
    eval_lengths: list[int]
    eval_loss: list[int]
    source: str


def data_shape(cfg: RunConfig) -> DataShape | None:
    """Tokenise the run's data with the model's tokenizer (no model loaded); None when
    the tokenizer is not available here (a Hub model not in the cache)."""
    from ..model.load import ModelNotFoundError, load_tokenizer, resolve_model_path
    from ..training.session import Session, _load_data

    try:
        path = resolve_model_path(cfg.model.name)
    except ModelNotFoundError:
        return None
    tok = load_tokenizer(path, trust_remote_code=cfg.model.trust_remote_code)
    s = Session(None, tok, cfg.model.name or "embedded", torch.device("cpu"), "no")
    _load_data(s, copy.deepcopy(cfg), True)
    return DataShape(
        [len(e.input_ids) for e in s.train_data.examples],
        [e.n_loss for e in s.train_data.examples],
        [len(e.input_ids) for e in s.eval_data.examples],
        [e.n_loss for e in s.eval_data.examples],
        s.splits.source,
    )


def largest_piece(cfg: RunConfig, data: DataShape | None, processes: int = 1, weigh=None) -> Piece:
    """The micro-batch piece of the run's steps with the most memory by ``weigh(piece)``
    (default: its tokens): the batches ``train`` takes, cut by the token budget."""
    from ..data.batching import Example, epoch_batches, token_pieces
    from ..training.plan import make_plan

    t = cfg.train
    weigh = weigh or (lambda p: p.rows * p.seq)
    if data is None:  # every record at max_length: the worst case
        seq = cfg.data.max_length
        rows = (
            t.batch_size if not t.token_budget else max(1, min(t.batch_size, t.token_budget // seq))
        )
        return Piece(rows, seq, rows * (seq - 1))
    plan = make_plan(len(data.lengths), t, processes)
    examples = [
        Example(list(range(n)), max(1, n - loss)) for n, loss in zip(data.lengths, data.loss)
    ]
    best, best_key, seen = Piece(1, 1, 1), -1.0, set()
    epochs: dict[int, list] = {}
    for step in range(plan.total_steps):
        epoch, sl = plan.micro_batches(step)
        if epoch not in epochs:
            epochs = {
                epoch: epoch_batches(
                    data.lengths, plan.global_batch, t.seed, epoch, group=t.group_by_length
                )
            }
        for batch in epochs[epoch][sl]:
            for piece in token_pieces([examples[i] for i in batch[: t.batch_size]], t.token_budget):
                p = Piece(
                    len(piece), max(len(e.input_ids) for e in piece), sum(e.n_loss for e in piece)
                )
                if (p.rows, p.seq, p.loss_tokens) in seen:
                    continue
                seen.add((p.rows, p.seq, p.loss_tokens))
                key = weigh(p)
                if key > best_key:
                    best, best_key = p, key
    return best


def _census_for(config, cfg: RunConfig, precision: str):
    method_opts = tuple(sorted((k, repr(v)) for k, v in cfg.adapter.items()))
    narrow = _narrows(cfg, precision)
    key = (config.to_json_string(), cfg.method, method_opts, cfg.model.dtype, precision, narrow)
    return cached_census(
        key,
        lambda: layer_census(
            config,
            get_method(cfg.method, **cfg.adapter),
            parse_dtype(cfg.model.dtype),
            _autocast(precision),
            narrow=torch.bfloat16 if narrow else None,
        ),
    )


def _narrows(cfg: RunConfig, precision: str) -> bool:
    """Whether the run stores its frozen projections in the compute dtype while training
    (``training/residency.py``; not under FSDP, which the planner does not model)."""
    return cfg.train.compute_dtype_weights and precision in ("bf16", "fp16")


def generation_bytes(shape, precision: str, budget: int) -> int:
    """Generation's compute-dtype copies of the Linear weights (``model/inference.py``):
    every Linear not already in the autocast dtype, and 4-bit ones, up to ``budget``."""
    if precision not in ("bf16", "fp16"):
        return 0
    want = "bfloat16" if precision == "bf16" else "float16"
    numel = sum(n for dt, n in shape.linear_numel.items() if dt != want)
    return min(budget, 2 * numel)


_CONFIGS: dict[tuple, object] = {}
_SHAPES: dict[tuple, object] = {}


def _model(cfg: RunConfig):
    """(config, shape) of the run's model with its method, memoised: a search over
    settings builds each skeleton once."""
    ckey = (cfg.model.name, cfg.model.trust_remote_code)
    if ckey not in _CONFIGS:
        _CONFIGS[ckey] = model_config(cfg.model.name, cfg.model.trust_remote_code)
    config = _CONFIGS[ckey]
    skey = (
        ckey,
        cfg.method,
        tuple(sorted((k, repr(v)) for k, v in cfg.adapter.items())),
        cfg.model.dtype,
    )
    if skey not in _SHAPES:
        _SHAPES[skey] = shape_of(
            config, get_method(cfg.method, **cfg.adapter), parse_dtype(cfg.model.dtype)
        )
    return config, _SHAPES[skey]


def estimate_run(
    cfg: RunConfig,
    data: DataShape | None = None,
    device: str | None = None,
    processes: int = 1,
    generation_budget: int | None = None,
    with_time: bool = True,
) -> Estimate:
    """The predicted peak memory of ``train(cfg)`` (per process), by part."""
    device = device or target_device(cfg.train.device)
    cfg = with_defaults(cfg, device)
    precision = _precision(cfg.train.mixed_precision, device)
    config, shape = _model(cfg)
    census = _census_for(config, cfg, precision)
    t = cfg.train

    def step_bytes(p: Piece) -> float:
        acts = activation_parts(census, shape.layers, p, t.gradient_checkpointing)
        return sum(acts.values()) + head_bytes(
            census, p, shape.vocab, t.loss_chunk, LOGIT_BYTES_TRAIN
        )

    piece = largest_piece(cfg, data, processes, step_bytes)
    acts = activation_parts(census, shape.layers, piece, t.gradient_checkpointing)
    head = head_bytes(census, piece, shape.vocab, t.loss_chunk, LOGIT_BYTES_TRAIN)
    ev = _eval_bytes(census, cfg, data, shape.vocab)
    if generation_budget is None:
        generation_budget = _default_generation_budget(device)
    gen = generation_bytes(shape, precision, generation_budget) if t.exact_match_limit else 0
    memory_first = getattr(METHODS[cfg.method], "memory_first", False)
    allocator = resolve_allocator(t.allocator, memory_first) if device == "cpu" else None
    settings = {
        "device": device,
        "precision": precision,
        "token_budget": t.token_budget,
        "loss_chunk": t.loss_chunk,
        "gradient_checkpointing": t.gradient_checkpointing,
        "allocator": allocator,
        "batch_size": t.batch_size,
        "max_length": cfg.data.max_length,
        "generation_cache": generation_budget,
        "processes": processes,
        "trainable": shape.trainable,
        "total_params": shape.total_params,
        "data": data.source if data else "every record at max_length",
    }
    runtime = RUNTIME_BYTES + LAYER_RESIDENT * shape.layers if device == "cpu" else 0
    est = combine(
        runtime=runtime,
        frozen=shape.frozen_bytes,
        trainable=shape.trainable_bytes,
        acts=acts,
        head=head,
        eval_batch=ev,
        generation=gen,
        allocator=allocator,
        piece=piece,
        settings=settings,
        narrowed=shape.narrowable_bytes if _narrows(cfg, precision) else 0,
    )
    if with_time and device == "cpu":
        est.step_seconds = _step_seconds(cfg, shape, data, precision)
    return est


def _eval_bytes(census, cfg: RunConfig, data: DataShape | None, vocab: int) -> int:
    """The largest evaluation batch's bytes: evaluation batches run longest first, so the
    first is the largest (every record at max_length without the data)."""
    t = cfg.train
    if data:
        first = sorted(range(len(data.eval_lengths)), key=lambda i: -data.eval_lengths[i])[
            : t.eval_batch_size
        ]
        eval_rows, eval_seq = len(first), data.eval_lengths[first[0]]
        eval_loss = sum(data.eval_loss[i] for i in first)
    else:
        eval_rows, eval_seq = t.eval_batch_size, cfg.data.max_length
        eval_loss = eval_rows * eval_seq // 2
    return eval_batch_bytes(census, eval_rows, eval_seq, eval_loss, vocab, t.loss_chunk)


def _default_generation_budget(device: str) -> int:
    """The run's own default on CPU; on a GPU (planned from anywhere) the cap, as this
    machine cannot ask that GPU what is free."""
    from ..model.inference import cache_budget, env_budget

    if (budget := env_budget()) is not None:
        return budget
    return cache_budget(torch.device("cpu")) if device == "cpu" else DEFAULT_GENERATION_CAP


_RATES: dict[str, float] = {}


def _step_seconds(cfg: RunConfig, shape, data, precision: str) -> float:
    t = cfg.train
    mean_len = (sum(data.lengths) / len(data.lengths)) if data else cfg.data.max_length
    mean_loss = (sum(data.loss) / len(data.loss)) if data else mean_len * 0.5
    records = t.batch_size * t.grad_accum
    trains_base = shape.trainable > shape.linear_params // 2
    flops = step_flops(
        shape.linear_params,
        shape.vocab * shape.hidden,
        int(records * mean_len),
        int(records * mean_loss),
        trains_base,
        t.gradient_checkpointing,
    )
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if str(dtype) not in _RATES:
        _RATES[str(dtype)] = matmul_rate(dtype)
    return flops / (_RATES[str(dtype)] * MATMUL_EFFICIENCY)


def with_defaults(cfg: RunConfig, device: str) -> RunConfig:
    """``cfg`` with an unset token budget or loss chunk at the device's default for a
    free memory not known here (``training/defaults.py``); ``cfg`` itself when both are set."""
    t = cfg.train
    if t.token_budget is not None and t.loss_chunk is not None:
        return cfg
    d = resolve_defaults(device, None, None, t.token_budget, t.loss_chunk)
    cfg = copy.deepcopy(cfg)
    cfg.train.token_budget, cfg.train.loss_chunk = d.token_budget, d.loss_chunk
    return cfg


def candidate_settings(cfg: RunConfig, device: str, cap: int | None = None) -> list[dict]:
    """Settings to try under a memory cap, fastest first: the run as asked, then smaller
    token budgets, then gradient checkpointing, then (CPU) the allocator settings that
    keep the resident set at live tensors. On a GPU, an unset token budget or loss chunk
    follows the training run's rule (``training/defaults.py``): no cutting first, the
    whole loss before chunks sized for ``cap``."""
    t = cfg.train
    full = cfg.data.max_length * t.batch_size
    if device == "cuda" and cap is not None and (t.token_budget is None or t.loss_chunk is None):
        logit_bytes = _model(cfg)[1].vocab * LOGIT_BYTES_TRAIN
        pairs = gpu_options(full, sized_chunk(cap, logit_bytes), t.token_budget, t.loss_chunk)
    else:
        t = with_defaults(cfg, device).train
        budgets = [t.token_budget] if t.token_budget else [0]
        budgets += smaller_budgets(t.token_budget or full)
        pairs = [(b, t.loss_chunk) for b in budgets]
    allocators = (
        [t.allocator] if device != "cpu" else list(dict.fromkeys([t.allocator, "trim", "lean"]))
    )
    out = []
    for alloc in allocators:
        for ckpt in sorted({t.gradient_checkpointing, True}):
            for budget, chunk in pairs:
                out.append(
                    {
                        "token_budget": budget,
                        "loss_chunk": chunk,
                        "gradient_checkpointing": ckpt,
                        "allocator": alloc,
                    }
                )
    return out


FIT_MARGIN = 0.8
"""A setting fits when its prediction stays under this share of the cap: the planner is
within ±11% of the measured peak on this CPU at the default token budget (BENCHMARKS.md);
at small budgets a 3-step run measured up to 18% above it."""


def fit_settings(
    cfg: RunConfig, cap: int, data: DataShape | None = None, device: str | None = None
) -> tuple[dict | None, Estimate]:
    """The first setting of :func:`candidate_settings`, with generation's weight copies
    limited (all of them, half, a quarter, none), whose predicted peak stays under
    :data:`FIT_MARGIN` of ``cap``; (None, the smallest estimate) when none does."""
    device = device or target_device(cfg.train.device)
    precision = _precision(cfg.train.mixed_precision, device)
    full = generation_bytes(_model(cfg)[1], precision, _default_generation_budget(device))
    smallest = None
    for opts in candidate_settings(cfg, device, cap * FIT_MARGIN):
        trial = copy.deepcopy(cfg)
        for k, v in opts.items():
            setattr(trial.train, k, v)
        for gen in dict.fromkeys((full, full // 2, full // 4, 0)):
            est = estimate_run(trial, data, device, generation_budget=gen, with_time=False)
            if smallest is None or est.peak < smallest.peak:
                smallest = est
            if est.peak <= cap * FIT_MARGIN:
                return {**opts, "generation_cache": gen}, est
    return None, smallest


__all__ = [
    "estimate_run",
    "fit_settings",
    "data_shape",
    "parse_size",
    "describe_bytes",
    "largest_piece",
]
