"""ONE training loop for every method, on accelerate.

AdamW over the adapter parameters only, linear warm-up then cosine decay, gradient
accumulation with a token-weighted loss (each optimiser step divides by the target tokens
of *all* its micro-batches, or by the epoch's mean per step with ``loss_weighting``
token, so accumulation equals one big batch), micro-batches cut to a token budget,
gradient clipping, non-reentrant gradient checkpointing, mixed precision with fp32
adapter weights, periodic evaluation, atomic checkpoints and exact resume. The loop talks
to the method only through ``extra_loss`` and ``on_step_end``, and to the host's memory
only through :class:`peftlab.host.HostMemory`; it never looks at a method's name.

A run is set up (:mod:`.setup`), trained (:func:`fit`, below) and finished
(:mod:`.finish`). Several processes (``accelerate launch``; :mod:`.distributed`) split
the rows of every global micro-batch (``batch_size`` × processes records), so N
processes × batch b train exactly as one process × batch N·b; only the main process
writes and prints.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import host as host_memory
from ..config import RunConfig, resolve_weighting
from ..core.rundir import claim_run_dir, drop_aside, output_lock, refuse_inputs
from ..data.batching import (
    IGNORE,
    Example,
    collate,
    epoch_batches,
    flatten,
    target_count,
    token_pieces,
)
from ..methods import METHODS
from ..methods.frozen import castable_linears
from ..model.compile import compiled_layers
from ..model.inference import budget_limit
from ..tracking import check_report_to
from .checkpoint import list_checkpoints, save_checkpoint
from .defaults import apply_defaults
from .distributed import Dist
from .distributed import start as start_processes
from .evaluate import evaluate_session
from .finish import finish
from .loss import Targets, response_nll
from .metrics import scalars
from .session import AUTOCAST_DTYPES, command_inputs, log
from .setup import Run, evaluate_before, start_run


def train(cfg: RunConfig, memory=None) -> dict:
    """Fine-tune as ``cfg`` says; returns (and writes to ``results.json``) the summary.

    The main process locks the output for the whole run and claims it: a directory of an
    earlier run needs ``resume`` or ``overwrite``, one of other files ``overwrite``.
    ``memory``: the planner's hooks (``memory.cap.HOOKS``, passed by the API). Before
    anything loads, ``--max-memory`` picks the settings (alike in every process) or stops."""
    check_report_to(cfg.train.report_to)  # a tracker's missing library: before any load
    planned = memory.fit(cfg, log) if memory is not None else None
    # Mixed precision is ours (Session.autocast + GradScaler), not accelerate's: its
    # process-wide state cannot change precision between runs in one process (compare).
    acc, dist, device = start_processes(cfg.train.device)
    apply_defaults(cfg, dist, memory, log if dist.is_main else None)  # the device's own
    out = Path(cfg.train.output)
    if dist.is_main:  # never a directory the run reads (its model, its data)
        refuse_inputs(out, command_inputs(cfg)[0], replaced_dir=cfg.train.overwrite)
    with output_lock(out, "train") if dist.is_main else contextlib.nullcontext():
        claim = (
            claim_run_dir(out, cfg.train.resume, cfg.train.overwrite)
            if dist.is_main
            else (None, None)
        )
        dist.barrier()  # the other processes start once the directory is claimed
        host = _host_memory(cfg, device, memory, planned)
        with budget_limit(cfg.train.generation_cache):
            run = start_run(cfg, acc, dist, host, claim, memory, planned)
            with run.trackers:  # the tracked runs end as finished, or failed on an error
                evaluate_before(run)
                with (
                    run.host.narrowed(
                        *_narrowable(run), out, log if dist.is_main else None
                    ) as saved,
                    compiled_layers(run.session.model, cfg.train.compile, log),
                ):
                    # compiled for the steps only: evaluation, merging and saving run eager
                    run.results["compute_dtype_weights_bytes"] = saved
                    run.results.update(fit(run))
                run.host.end_phase("train")
                finish(run)
            return run.results


def _host_memory(cfg: RunConfig, device, memory, planned) -> host_memory.HostMemory:
    """The run's host-memory manager: the allocator setting asked for (a memory-first
    method's ``auto`` favours memory), and under ``--max-memory`` the room to keep."""
    room = memory.room(cfg, planned) if memory is not None else None
    memory_first = getattr(METHODS.get(cfg.method), "memory_first", False)
    return host_memory.for_run(
        device, cfg.train.allocator, memory_first, *(room or (None, 0)), log=log
    )


def _narrowable(run: Run) -> tuple[dict, torch.dtype | None]:
    """The frozen Linear layers whose weights may be stored in the compute dtype while
    training (``compute_dtype_weights``; not under FSDP, whose shards are its own)."""
    dtype = AUTOCAST_DTYPES.get(run.session.precision)
    if not run.train.compute_dtype_weights or run.dist.sharded or dtype is None:
        return {}, None
    return castable_linears(run.session.model, dtype), dtype


