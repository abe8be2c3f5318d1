"""Hugging Face PEFT adapter format: ``adapter_config.json`` + ``adapter_model.safetensors``.

Tensor names are ``base_model.model.<module path>.<method key>``, exactly what
``peft.PeftModel.save_pretrained`` writes for the default adapter, so PEFT (and vLLM,
TGI, transformers) load peftlab adapters unchanged, and the reverse.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.atomic import atomic_save_tensors, atomic_write_json
from ..core.readers import read_json, read_safetensors
from ..methods import method_for_peft_config
from ..model.inject import AdapterInfo, adapter_layers, inject
from ..model.load import loadable_reference

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."
SHARED_PREFIX = "base_model."
"""Where peft saves tensors kept once per model (VeRA's ``base_model.vera_A``)."""


class AdapterMismatchError(ValueError):
    """An adapter does not fit the base model it is loaded onto."""


def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors under PEFT's names (detached contiguous copies)."""
    info = _info(model)
    out = {}
    for name, layer in adapter_layers(model):
        for local, p in layer.export_params().items():
            key = f"{PREFIX}{name}.{info.method.peft_key(local)}"
            out[key] = p.detach().contiguous().clone()
    for local, t in info.method.shared_tensors().items():  # VeRA's projections
        out[f"{SHARED_PREFIX}{local}"] = t.detach().contiguous().clone()
    return out


def peft_config_dict(model: nn.Module) -> dict[str, Any]:
    info = _info(model)
    cfg = {
        "task_type": "CAUSAL_LM",
        # A reference that loads (the embedded model's directory, not its bare name).
        "base_model_name_or_path": loadable_reference(info.base_model) if info.base_model else None,
        "inference_mode": True,
        "revision": None,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
    }
    for key in info.method.omit_peft_keys:
        cfg.pop(key, None)  # peft's config class for this method refuses the key
    cfg.update(info.method.to_peft_config(info.target_modules, dict(adapter_layers(model))))
    return cfg


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write the adapter of ``model`` in PEFT format into ``directory``."""
    directory = Path(directory)
    tensors = adapter_tensors(model)
    atomic_save_tensors(directory / WEIGHTS_NAME, tensors, metadata={"format": "pt"})
    atomic_write_json(directory / CONFIG_NAME, peft_config_dict(model))
    return directory


def read_adapter_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path}: no adapter_config.json (is this an adapter directory?)")
    return read_json(path, "adapter config", required=("peft_type",))


def load_adapter_into(
    model: nn.Module,
    directory: str | os.PathLike,
    method: str | None = None,
    method_options: dict[str, Any] | None = None,
) -> AdapterInfo:
    """Inject the adapter saved in ``directory`` into ``model`` and load its weights.

    The method is recognised from ``adapter_config.json`` unless ``method`` names it.
    Name it for QLoRA: its files are LoRA files, so without ``method="qlora"`` a QLoRA
    adapter loads as LoRA on the full-precision base (not the NF4 base it was trained
    on). ``method_options``: the named method's options that the file does not hold
    (QLoRA's ``double_quant``; ``Method.local_options``).

    Every tensor must land on an adapter parameter of the same shape and every adapter
    parameter must be given a value; otherwise :class:`AdapterMismatchError` names the
    module, so an adapter for another base model never half-loads silently.
    """
    directory = Path(directory)
    cfg = read_adapter_config(directory)
    try:
        method = method_for_peft_config(
            cfg, where=str(directory / CONFIG_NAME), method=method, options=method_options
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{directory / CONFIG_NAME}: cannot be read as a "
            f"{cfg.get('peft_type')} adapter config ({type(e).__name__}: {e}); "
            "is a key such as 'r' or 'target_modules' missing or of the wrong "
            "type?"
        ) from None
    try:
        info = inject(model, method, base_model=cfg.get("base_model_name_or_path") or "")
    except ValueError as e:
        raise AdapterMismatchError(f"{directory}: adapter does not fit this model: {e}") from None
    load_adapter_weights(model, directory)
    return info


def load_adapter_weights(model: nn.Module, directory: str | os.PathLike) -> None:
    """Copy the tensors of ``directory``'s adapter into the adapter already in ``model``."""
    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: missing (only safetensors adapters are loaded)")
    _copy_into(model, _info(model), read_safetensors(weights, "adapter weights"), directory)


def _copy_into(model, info: AdapterInfo, tensors: dict, directory: Path) -> None:
    params = {}
    for name, layer in adapter_layers(model):
        for local, p in layer.adapter_params().items():
            params[f"{PREFIX}{name}.{info.method.peft_key(local)}"] = (name, p)
    for local, t in info.method.shared_tensors().items():  # after the layers': checked last
        params[f"{SHARED_PREFIX}{local}"] = (f"(shared) {local}", t)
    unexpected = sorted(set(tensors) - set(params))
    if unexpected:
        raise AdapterMismatchError(
            f"{directory}: tensor {unexpected[0]} has no matching adapter module in this "
            f"model ({len(unexpected)} such tensors); is the adapter for another base model?"
        )
    missing = sorted(set(params) - set(tensors))
    if missing:
        raise AdapterMismatchError(
            f"{directory}: no value for {missing[0]} ({len(missing)} missing); module "
            f"{params[missing[0]][0]} exists in the model but not in the adapter"
        )
    with torch.no_grad():
        for key, (module_name, p) in params.items():
            t = tensors[key]
            if t.shape != p.shape:
                raise AdapterMismatchError(
                    f"{directory}: module {module_name}: {key} has shape {tuple(t.shape)} "
                    f"but this model needs {tuple(p.shape)}; is the adapter for another "
                    "base model?"
                )
            p.copy_(t.to(p.dtype))


def _info(model: nn.Module) -> AdapterInfo:
    info = getattr(model, "peftlab_adapter", None)
    if info is None:
        raise ValueError("this model has no peftlab adapter")
    return info
