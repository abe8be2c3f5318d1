"""Save a model whose Linear layers are NF4 in the 4-bit format transformers loads.

peftlab's NF4 data are bit-for-bit bitsandbytes' (codes, packing, double-quantized
scales; tested in ``tests/test_nf4.py``), so a :class:`~.linear4bit.Linear4bit` layer
maps onto bitsandbytes' serialised ``Params4bit`` without requantizing: per layer
``weight`` (the packed bytes as a column), ``weight.absmax``, ``weight.quant_map`` (the
16 NF4 levels), with double quantization ``weight.nested_absmax``,
``weight.nested_quant_map`` and ``weight.nested_offset`` folded into a JSON record
``weight.quant_state.bitsandbytes__nf4`` (a uint8 tensor). ``config.json`` gets the
``quantization_config`` that tells ``from_pretrained`` to rebuild bitsandbytes 4-bit
layers from it. Nothing here imports bitsandbytes.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from ..quant.linear4bit import Linear4bit
from ..quant.nf4 import ABSMAX_BLOCKSIZE, _table, nf4_levels

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _json_tensor(record: dict) -> torch.Tensor:
    return torch.tensor(list(json.dumps(record).encode("utf-8")), dtype=torch.uint8)


def layer_tensors(prefix: str, layer: Linear4bit, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """bitsandbytes' serialised tensors for one NF4 layer; ``dtype``: what the weight
    dequantizes to (and the bias's dtype)."""
    q = layer.quant_state()
    out = {
        f"{prefix}.weight": q.packed.reshape(-1, 1).contiguous(),
        f"{prefix}.weight.absmax": q.absmax.contiguous(),
        f"{prefix}.weight.quant_map": nf4_levels(q.packed.device).float().contiguous(),
    }
    record = {
        "quant_type": "nf4",
        "blocksize": q.blocksize,
        "dtype": _DTYPE_NAMES[dtype],
        "shape": list(q.shape),
    }
    if q.double_quant:
        out[f"{prefix}.weight.nested_absmax"] = q.absmax_scale.contiguous()
        out[f"{prefix}.weight.nested_quant_map"] = (
            _table("dynamic", q.packed.device).float().clone()
        )
        record.update(
            nested_blocksize=ABSMAX_BLOCKSIZE,
            nested_dtype="float32",
            nested_offset=float(q.absmax_offset),
        )
    out[f"{prefix}.weight.quant_state.bitsandbytes__nf4"] = _json_tensor(record)
    if layer.bias is not None:
        out[f"{prefix}.bias"] = layer.bias.detach().to(dtype).contiguous()
    return out


def quantized_state_dict(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of ``model`` by its checkpoint name: NF4 layers in bitsandbytes'
    format, the rest (embeddings, norms, output head) cast to ``dtype``."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, Linear4bit)}
    out: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        out.update(layer_tensors(name, layer, dtype))
    seen: set[int] = set()
    for key, t in model.state_dict(keep_vars=False).items():
        owner = key.rpartition(".")[0]
        if owner in layers:
            continue
        if t.data_ptr() in seen and t.numel():  # a tied output head is stored once
            continue
        seen.add(t.data_ptr())
        out[key] = (t.to(dtype) if t.is_floating_point() else t).contiguous()
    return out


def quantization_config(compute_dtype: torch.dtype, double_quant: bool, skip: list[str]) -> dict:
    """The ``quantization_config`` entry of config.json for these weights."""
    return {
        "quant_method": "bitsandbytes",
        "load_in_4bit": True,
        "load_in_8bit": False,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": double_quant,
        "bnb_4bit_compute_dtype": _DTYPE_NAMES[compute_dtype],
        "bnb_4bit_quant_storage": "uint8",
        "llm_int8_skip_modules": skip,
    }