def fit(run: Run) -> dict:
    """The training steps from ``run.start`` to the plan's end; the run's figures."""
    t, s, plan, method = run.train, run.session, run.plan, run.session.adapter.method
    params = [p for p in run.model.parameters() if p.requires_grad]
    per_token = None  # loss_weighting step: each step's own target count
    if resolve_weighting(t) == "token":
        per_token = sum(e.n_loss for e in s.train_data.examples) / plan.steps_per_epoch
    # fp16 needs loss scaling; for bf16 and fp32 the scaler is a pass-through.
    scaler = torch.amp.GradScaler(s.device.type, enabled=s.precision == "fp16")
    bar = tqdm(
        total=plan.total_steps,
        initial=run.start,
        unit="step",
        dynamic_ncols=True,
        disable=not (t.progress and run.dist.is_main),
    )
    t0, tokens_seen, losses, order = time.perf_counter(), 0, [], {}
    low: list[float] = []  # the lowest loss so far, and whether divergence was reported
    run.model.train()
    for step in range(run.start, plan.total_steps):
        epoch, batches, n_targets, real = _batches(run, step, order)
        ts = time.perf_counter()
        loss = _step(
            run.acc, run.model, method, batches, s, scaler, n_targets, run.dist.world, per_token
        )
        scaler.unscale_(run.opt)
        # Clipping (max_grad_norm 0: to infinity, which changes nothing) gives the norm too.
        norm = run.acc.clip_grad_norm_(params, t.max_grad_norm or math.inf)
        # The step's one device->host sync: its loss and gradient norm, alike on every process.
        loss, grad_norm = run.dist.mean(torch.stack([loss, norm.to(loss)]))
        lr = run.sched.get_last_lr()[0]  # the rate this step used
        _check_finite(loss, step, run, lr, low)  # before the update: nothing is changed by a NaN
        scaler.step(run.opt)
        scaler.update()
        run.sched.step()
        # The method's hook runs before the gradients are cleared: AdaLoRA's importance
        # scores need |theta * grad| of the step just taken.
        extra = method.on_step_end(run.acc.unwrap_model(run.model), step + 1, plan) or {}
        run.opt.zero_grad(set_to_none=True)
        run.host.after_step()
        tokens_seen += real
        step_s = time.perf_counter() - ts
        rate = real / max(step_s, 1e-9)
        losses.append(loss)
        # step_seconds and tokens: the comparison's equal-compute view sums them
        run.metrics.write(
            step=step + 1,
            epoch=epoch,
            loss=loss,
            lr=lr,
            grad_norm=grad_norm,
            tokens_per_s=rate,
            step_seconds=step_s,
            tokens=real,
            **extra,
        )
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{rate:.0f}")
        bar.update(1)
        _periodic(run, step + 1, _so_far(run, time.perf_counter() - t0, tokens_seen))
    bar.close()
    done = _so_far(run, time.perf_counter() - t0, tokens_seen)  # with the earlier parts
    return {
        "train_seconds": done["seconds"],
        "train_tokens": done["tokens"],
        "resumes": done["resumes"],
        "tokens_per_s": done["tokens"] / max(done["seconds"], 1e-9),
        "final_loss": losses[-1] if losses else None,
    }


def _batches(run: Run, step: int, order: dict) -> tuple[int, list[dict], int, int]:
    """(epoch, this process's batches of ``step``, the step's target and real tokens);
    ``order`` keeps the current epoch's batches of record indices."""
    epoch, sl = run.plan.micro_batches(step)
    examples = run.session.train_data.examples
    if epoch not in order:  # a pure function of (lengths, seed, epoch): resumes agree
        order.clear()
        order[epoch] = epoch_batches(
            [len(e.input_ids) for e in examples],
            run.plan.global_batch,
            run.train.seed,
            epoch,
            group=run.train.group_by_length,
        )
    step_examples = [[examples[i] for i in b] for b in order[epoch][sl]]
    return (
        epoch,
        *_step_batches(
            run.dist,
            step_examples,
            run.session.tokenizer.pad_token_id,
            run.train.token_budget,
            run.train.padding_free,
        ),
    )


DIVERGING = 4.0
"""A step's loss this many times the run's lowest so far (and above 1 nat per token)
says the run is diverging: the loop warns, naming the step and the learning rate."""


