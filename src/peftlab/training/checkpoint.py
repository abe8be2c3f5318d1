"""Training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint directory holds the adapter (PEFT format), every trained parameter
(``adapter_params.safetensors``: the adapter's, or all of a full fine-tune's), the
optimiser state, the scheduler state, every RNG state and the step. It is written into
a hidden temporary directory and renamed into place, so an interruption or a full disk
never leaves a half-written checkpoint where ``--resume`` would find it.

With several processes every one of them calls :func:`save_checkpoint` (the RNG states
of all ranks are gathered, and under FSDP the sharded tensors) and the main process
writes. Names carry no wrapper prefix (the unwrapped model is saved), so a checkpoint
written by N processes resumes in M. Rank r resumes from rank r's RNG state where the
checkpoint has one, else from rank 0's.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..core.atomic import atomic_write_json, fault_point, staged_dir
from ..core.readers import read_json, read_safetensors
from ..formats.peft import save_adapter
from ..model.inject import trainable_state
from .distributed import Dist, full_params, full_tensor, shard_like

CHECKPOINTS = "checkpoints"
STATE_JSON = "trainer_state.json"


def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):  # (FSDP: a shard, gathered whole on every process)
                tensors[f"state.{pid}.{k}"] = full_tensor(v.detach()).contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        _, pid, k = key.split(".", 2)
        state.setdefault(int(pid), {})[k] = t
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})
    inner = getattr(opt, "optimizer", opt)  # accelerate's wrapper holds the optimizer
    for group in inner.param_groups:  # FSDP: the saved whole values cut to each shard
        for p in group["params"]:
            st = inner.state.get(p, {})
            for k, v in st.items():
                st[k] = shard_like(v, p) if torch.is_tensor(v) else v


def _rng_state() -> tuple[dict, dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def _rank_rng(states: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """Every rank's RNG state in one file: rank 0's under the plain names, rank r's
    tensors prefixed ``rank<r>.`` and its Python state under ``python_by_rank``."""
    tensors, meta = dict(states[0][0]), dict(states[0][1])
    meta["python_by_rank"] = {}
    for r, (t, m) in enumerate(states[1:], start=1):
        tensors.update({f"rank{r}.{k}": v for k, v in t.items()})
        meta["python_by_rank"][str(r)] = m["python"]
    return tensors, meta


def _set_rng_state(tensors: dict, meta: dict, rank: int = 0) -> None:
    prefix = f"rank{rank}."
    if rank and any(k.startswith(prefix) for k in tensors):
        tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        meta = {"python": meta["python_by_rank"][str(rank)]}
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    output: Path,
    model: nn.Module,
    opt,
    scheduler,
    step: int,
    keep: int = 2,
    dist: Dist | None = None,
    extra: dict | None = None,
    run_id: str | None = None,
) -> Path:
    """Write ``output/checkpoints/step-NNNNNN`` atomically; prune all but ``keep``.

    ``model``: the unwrapped model. With several processes (``dist``) all of them call
    this; they must agree bit for bit on the adapter and the method state (checked), and
    the main process writes. ``extra``: more keys for trainer_state.json.
    """
    dist = dist or Dist()
    rng_t, rng_meta = _rank_rng(dist.gather(_rng_state()))
    final = Path(output) / CHECKPOINTS / f"step-{step:06d}"
    with full_params(model):  # FSDP: the sharded tensors gathered whole meanwhile
        method = model.peftlab_adapter.method
        params = {k: v.detach().contiguous() for k, v in trainable_state(model).items()}
        mstate = {k: v.detach().contiguous().cpu() for k, v in method.state_tensors().items()}
        dist.check_same(
            "the adapter weights and the method state",
            [float(t.double().sum()) for t in [*params.values(), *mstate.values()]],
        )
        opt_t, opt_meta = _optimizer_to_flat(opt)
        if dist.is_main:
            state = {
                "step": step,
                "optimizer": opt_meta,
                "rng": rng_meta,
                "run_id": run_id,
                "scheduler": _jsonable(scheduler.state_dict()),
                **(extra or {}),
            }
            _write(
                final,
                model,
                {
                    "adapter_params": params,
                    "method_state": mstate,
                    "optimizer": opt_t,
                    "rng": rng_t,
                },
                state,
            )
    if dist.is_main:  # pruning touches this run's checkpoints only
        for old in list_checkpoints(output, run_id)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _write(final: Path, model: nn.Module, files: dict[str, dict], state: dict) -> None:
    with staged_dir(final, name=f".tmp-{final.name}") as tmp:
        # The adapter in PEFT format, so any checkpoint can be used as is (a full
        # fine-tune has none: its weights, all trained, are in adapter_params below;
        # a save_pretrained copy beside them would double every checkpoint) ...
        if not model.peftlab_adapter.method.saves_full_model:
            save_adapter(model, tmp)
        # ... and the full parameters and method state, which resume needs (AdaLoRA's
        # PEFT export is cut to its kept ranks, its importance EMAs are not in it).
        for name, tensors in files.items():
            save_file(tensors, str(tmp / f"{name}.safetensors"))
            fault_point(f"checkpoint:{final.name}")  # a kill -9 half-way through the write
        atomic_write_json(tmp / STATE_JSON, state)


def _jsonable(d: dict) -> dict:
    return {k: v for k, v in d.items() if _is_json(v)}


def _is_json(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def list_checkpoints(output: Path, run_id: str | None = None) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are ignored); with
    ``run_id``, only that run's (a checkpoint written before run ids belongs to the
    ``legacy`` run of a directory without a marker)."""
    root = Path(output) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_JSON).is_file()]
    if run_id is not None:
        found = [p for p in found if _run_of(p) == run_id]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _run_of(checkpoint: Path) -> str | None:
    try:
        state = json.loads((checkpoint / STATE_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable: never this run's, so never pruned or resumed
    return state.get("run_id", "legacy") if isinstance(state, dict) else None


def clean_stale_temp_files(output: Path) -> list[Path]:
    """Remove what a killed process left half-written under ``output``: temp
    checkpoint directories and ``.*.tmp`` files (the lock is held, so none is live)."""
    output = Path(output)
    stale = list((output / CHECKPOINTS).glob(".tmp-*")) + list(output.glob(".*.tmp"))
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: Path, model: nn.Module, opt, scheduler, rank: int = 0) -> dict:
    """Restore adapter weights, optimiser, scheduler and RNG; return the saved state."""
    load_model_state(path, model)
    return load_training_state(path, opt, scheduler, rank)


def load_model_state(path: Path, model: nn.Module) -> None:
    """Restore the adapter weights and the method state into the unwrapped model (before
    a DDP/FSDP wrapper is made: FSDP shards the parameters)."""
    path = Path(path)
    params = read_safetensors(path / "adapter_params.safetensors", "checkpoint weights")
    with torch.no_grad():
        for key, p in trainable_state(model).items():
            if key not in params or params[key].shape != p.shape:
                raise ValueError(
                    f"{path}: checkpoint does not fit this run's adapter at {key}"
                    " (was it written for another model or method?)"
                )
            p.copy_(params[key])
    model.peftlab_adapter.method.load_state_tensors(
        read_safetensors(path / "method_state.safetensors", "checkpoint method state")
    )


def load_training_state(path: Path, opt, scheduler, rank: int = 0) -> dict:
    """Restore optimiser, scheduler and this rank's RNG; return trainer_state.json."""
    path = Path(path)
    state = read_json(
        path / STATE_JSON, "checkpoint state", required=("step", "optimizer", "rng", "scheduler")
    )
    _optimizer_from_flat(
        opt,
        read_safetensors(path / "optimizer.safetensors", "checkpoint optimizer state"),
        state["optimizer"],
    )
    scheduler.load_state_dict({**scheduler.state_dict(), **state["scheduler"]})
    _set_rng_state(
        read_safetensors(path / "rng.safetensors", "checkpoint RNG state"), state["rng"], rank
    )
    return state
