"""Everything a training run sets up before its first step, held in one :class:`Run`.

:func:`start_run` loads the session (model + adapter + data), writes the resolved
``config.yaml``, makes the optimiser and schedule (restored from a checkpoint when
resuming), and opens ``metrics.jsonl``; :func:`evaluate_before` evaluates the untrained
adapter. The loop (:mod:`.loop`) and the end of the run (:mod:`.finish`) read the Run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..config import RunConfig, resolve_weighting
from ..core.atomic import atomic_write_bytes
from ..core.runtime import environment, seed_everything
from ..host import HostMemory
from ..model.kernels import apply_kernels, liger_installed, resolve_kernels
from ..model.kernels import describe as describe_kernels
from ..model.padding_free import use_padding_free
from ..tracking import TrackContext, Trackers, flat_params, open_trackers, parse_report_to
from .checkpoint import (
    clean_stale_temp_files,
    list_checkpoints,
    load_model_state,
    load_training_state,
)
from .distributed import Dist, check_sharding, is_sharded
from .evaluate import evaluate_session
from .metrics import MetricsLog, scalars
from .plan import Plan, make_plan, warmup_cosine
from .session import Session, log, open_session


@dataclass
class Run:
    """One training run: its settings, what it trains, and where it stands."""

    cfg: RunConfig
    session: Session
    """The unwrapped model, tokenizer, data and method."""
    model: nn.Module
    """The model as accelerate prepared it (DDP/FSDP wrapper, or the model itself)."""
    acc: Any
    dist: Dist
    host: HostMemory
    plan: Plan
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    metrics: MetricsLog
    out: Path
    run_id: str | None = None
    """The run's id (its directory's marker): checkpoints carry it, and pruning and
    resuming touch only this run's."""
    aside: Path | None = None
    """Where an overwritten output's old contents wait until the first checkpoint."""
    start: int = 0
    """The first step to take (after a resume, the checkpoint's)."""
    earlier: dict = field(default_factory=lambda: {"seconds": 0.0, "tokens": 0, "resumes": 0})
    """Training seconds and tokens of the run's parts before this one (resumes)."""
    results: dict = field(default_factory=dict)
    planned: dict | None = None
    """The planner's prediction made before the run (``--max-memory``), if any."""
    predict: Callable[[], dict] | None = None
    """Makes the planner's prediction after the run (``plan_memory``)."""
    trackers: Trackers = field(default_factory=lambda: Trackers([]))
    """The experiment trackers (``report_to``), fed every ``metrics.jsonl`` record."""

    @property
    def train(self):
        return self.cfg.train


def start_run(
    cfg: RunConfig,
    acc,
    dist: Dist,
    host: HostMemory,
    claim: tuple[str | None, Path | None],
    memory=None,
    planned: dict | None = None,
) -> Run:
    """Load, configure and (when resuming) restore everything the loop needs."""
    t, out = cfg.train, Path(cfg.train.output)
    out.mkdir(parents=True, exist_ok=True)
    if dist.is_main:  # the writer's leftovers; the lock says no writer is live
        clean_stale_temp_files(out)
    seed_everything(t.seed)
    if torch.cuda.is_available():  # peak memory is reported per run
        torch.cuda.reset_peak_memory_stats()
    host.start()
    s = open_session(cfg, new_adapter=True, device=dist.device)
    _use_kernels(s, t, log if dist.is_main else None)
    host.end_phase("load")
    attention = use_padding_free(s.model, s.device) if t.padding_free else None
    cfg.adapter = asdict(s.adapter.method.config)  # save the resolved options
    plan = make_plan(len(s.train_data.examples), t, dist.world)
    if dist.is_main:
        atomic_write_bytes(
            out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode()
        )
    _announce(s, cfg, plan, dist, host)
    model, opt, sched, resume_from = _prepare(s, cfg, plan, acc, dist, out, claim[0])
    run = Run(
        cfg,
        s,
        model,
        acc,
        dist,
        host,
        plan,
        opt,
        sched,
        metrics=None,
        out=out,
        run_id=claim[0],
        aside=claim[1],
        planned=planned,
        predict=(lambda: memory.predict(cfg)) if memory and t.plan_memory else None,
    )
    if resume_from is not None:
        run.start = _resume(run, resume_from)
    run.metrics = MetricsLog(out / "metrics.jsonl", run.start if t.resume else None, dist.is_main)
    if dist.is_main and parse_report_to(t.report_to):
        run.trackers = open_trackers(
            parse_report_to(t.report_to),
            TrackContext(
                out,
                t.run_name or out.resolve().name,
                t.experiment,
                flat_params(cfg.to_dict()),
                run.start if t.resume else None,
            ),
        )
        run.metrics.sink = run.trackers.record
    run.results = {
        "method": s.adapter.method.describe(),
        "base_model": s.model_id,
        "data": s.data_info(),
        "params": s.params,
        "plan": asdict(plan),
        "precision": s.precision,
        "device": str(s.device),
        "processes": dist.world,
        "env": {**environment(), **host.environment()},
    }
    if attention is not None:  # the attention that keeps a flattened row's records apart
        run.results["padding_free_attention"] = attention
        log(f"padding-free batches: attention {attention}")
    return run


