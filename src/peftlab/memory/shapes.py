"""A model's shape from its ``config.json`` alone (no weights): the architecture facts the
memory planner needs, and exact parameter counts of the model with a method's adapter,
from a skeleton built on the ``meta`` device (no memory, no compute)."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Architecture facts of a few common bases (their config.json values), so that a plan
# for them works offline. Any other model: a local directory, the Hugging Face cache, or
# one download of its config.json.
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "mistralai/Mistral-7B-Instruct-v0.3": dict(
        model_type="mistral",
        architectures=["MistralForCausalLM"],
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=32768,
        tie_word_embeddings=False,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-5,
        torch_dtype="bfloat16",
    ),
    "mistralai/Mistral-7B-Instruct-v0.2": dict(
        model_type="mistral",
        architectures=["MistralForCausalLM"],
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        tie_word_embeddings=False,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        sliding_window=None,  # its config.json says null; MistralConfig's default is 4096
        rms_norm_eps=1e-5,
        torch_dtype="bfloat16",
    ),
    # The seed's base (configs/seed-mistral7b-alpaca.yaml): v0.2's architecture with the
    # original RoPE base and a 4,096-token sliding window.
    "mistralai/Mistral-7B-Instruct-v0.1": dict(
        model_type="mistral",
        architectures=["MistralForCausalLM"],
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        tie_word_embeddings=False,
        max_position_embeddings=32768,
        rope_theta=10000.0,
        sliding_window=4096,
        rms_norm_eps=1e-5,
        torch_dtype="bfloat16",
    ),
    "meta-llama/Llama-3.1-8B-Instruct": dict(
        model_type="llama",
        architectures=["LlamaForCausalLM"],
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        torch_dtype="bfloat16",
    ),
    "Qwen/Qwen2.5-0.5B-Instruct": dict(
        model_type="qwen2",
        architectures=["Qwen2ForCausalLM"],
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        torch_dtype="bfloat16",
    ),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": dict(
        model_type="llama",
        architectures=["LlamaForCausalLM"],
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=49152,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
        rope_theta=130000.0,
        rms_norm_eps=1e-5,
        torch_dtype="bfloat16",
    ),
}


def model_config(name: str | None, trust_remote_code: bool = False):
    """The transformers config of ``name`` (embedded model, local directory, known id,
    Hugging Face cache, or one download of ``config.json``); never its weights."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from ..model.load import ModelNotFoundError, _is_embedded, resolve_model_path

    if _is_embedded(name):
        return AutoConfig.from_pretrained(resolve_model_path(None))
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model directory {str(path)!r} has no config.json")
        return AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if path.is_file() and path.name.endswith(".json"):
        data = json.loads(path.read_text())
        return CONFIG_MAPPING[data["model_type"]](**data)
    if name in KNOWN_CONFIGS:
        data = dict(KNOWN_CONFIGS[name])
        return CONFIG_MAPPING[data.pop("model_type")](**data)
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(
            f"model {name!r}: no config.json found locally, in the Hugging Face cache or on "
            f"the hub ({type(e).__name__}); pass a local directory or a config.json file. "
            f"Known offline: {', '.join(KNOWN_CONFIGS)}"
        ) from None


@dataclass
class Shape:
    """What the planner needs to know of a model with its adapter."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    total_params: int
    """Logical parameters of the base (a 4-bit weight counts at its logical size)."""
    trainable: int
    frozen_bytes: int
    """Frozen parameters and buffers as stored (packed 4-bit codes and scales included)."""
    trainable_bytes: int
    linear_params: int
    """Parameters of the decoder's base projections (what the matmul FLOPs scale with)."""
    head_tied: bool
    linear_numel: dict[str, int]
    """Weights of every Linear (head and adapters included) by stored dtype, and
    ``"nf4"`` for 4-bit ones: what generation may keep compute-dtype copies of."""
    narrowable_bytes: int = 0
    """Bytes a 2-byte compute dtype saves while training by storing the frozen Linear
    weights that only matmuls read in it (``train.compute_dtype_weights``)."""


def _config_dims(config) -> dict[str, int]:
    text = getattr(config, "text_config", None) or config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return dict(
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        layers=text.num_hidden_layers,
        heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        vocab=text.vocab_size,
    )


def skeleton(config, method, dtype: torch.dtype, trust_remote_code: bool = False):
    """The model with ``method``'s adapter on the meta device (no memory, no compute)."""
    from transformers import AutoModelForCausalLM

    from ..model.inject import inject

    with torch.device("meta"), _quiet():
        model = AutoModelForCausalLM.from_config(
            config, dtype=dtype, trust_remote_code=trust_remote_code
        )
    inject(model, method)
    return model


@contextlib.contextmanager
def _quiet():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def shape_of(config, method, dtype: torch.dtype) -> Shape:
    """Exact parameter and byte counts of ``config``'s model with ``method`` injected."""
    from ..methods.base import AdapterLayer
    from ..methods.frozen import castable_linears
    from ..model.inject import count_parameters
    from ..quant.linear4bit import Linear4bit

    model = skeleton(config, method, dtype)
    counts = count_parameters(model)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    frozen += sum(
        b.numel() * b.element_size()
        for b in model.buffers()
        if b.dtype != torch.int64 or b.numel() > 1
    )
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    head = model.get_output_embeddings()
    adapter_parts = {
        id(m)
        for layer in model.modules()
        if isinstance(layer, AdapterLayer)
        for m in layer.modules()
        if m is not layer
    } - {
        id(m)
        for layer in model.modules()
        if isinstance(layer, AdapterLayer)
        for m in layer.base_layer.modules()
    }
    linear, by_dtype = 0, {}
    for m in model.modules():
        if isinstance(m, nn.Linear):
            key = str(m.weight.dtype).removeprefix("torch.")
            by_dtype[key] = by_dtype.get(key, 0) + m.weight.numel()
        elif isinstance(m, Linear4bit):
            by_dtype["nf4"] = by_dtype.get("nf4", 0) + m.weight_numel
        if m is head or id(m) in adapter_parts:
            continue
        if isinstance(m, nn.Linear):
            linear += m.weight.numel()
        elif isinstance(m, Linear4bit):
            linear += m.weight_numel
    embed = model.get_input_embeddings()
    tied = head is not None and head.weight is embed.weight
    narrow = sum(
        m.weight.numel() * (m.weight.element_size() - 2)
        for m in castable_linears(model, torch.bfloat16).values()
    )
    return Shape(
        **_config_dims(config),
        total_params=int(counts["total"]),
        trainable=int(counts["trainable"]),
        frozen_bytes=int(frozen),
        trainable_bytes=int(trainable),
        linear_params=int(linear),
        head_tied=tied,
        linear_numel=by_dtype,
        narrowable_bytes=int(narrow),
    )