def _check_finite(loss: float, step: int, run: Run, lr: float, low: list[float]) -> None:
    """Stop on a non-finite loss, naming the last checkpoint that really exists; warn
    once when the loss grows past ``DIVERGING`` times its lowest (``low``: [lowest,
    warned])."""
    if not math.isfinite(loss):
        found = list_checkpoints(run.out, run.run_id) if run.dist.is_main else []
        kept = (
            f"the last checkpoint, {found[-1]}, is intact (--resume goes on from it)"
            if found
            else "no checkpoint was written yet"
        )
        raise FloatingPointError(
            f"training loss is {loss} at step {step + 1}; nothing was updated and {kept}. "
            f"Lower the learning rate (now {run.train.lr}) or use mixed_precision=no."
        )
    if low and loss > max(1.0, DIVERGING * low[0]) and not low[1]:
        log(
            f"warning: the training loss grew to {loss:.4g} at step {step + 1} "
            f"({loss / max(low[0], 1e-9):.1f}x its lowest, {low[0]:.4g}) with learning rate "
            f"{lr:.3g}: the run is diverging; lower --lr"
        )
        low[1] = 1.0
    low[:] = [min(low[0], loss) if low else loss, low[1] if low else 0.0]


def _step_batches(
    dist: Dist, step: list[list[Example]], pad_id: int, budget: int = 0, flat: bool = False
) -> tuple[list[dict], int, int]:
    """This process's batches of one optimiser step, and the step's target and real tokens
    over all processes (every process sees the same global micro-batches, so the counts
    need no communication). Each process takes its contiguous rows of each global
    micro-batch and cuts them into pieces of at most ``budget`` tokens (``token_pieces``).
    Every process runs as many batches as the busiest (FSDP: each forward is a collective):
    one short of them runs stand-ins, a row whose labels are all ignored; it still joins
    the gradient all-reduce, and adds nothing. ``flat``: each piece padding-free
    (``flatten``: its records in one row), else padded (``collate``)."""
    batch_of = flatten if flat else collate
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
                mine += [batch_of(p, pad_id) for p in pieces]
    shortest = min((e for examples in step for e in examples), key=lambda e: len(e.input_ids))
    while len(mine) < max(counts):
        stand_in = batch_of([shortest], pad_id)
        stand_in["labels"].fill_(IGNORE)
        mine.append(stand_in)
    return mine, n_targets, real


def _step(
    acc,
    model,
    method,
    batches,
    s,
    scaler,
    n_targets: int | None = None,
    world: int = 1,
    per_token: float | None = None,
) -> torch.Tensor:
    """Forward + backward over this process's batches of one optimiser step; this
    process's share of the step's loss, the mean NLL per target token (plus the method's
    extra loss), as a float64 scalar on the device: the caller reads it once, the step's
    only wait for the device.

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
    total = torch.zeros((), dtype=torch.float64, device=s.device)  # read once, by the caller
    for j, batch in enumerate(batches):
        targets = Targets.of(batch["labels"]).to(s.device)  # found on the host: no sync
        batch = {  # a flattened batch's max_length_* are ints
            k: v.to(s.device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }
        # Skip the gradient all-reduce on all but the last batch (DDP).
        sync = contextlib.nullcontext() if j == len(batches) - 1 else acc.no_sync(model)
        with sync:
            with s.autocast()():
                nll, _ = response_nll(model, batch, s.loss_options, targets)
                loss = nll * world / per_token  # world = 1: exactly nll / per_token
                extra = method.extra_loss(model)
                if extra is not None:
                    extra = extra / len(batches)
                    loss = loss + extra
            acc.backward(scaler.scale(loss))
        # Summed in float64 on the device, as the host would sum the pieces' floats.
        piece = nll.detach().double() * world / n_targets
        total = total + (piece + extra.detach().double() if extra is not None else piece)
    return total


def _so_far(run: Run, seconds: float, tokens: int) -> dict:
    """Training time and tokens of the whole run up to now (all its parts)."""
    e = run.earlier
    return {
        "seconds": e["seconds"] + seconds,
        "tokens": e["tokens"] + tokens,
        "resumes": e["resumes"],
    }


def _periodic(run: Run, step: int, progress: dict) -> None:
    """Evaluation every ``eval_every`` steps, a checkpoint every ``save_every`` and at
    the end."""
    t = run.train
    if t.eval_every and step % t.eval_every == 0 and step < run.plan.total_steps:
        ev = evaluate_session(run.session, run.cfg, False, run.dist)
        run.metrics.write(step=step, **scalars(ev))
        run.model.train()
    if (t.save_every and step % t.save_every == 0) or step == run.plan.total_steps:
        # The unwrapped model: names without DDP's "module." prefix, so a checkpoint
        # written by N processes resumes in M.
        save_checkpoint(
            run.out,
            run.acc.unwrap_model(run.model),
            run.opt,
            run.sched,
            step,
            keep=t.keep_checkpoints,
            dist=run.dist,
            run_id=run.run_id,
            extra={
                "global_batch": run.plan.global_batch,
                "processes": run.dist.world,
                "progress": progress,
            },
        )
        drop_aside(run.aside)  # the run has a checkpoint: the replaced contents may go
        run.aside = None