def _use_kernels(s: Session, t, log=None) -> None:
    """Fused kernels (``--kernels``) resolved for the run's device and model, applied,
    and written back into ``t`` (so ``config.yaml`` records the choice)."""
    mtype = getattr(getattr(s.model, "config", None), "model_type", None)
    choice = resolve_kernels(t.kernels, s.device.type, mtype, liger_installed())
    apply_kernels(s.model, choice)
    s.loss_options = replace(s.loss_options, fused_head=choice.fused_head)
    t.kernels = choice.name
    if log is not None and (s.device.type == "cuda" or choice.name != "none"):
        log(describe_kernels(choice))


def _announce(s: Session, cfg: RunConfig, plan: Plan, dist: Dist, host: HostMemory) -> None:
    t = cfg.train
    procs = f" x {dist.world} processes" if dist.world > 1 else ""
    log(
        f"{s.adapter.method.name}: {s.params['trainable']:,} trainable of "
        f"{s.params['total']:,} parameters ({s.params['share_pct']:.3f}%); "
        f"{len(s.train_data.examples)} train / {len(s.eval_data.examples)} eval records; "
        f"{plan.total_steps} steps; precision {s.precision} on {s.device}{procs}; loss "
        f"weighting {resolve_weighting(t)}; token budget {t.token_budget or 'off'}"
        + (f"; {host.describe()}" if host.describe() else "")
    )


def _prepare(
    s: Session, cfg: RunConfig, plan: Plan, acc, dist: Dist, out: Path, run_id: str | None
):
    """Checkpointing, the optimiser and schedule, and accelerate's wrapper (after the
    resumed weights are in: FSDP shards the parameters)."""
    t = cfg.train
    if t.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad, so it works with
        # the frozen embedding (the reentrant variant would silently drop adapter grads).
        s.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    s.model.config.use_cache = False
    for warning in check_sharding(acc, s.adapter.method, s.precision):
        log(f"warning: {warning}")
    resume_from = _checkpoint_to_resume(t, out, run_id)
    if resume_from is not None:
        load_model_state(resume_from, s.model)
    # The method's groups: one, or LoRA+'s (B at a multiple of the rate).
    groups = s.adapter.method.param_groups(s.model, t.lr, t.weight_decay)
    opt = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(plan))
    model, opt = acc.prepare(s.model, opt)
    dist.sharded = is_sharded(model)
    if dist.sharded:
        log(f"FSDP: parameters sharded over {dist.world} processes")
    return model, opt, sched, resume_from


def _checkpoint_to_resume(t, out: Path, run_id: str | None) -> Path | None:
    if not t.resume:
        return None
    found = list_checkpoints(out, run_id)
    if not found:
        raise FileNotFoundError(f"--resume: no checkpoint under {out}/checkpoints")
    return found[-1]


def _resume(run: Run, path: Path) -> int:
    """Optimiser, scheduler and RNG from ``path`` (any number of processes wrote it)."""
    state = load_training_state(path, run.opt, run.sched, run.dist.rank)
    saved = state.get("global_batch", run.plan.global_batch)
    if saved != run.plan.global_batch:
        log(
            f"warning: {path} was written with {saved} records per global micro-batch, "
            f"this run has {run.plan.global_batch} (batch_size x processes): the data "
            "order after the resume differs from the interrupted run's"
        )
    log(f"resumed from {path} (step {state['step']})")
    done = state.get("progress", {})  # the parts of the run before this one
    run.earlier.update(
        seconds=float(done.get("seconds", 0.0)),
        tokens=int(done.get("tokens", 0)),
        resumes=int(done.get("resumes", 0)) + 1,
    )
    return int(state["step"])


def evaluate_before(run: Run) -> None:
    """The untrained adapter's evaluation (a resumed run keeps the one it logged)."""
    if run.start == 0:
        run.results["before"] = evaluate_session(run.session, run.cfg, True, run.dist)
        run.metrics.write(step=0, **scalars(run.results["before"]))
        print_eval("before", run.results["before"])
    else:
        run.results["before"] = run.metrics.first_eval()
    run.host.end_phase("eval before")


def print_eval(label: str, ev: dict) -> None:
    em = ev.get("exact_match")
    em_txt = f", exact match {em:.1%} of {ev['exact_n']}" if em is not None else ""
    log(
        f"eval {label}: loss {ev['eval_loss']:.4f}, perplexity {ev['perplexity']:.3f}"
        f"{em_txt} ({ev['eval_tokens']} tokens)"
    )
