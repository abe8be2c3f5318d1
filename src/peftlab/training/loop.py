"""ONE training loop for every method, on accelerate.

AdamW over the adapter parameters only, linear warm-up then cosine decay, gradient
accumulation with a token-weighted loss (each optimiser step divides by the target tokens
of *all* its micro-batches, or by the epoch's mean per step with ``loss_weighting``
token, so accumulation equals one big batch), micro-batches cut to a token budget,
gradient clipping,
non-reentrant gradient checkpointing, mixed precision with fp32 adapter weights,
periodic evaluation, atomic checkpoints and exact resume. The loop talks to the method
only through ``extra_loss`` and ``on_step_end``; it never looks at a method's name.

Several processes (``accelerate launch``; :mod:`peftlab.distributed`) split the rows of
every global micro-batch (``batch_size`` × processes records), so N processes × batch b
train exactly as one process × batch N·b; only the main process writes and prints.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from ..config import RunConfig, resolve_weighting
from ..core import malloc
from ..core.atomic import atomic_write_bytes
from ..core.rundir import claim_run_dir, drop_aside, output_lock
from ..core.runtime import (
    end_phase,
    environment,
    peak_memory_bytes,
    seed_everything,
    set_allocator,
    trim_heap,
)
from ..data.batching import IGNORE, Example, collate, epoch_batches, target_count, token_pieces
from ..methods import METHODS
from ..model.inference import budget_limit
from .checkpoint import (
    clean_stale_temp_files,
    list_checkpoints,
    load_model_state,
    load_training_state,
    save_checkpoint,
)
from .distributed import Dist, check_sharding, is_sharded
from .distributed import start as start_processes
from .evaluate import evaluate_session
from .finish import finish
from .loss import response_nll
from .metrics import MetricsLog, scalars
from .plan import Plan, make_plan, warmup_cosine
from .residency import compute_dtype_weights
from .session import AUTOCAST_DTYPES, Session, log, open_session


def train(cfg: RunConfig, memory=None) -> dict:
    """Fine-tune as ``cfg`` says; returns (and writes to ``results.json``) the summary.

    The main process locks the output for the whole run and claims it: a directory of an
    earlier run needs ``resume`` or ``overwrite``, one of other files ``overwrite``.
    ``memory``: the planner's hooks (``memory.cap.HOOKS``, passed by the API). Before
    anything loads, ``--max-memory`` picks the settings (alike in every process) or stops."""
    planned = memory.fit(cfg, log) if memory is not None else None
    # Mixed precision is ours (Session.autocast + GradScaler), not accelerate's: its
    # process-wide state cannot change precision between runs in one process (compare).
    acc, dist, device = start_processes(cfg.train.device)
    out = Path(cfg.train.output)
    with output_lock(out, "train") if dist.is_main else contextlib.nullcontext():
        claim = claim_run_dir(out, cfg.train.resume, cfg.train.overwrite) if dist.is_main \
            else (None, None)
        dist.barrier()  # the other processes start once the directory is claimed
        with budget_limit(cfg.train.generation_cache):
            return _train(cfg, acc, dist, device, *claim, planned=planned, memory=memory)


def _train(cfg: RunConfig, acc, dist: Dist, device, run_id: str | None,
           aside: Path | None, planned: dict | None = None, memory=None) -> dict:
    t = cfg.train
    memory_first = getattr(METHODS.get(cfg.method), "memory_first", False)
    allocator = set_allocator(t.allocator, memory_first) if device.type == "cpu" \
        else "default"
    out = Path(t.output)
    out.mkdir(parents=True, exist_ok=True)
    if dist.is_main:  # the writer's leftovers; the lock says no writer is live
        clean_stale_temp_files(out)
    seed_everything(t.seed)
    if torch.cuda.is_available():  # peak memory is reported per run
        torch.cuda.reset_peak_memory_stats()
    start_peak = peak_memory_bytes(device)
    s = open_session(cfg, new_adapter=True, device=device)
    s.run_id, s.aside = run_id, aside
    # The high-water mark after each phase: the first to reach the peak set it.
    phases = {"start": start_peak, "load": peak_memory_bytes(device)}
    method = s.adapter.method
    cfg.adapter = asdict(method.config)  # save the resolved options
    plan = make_plan(len(s.train_data.examples), t, dist.world)
    if dist.is_main:
        atomic_write_bytes(out / "config.yaml",
                           yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    procs = f" x {dist.world} processes" if dist.world > 1 else ""
    log(f"{method.name}: {s.params['trainable']:,} trainable of {s.params['total']:,} "
        f"parameters ({s.params['share_pct']:.3f}%); {len(s.train_data.examples)} train / "
        f"{len(s.eval_data.examples)} eval records; {plan.total_steps} steps; "
        f"precision {s.precision} on {s.device}{procs}; loss weighting "
        f"{resolve_weighting(t)}; token budget {t.token_budget or 'off'}; allocator "
        f"{allocator}" + (f" ({malloc.name()})" if device.type == "cpu" else ""))
    if t.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad, so it works with
        # the frozen embedding (the reentrant variant would silently drop adapter grads).
        s.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant":
                                                                             False})
    s.model.config.use_cache = False
    for warning in check_sharding(acc, method, s.precision):
        log(f"warning: {warning}")
    resume_from = _checkpoint_to_resume(t, out, s.run_id)
    if resume_from is not None:  # before the wrapper is made: FSDP shards the parameters
        load_model_state(resume_from, s.model)
    params = [p for p in s.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(plan))
    model, opt = acc.prepare(s.model, opt)
    dist.sharded = is_sharded(model)
    if dist.sharded:
        log(f"FSDP: parameters sharded over {dist.world} processes")
    start = _resume(resume_from, opt, sched, plan, dist, s) if resume_from is not None else 0
    metrics = MetricsLog(out / "metrics.jsonl", start if t.resume else None, dist.is_main)
    results = {"method": method.describe(), "base_model": s.model_id, "data": s.data_info(),
               "params": s.params,
               "plan": asdict(plan), "precision": s.precision, "device": str(s.device),
               "processes": dist.world, "env": environment()}
    if start == 0:
        results["before"] = evaluate_session(s, cfg, True, dist)
        metrics.write(step=0, **scalars(results["before"]))
        _print_eval("before", results["before"])
    else:  # the run being resumed evaluated at step 0; its metrics line is kept
        results["before"] = metrics.first_eval()
    end_phase(phases, "eval before", device)
    results.update(allocator=allocator, malloc=malloc.name() if device.type == "cpu" else None)
    guard = memory.guard(cfg, planned, log) if memory and device.type == "cpu" else None
    narrow = AUTOCAST_DTYPES.get(s.precision) if t.compute_dtype_weights and not \
        dist.sharded else None
    with compute_dtype_weights(s.model, narrow, out, log if dist.is_main else None) as saved:
        results["compute_dtype_weights_bytes"] = saved
        results.update(_loop(s, cfg, plan, acc, model, opt, sched, start, metrics, out,
                             dist, trim_heap if allocator == "trim" else guard))
    end_phase(phases, "train", device)
    s.model.eval()
    results["after"] = evaluate_session(s, cfg, True, dist)
    end_phase(phases, "eval after", device)  # the merge check starts from live tensors
    results["memory_phases"] = phases
    metrics.write(step=plan.total_steps, **scalars(results["after"]))
    _print_eval("after", results["after"])
    predict = (lambda: memory.predict(cfg)) if memory and cfg.train.plan_memory else None
    finish(s, out, results, dist, planned, predict)
    return results


def _checkpoint_to_resume(t, out: Path, run_id: str | None) -> Path | None:
    if not t.resume:
        return None
    found = list_checkpoints(out, run_id)
    if not found:
        raise FileNotFoundError(f"--resume: no checkpoint under {out}/checkpoints")
    return found[-1]


def _resume(path: Path, opt, sched, plan: Plan, dist: Dist, s: Session) -> int:
    """Optimiser, scheduler and RNG from ``path`` (any number of processes wrote it)."""
    state = load_training_state(path, opt, sched, dist.rank)
    saved = state.get("global_batch", plan.global_batch)
    if saved != plan.global_batch:
        log(f"warning: {path} was written with {saved} records per global micro-batch, "
            f"this run has {plan.global_batch} (batch_size x processes): the data order "
            "after the resume differs from the interrupted run's")
    log(f"resumed from {path} (step {state['step']})")
    done = state.get("progress", {})  # the parts of the run before this one
    s.progress.update(seconds=float(done.get("seconds", 0.0)),
                      tokens=int(done.get("tokens", 0)), resumes=int(done.get("resumes", 0)) + 1)
    return int(state["step"])


def _print_eval(label: str, ev: dict) -> None:
    em = ev.get("exact_match")
    em_txt = f", exact match {em:.1%} of {ev['exact_n']}" if em is not None else ""
    log(f"eval {label}: loss {ev['eval_loss']:.4f}, perplexity {ev['perplexity']:.3f}"
        f"{em_txt} ({ev['eval_tokens']} tokens)")


def _loop(s: Session, cfg, plan: Plan, acc, model, opt, sched, start: int, metrics,
          out: Path, dist: Dist, after_step=None) -> dict:
    t, method = cfg.train, s.adapter.method
    lengths = [len(e.input_ids) for e in s.train_data.examples]
    params = [p for p in model.parameters() if p.requires_grad]
    epoch_cache: dict[int, list] = {}
    per_token = None  # loss_weighting step: each step's own target count
    if resolve_weighting(t) == "token":
        per_token = sum(e.n_loss for e in s.train_data.examples) / plan.steps_per_epoch
    bar = tqdm(total=plan.total_steps, initial=start, disable=not (t.progress and
               dist.is_main), unit="step", dynamic_ncols=True)
    t0, tokens_seen, losses = time.perf_counter(), 0, []
    # fp16 needs loss scaling; for bf16 and fp32 the scaler is a pass-through.
    scaler = torch.amp.GradScaler(s.device.type, enabled=s.precision == "fp16")
    model.train()
    for step in range(start, plan.total_steps):
        epoch, sl = plan.micro_batches(step)
        if epoch not in epoch_cache:
            epoch_cache = {epoch: epoch_batches(lengths, plan.global_batch, t.seed, epoch,
                                                       group=t.group_by_length)}
        batches, n_targets, real = _step_batches(
            dist, [[s.train_data.examples[i] for i in b] for b in epoch_cache[epoch][sl]],
            s.tokenizer.pad_token_id, t.token_budget)
        ts = time.perf_counter()
        loss = _step(acc, model, method, batches, s, scaler, n_targets, dist.world,
                     per_token)
        loss = dist.sum([loss])[0] / dist.world  # the same on every process (see _step)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss} at step {step + 1}; nothing was updated and the "
                f"last checkpoint under {out} is intact. Lower the learning rate (now "
                f"{t.lr}) or use mixed_precision=no.")
        scaler.unscale_(opt)
        if t.max_grad_norm > 0:
            acc.clip_grad_norm_(params, t.max_grad_norm)
        lr = sched.get_last_lr()[0]  # the rate this step used
        scaler.step(opt)
        scaler.update()
        sched.step()
        # The method's hook runs before the gradients are cleared: AdaLoRA's importance
        # scores need |theta * grad| of the step just taken.
        extra = method.on_step_end(acc.unwrap_model(model), step + 1, plan) or {}
        opt.zero_grad(set_to_none=True)
        if after_step is not None:  # allocator: trim
            after_step()
        tokens_seen += real
        s.progress.update(part_seconds=time.perf_counter() - t0, part_tokens=tokens_seen)
        step_s = time.perf_counter() - ts
        rate = real / max(step_s, 1e-9)
        losses.append(loss)
        # step_seconds and tokens: the comparison's equal-compute view sums them
        metrics.write(step=step + 1, epoch=epoch, loss=loss, lr=lr, tokens_per_s=rate,
                      step_seconds=step_s, tokens=real, **extra)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{rate:.0f}")
        bar.update(1)
        _periodic(s, cfg, step + 1, plan, acc, model, opt, sched, metrics, out, dist)
    bar.close()
    # The whole run's figures: the parts before a resume are carried in the checkpoints.
    wall = s.progress["seconds"] + time.perf_counter() - t0
    tokens = s.progress["tokens"] + tokens_seen
    return {"train_seconds": wall, "train_tokens": tokens, "resumes": s.progress["resumes"],
            "tokens_per_s": tokens / max(wall, 1e-9), "final_loss": losses[-1]
            if losses else None}


def _step_batches(dist: Dist, step: list[list[Example]], pad_id: int, budget: int = 0
                  ) -> tuple[list[dict], int, int]:
    """This process's batches of one optimiser step, and the step's target and real tokens
    over all processes (every process sees the same global micro-batches, so the counts
    need no communication). Each process takes its contiguous rows of each global
    micro-batch and cuts them into pieces of at most ``budget`` tokens (``token_pieces``).
    Every process runs as many batches as the busiest (FSDP: each forward is a collective):
    one short of them runs stand-ins, a row whose labels are all ignored; it still joins
    the gradient all-reduce, and adds nothing."""
    mine: list[dict] = []
    n_targets = sum(e.n_loss for examples in step for e in examples)
    real = sum(len(e.input_ids) for examples in step for e in examples)
    counts = [0] * dist.world
    for examples in step:
        for rank in range(dist.world):
            rows = [examples[i] for i in dist.rows(len(examples), rank)]
            pieces = token_pieces(rows, budget) if rows else []
            counts[rank] += len(pieces)
            if rank == dist.rank:
                mine += [collate(p, pad_id) for p in pieces]
    shortest = min((e for examples in step for e in examples), key=lambda e: len(e.input_ids))
    while len(mine) < max(counts):
        stand_in = collate([shortest], pad_id)
        stand_in["labels"].fill_(IGNORE)
        mine.append(stand_in)
    return mine, n_targets, real


def _step(acc, model, method, batches, s: Session, scaler, n_targets: int | None = None,
          world: int = 1, per_token: float | None = None) -> float:
    """Forward + backward over this process's batches of one optimiser step; this
    process's share of the step's loss, the mean NLL per target token (plus the method's
    extra loss).

    The gradient is of summed NLL / ``per_token`` (default ``n_targets``: the target
    tokens of every batch of every process, default: of ``batches``), so gradient
    accumulation and processes both equal one big batch. DDP *averages* the gradients of
    the ``world`` processes, so each scales its NLL by world / per_token; the average is
    then exactly sum(NLL) / per_token. The method's extra loss is the same on every
    process, and averaging leaves it as it is. A fixed ``per_token`` (the epoch's mean
    targets per step, ``loss_weighting`` token) gives every target token of the epoch the
    same weight, however many targets its step has.
    """
    if n_targets is None:
        n_targets = sum(target_count(b) for b in batches)
    n_targets = max(1, n_targets)
    per_token = per_token or n_targets
    total = 0.0
    for j, batch in enumerate(batches):
        batch = {k: v.to(s.device) for k, v in batch.items()}
        # Skip the gradient all-reduce on all but the last batch (DDP).
        sync = contextlib.nullcontext() if j == len(batches) - 1 else acc.no_sync(model)
        with sync:
            with s.autocast()():
                nll, _ = response_nll(model, batch, s.loss_options)
                loss = nll * world / per_token  # world = 1: exactly nll / per_token
                extra = method.extra_loss(model)
                if extra is not None:
                    extra = extra / len(batches)
                    loss = loss + extra
            acc.backward(scaler.scale(loss))
        total += float(nll.detach()) * world / n_targets + (
            float(extra.detach()) if extra is not None else 0.0)
    return total


def _progress(s: Session) -> dict:
    """Training time and tokens of the whole run up to now (all its parts)."""
    p = s.progress
    return {"seconds": p["seconds"] + p.get("part_seconds", 0.0),
            "tokens": p["tokens"] + p.get("part_tokens", 0), "resumes": p["resumes"]}


def _periodic(s, cfg, step, plan, acc, model, opt, sched, metrics, out, dist) -> None:
    t = cfg.train
    if t.eval_every and step % t.eval_every == 0 and step < plan.total_steps:
        ev = evaluate_session(s, cfg, False, dist)
        metrics.write(step=step, **scalars(ev))
        model.train()
    if (t.save_every and step % t.save_every == 0) or step == plan.total_steps:
        # The unwrapped model: names without DDP's "module." prefix, so a checkpoint
        # written by N processes resumes in M.
        save_checkpoint(out, acc.unwrap_model(model), opt, sched, step,
                        keep=t.keep_checkpoints, dist=dist, run_id=s.run_id,
                        extra={"global_batch": plan.global_batch, "processes": dist.world,
                               "progress": _progress(s)})
        drop_aside(s.aside)  # the new run has a checkpoint: the replaced contents may go
        s.aside = None
