"""Training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint directory holds the adapter (PEFT format), the optimiser state, the
scheduler state, every RNG state and the step. It is written into a hidden temporary
directory and renamed into place, so an interruption or a full disk never leaves a
half-written checkpoint where ``--resume`` would find it.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .inject import adapter_state
from .peft_format import atomic_write_json, replace_dir, save_adapter

CHECKPOINTS = "checkpoints"
STATE_JSON = "trainer_state.json"


def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{k}"] = v.detach().contiguous().cpu()
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


def _rng_state() -> tuple[dict, dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def _set_rng_state(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(output: Path, model: nn.Module, opt, scheduler, step: int,
                    keep: int = 2) -> Path:
    """Write ``output/checkpoints/step-NNNNNN`` atomically; prune all but ``keep``."""
    root = Path(output) / CHECKPOINTS
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_adapter(model, tmp)  # PEFT format, so any checkpoint can be used as is
        # ... and the full parameters and method state, which resume needs (AdaLoRA's
        # PEFT export is cut to its kept ranks, its importance EMAs are not in it).
        method = model.peftlab_adapter.method
        save_file({k: v.detach().contiguous() for k, v in adapter_state(model).items()},
                  str(tmp / "adapter_params.safetensors"))
        save_file({k: v.detach().contiguous().cpu() for k, v in method.state_tensors().items()},
                  str(tmp / "method_state.safetensors"))
        opt_t, opt_meta = _optimizer_to_flat(opt)
        save_file(opt_t, str(tmp / "optimizer.safetensors"))
        rng_t, rng_meta = _rng_state()
        save_file(rng_t, str(tmp / "rng.safetensors"))
        state = {"step": step, "optimizer": opt_meta, "rng": rng_meta,
                 "scheduler": _jsonable(scheduler.state_dict())}
        atomic_write_json(tmp / STATE_JSON, state)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(output)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _jsonable(d: dict) -> dict:
    return {k: v for k, v in d.items() if _is_json(v)}


def _is_json(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def list_checkpoints(output: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are ignored)."""
    root = Path(output) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / STATE_JSON).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def load_checkpoint(path: Path, model: nn.Module, opt, scheduler) -> dict:
    """Restore adapter weights, optimiser, scheduler and RNG; return the saved state."""
    path = Path(path)
    state = json.loads((path / STATE_JSON).read_text())
    params = load_file(str(path / "adapter_params.safetensors"))
    with torch.no_grad():
        for key, p in adapter_state(model).items():
            if key not in params or params[key].shape != p.shape:
                raise ValueError(f"{path}: checkpoint does not fit this run's adapter at {key}"
                                 " (was it written for another model or method?)")
            p.copy_(params[key])
    model.peftlab_adapter.method.load_state_tensors(
        load_file(str(path / "method_state.safetensors")))
    _optimizer_from_flat(opt, load_file(str(path / "optimizer.safetensors")),
                         state["optimizer"])
    scheduler.load_state_dict({**scheduler.state_dict(), **state["scheduler"]})
    _set_rng_state(load_file(str(path / "rng.safetensors")), state["rng"])
    return state
