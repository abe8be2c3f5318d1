"""GGUF files for llama.cpp, Ollama and LM Studio: a whole model, or a LoRA adapter.

Written with the ``gguf`` package's writer, tensor by tensor: the header, metadata and
tensor index go first (sizes are known from shapes), then each tensor is produced and
written in turn, so a large model never needs all its converted weights in memory.

Tensor names and layout follow llama.cpp's Llama convention: ``blk.N.attn_q.weight`` and
so on, and the rows of q and k permuted from Hugging Face's rotate-half order into the
interleaved order of the original Llama weights (llama.cpp's rope pairs neighbouring
dimensions). The tokenizer (vocabulary, merges, token types, special ids, chat
template) travels in the metadata so the file runs on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
"""Hugging Face model types written with llama.cpp's ``llama`` architecture."""
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
Q8_0_BLOCK, Q8_0_BLOCK_BYTES = 32, 34  # 32 int8 weights + one fp16 scale (ggml's Q8_0)

# llama.cpp's names for the modules of one decoder layer.
LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


class UnsupportedModelError(ValueError):
    """The model's architecture cannot be written as a llama.cpp GGUF (yet)."""


def check_supported(config) -> None:
    mtype = getattr(config, "model_type", None)
    if mtype not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"GGUF export supports the Llama family ({', '.join(SUPPORTED_MODEL_TYPES)}; "
            f"SmolLM2 is Llama), not model type {mtype!r}"
        )
    kind = rope_parameters(config).get("rope_type", "default")
    if kind not in (None, "default"):
        raise UnsupportedModelError(f"GGUF export does not handle rope scaling {kind!r} yet")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise UnsupportedModelError("GGUF export does not handle Llama models with biases")


def rope_parameters(config) -> dict:
    """RoPE settings: transformers 5 keeps them in ``rope_parameters``; older versions in
    ``rope_theta`` and ``rope_scaling``."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    scaling = getattr(config, "rope_scaling", None)
    if isinstance(scaling, dict):
        params.setdefault("rope_type", scaling.get("rope_type", scaling.get("type")))
    if getattr(config, "rope_theta", None) is not None:
        params.setdefault("rope_theta", config.rope_theta)
    return params


def permute_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q/k projection (or a LoRA B) from Hugging Face's rotate-half order, where
    each head's first half of rows pairs with its second half, into the interleaved order
    where rows 2i and 2i+1 pair (the order llama.cpp's rope expects)."""
    out = w.shape[0]
    return w.reshape(n_heads, 2, out // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def head_counts(config) -> tuple[int, int]:
    heads = config.num_attention_heads
    return heads, getattr(config, "num_key_value_heads", None) or heads


def model_tensor_names(config, tied: bool) -> list[tuple[str, str]]:
    """(llama.cpp name, Hugging Face module path) in writing order."""
    names = [("token_embd.weight", "model.embed_tokens")]
    for i in range(config.num_hidden_layers):
        names += [
            (f"blk.{i}.{g}.weight", f"model.layers.{i}.{h}") for h, g in LAYER_TENSORS.items()
        ]
    names.append(("output_norm.weight", "model.norm"))
    if not tied:
        names.append(("output.weight", "lm_head"))
    return names


def ggml_type(outtype: str, ndim: int):
    """The stored type: 1-D tensors (norms) stay F32 as llama.cpp keeps them."""
    from gguf import GGMLQuantizationType as T

    if ndim == 1 or outtype == "f32":
        return T.F32
    return {"f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0}[outtype]


def file_type(outtype: str) -> int:
    from gguf import LlamaFileType as F

    return {"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "bf16": F.MOSTLY_BF16, "q8_0": F.MOSTLY_Q8_0}[
        outtype
    ]


def encode_tensor(t: torch.Tensor, qtype) -> np.ndarray:
    """An fp32 tensor as the bytes/array ``qtype`` stores (numpy, C order)."""
    from gguf import GGMLQuantizationType as T
    from gguf import quants

    a = t.detach().to(torch.float32).contiguous().numpy()
    if qtype == T.F32:
        return a
    if qtype == T.F16:
        return a.astype(np.float16)
    if qtype == T.Q8_0 and a.shape[-1] % Q8_0_BLOCK:
        raise ValueError(
            f"q8_0 needs rows that are a multiple of {Q8_0_BLOCK} long, got {a.shape[-1]}"
        )
    return quants.quantize(a, qtype)


def stored_nbytes(shape: tuple[int, ...], qtype) -> int:
    from gguf import GGMLQuantizationType as T

    n = int(np.prod(shape))
    if qtype == T.Q8_0:
        return n // Q8_0_BLOCK * Q8_0_BLOCK_BYTES
    return n * (4 if qtype == T.F32 else 2)


@dataclass
class TensorPlan:
    name: str
    shape: tuple[int, ...]
    qtype: object
    make: Callable[[], torch.Tensor]
    """Produces the fp32 tensor (Hugging Face shape, permutation applied) when written."""


def write_gguf(
    path: Path,
    metadata: Callable,
    tensors: list[TensorPlan],
    progress: Callable[[Iterator], Iterator] = iter,
) -> None:
    """Write ``tensors`` (made one at a time) after the metadata that ``metadata(writer)``
    adds, to ``path`` (the caller renames a temp file into place)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch="llama")
    metadata(w)
    for t in tensors:
        nbytes = stored_nbytes(t.shape, t.qtype)
        is_q = t.qtype == gguf.GGMLQuantizationType.Q8_0
        w.add_tensor_info(
            t.name,
            (t.shape[0], t.shape[1] // Q8_0_BLOCK * Q8_0_BLOCK_BYTES) if is_q else t.shape,
            np.dtype(np.uint8) if is_q else _np_dtype(t.qtype),
            nbytes,
            raw_dtype=t.qtype,
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in progress(tensors):
        data = encode_tensor(t.make(), t.qtype)
        if data.nbytes != stored_nbytes(t.shape, t.qtype):
            raise AssertionError(
                f"{t.name}: {data.nbytes} bytes, planned {stored_nbytes(t.shape, t.qtype)}"
            )
        w.write_tensor_data(data)
    w.close()


def _np_dtype(qtype):
    from gguf import GGMLQuantizationType as T

    return {T.F32: np.dtype(np.float32), T.F16: np.dtype(np.float16), T.BF16: np.dtype(np.uint16)}[
        qtype
    ]


def add_model_metadata(w, config, name: str, outtype: str) -> None:
    """Architecture hyper-parameters under llama.cpp's ``llama.*`` keys."""
    heads, kv_heads = head_counts(config)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    w.add_type("model")
    w.add_name(name)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    theta = rope_parameters(config).get("rope_theta")
    if theta is None:
        raise UnsupportedModelError("the model config states no rope_theta")
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    if head_dim != config.hidden_size // heads:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_vocab_size(config.vocab_size)
    w.add_file_type(file_type(outtype))
    if outtype == "q8_0":
        w.add_quantization_version(2)
