"""Load a safetensors checkpoint straight into a 4-bit model, one tensor at a time.

The usual route to QLoRA (load the full-precision model, then quantize it) needs the
whole full-precision model in memory first: 29 GB for a 7B model in fp32, 14.5 GB in
bf16. Here the model is built on the ``meta`` device (no memory), its Linear layers are
replaced by empty :class:`~peftlab.quant.linear4bit.Linear4bit` skeletons, and the
checkpoint's tensors are read one by one, each quantized (or, for embeddings, norms and
the output head, kept) as it arrives. Peak memory is about the finished 4-bit model plus
one full-precision tensor plus the quantizer's chunk temporaries (:mod:`.nf4`).

Tensors are read with plain file reads, not through a memory map: a mapped shard stays
resident in the process as its pages are touched, so reading a 5 GB shard through mmap
would count 5 GB towards the peak even though each tensor is used once.

Only checkpoints whose tensor names are the model's own parameter names are supported
(Llama, Mistral, Qwen2 and most causal LMs saved by transformers); a name the model does
not have is an error naming it, as is a parameter the checkpoint does not provide.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..core.modules import linear_names_but_head, set_submodule
from .linear4bit import Linear4bit

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_HEADER_LIMIT = 100 << 20  # a safetensors header larger than 100 MB is a broken file


def checkpoint_files(path: str | Path) -> list[Path]:
    """The safetensors files of a model directory: the shards its index names, in
    order, or its single ``model.safetensors``."""
    path = Path(path)
    index = path / INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [path / f for f in sorted(set(weight_map.values()))]
    if (path / SINGLE_NAME).is_file():
        return [path / SINGLE_NAME]
    raise FileNotFoundError(f"{path}: no {INDEX_NAME} or {SINGLE_NAME}")


def iter_safetensors(file: Path):
    """Yield (name, tensor) for every tensor of a safetensors file, each read into its
    own memory with ``readinto`` (format: u64 header length, JSON header, raw data)."""
    with open(file, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > _HEADER_LIMIT:
            raise ValueError(f"{file}: not a safetensors file (header of {n} bytes)")
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        start = 8 + n
        # In file order, so reading never seeks backwards.
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            begin, end = info["data_offsets"]
            dtype = _DTYPES.get(info["dtype"])
            if dtype is None:
                raise ValueError(f"{file}: tensor {name} has unsupported dtype {info['dtype']}")
            buf = bytearray(end - begin)
            f.seek(start + begin)
            if f.readinto(buf) != len(buf):
                raise ValueError(f"{file}: truncated at tensor {name}")
            t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
            yield name, t.reshape(info["shape"])


def _skeleton(path: Path, dtype: torch.dtype, trust_remote_code: bool):
    """The model with parameters on ``meta`` (buffers such as rotary tables are real:
    they are computed at construction, not stored in checkpoints)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(
            config, dtype=dtype, trust_remote_code=trust_remote_code
        )
    return model


def _swap_in_4bit(model: nn.Module, compute_dtype, weight_dtype, double_quant) -> set[str]:
    names = linear_names_but_head(model)
    for name in names:
        m = model.get_submodule(name)
        layer = Linear4bit(
            m.in_features,
            m.out_features,
            m.bias is not None,
            compute_dtype,
            device="meta",
            weight_dtype=weight_dtype,
            double_quant=double_quant,
        )
        set_submodule(model, name, layer)
    return set(names)


def _place(model: nn.Module, key: str, t: torch.Tensor, dtype, device, file: Path) -> None:
    """Put checkpoint tensor ``key`` where it belongs: quantized into a Linear4bit, or
    as a frozen parameter / buffer (floating tensors cast to ``dtype``)."""
    module_name, _, leaf = key.rpartition(".")
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        module = None
    if module is None or (
        leaf not in module._parameters
        and leaf not in module._buffers
        and not isinstance(module, Linear4bit)
    ):
        raise ValueError(f"{file}: tensor {key} matches no parameter of the model")
    if isinstance(module, Linear4bit) and leaf == "weight":
        module.load_weight(t.to(device))  # quantized where it will live (fast on a GPU)
        module.weight_dtype = dtype
        return
    value = t.to(device, dtype) if t.is_floating_point() else t.to(device)
    if isinstance(module, Linear4bit) and leaf == "bias":
        module.bias = nn.Parameter(value, requires_grad=False)
    elif leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    elif leaf in module._buffers:
        module._buffers[leaf] = value
    else:
        raise ValueError(f"{file}: tensor {key} matches no parameter of the model")


def load_quantized(
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    compute_dtype: torch.dtype | None = None,
    double_quant: bool = True,
    device: str | torch.device = "cpu",
    trust_remote_code: bool = False,
    reclaim: Callable[[], None] | None = None,
):
    """A causal LM from the safetensors checkpoint in ``path``, every Linear but the
    output head in NF4 (as ``QLoRA.prepare_model`` would make it), quantized while it
    loads. ``dtype``: the other weights' dtype (embeddings, norms, head) and what the
    4-bit layers compute in unless ``compute_dtype`` says otherwise. ``reclaim``: called
    after each tensor, when its full-precision buffer and the quantizer's temporaries
    are free, so the caller can give that memory back to the OS before the next one."""
    path = Path(path)
    model = _skeleton(path, dtype, trust_remote_code)
    _swap_in_4bit(model, compute_dtype or dtype, dtype, double_quant)
    for file in checkpoint_files(path):
        for key, t in iter_safetensors(file):
            _place(model, key, t, dtype, device, file)
            del t  # one full-precision tensor alive at a time
            if reclaim is not None:
                reclaim()
    model.tie_weights()  # an output head tied to the embeddings is not stored twice
    _check_complete(model, path)
    if (path / "generation_config.json").is_file():  # from_config does not read it
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(path)
    for buf_owner in model.modules():  # buffers built at construction follow the device
        for name, b in list(buf_owner._buffers.items()):
            if b is not None and b.device != torch.device(device):
                buf_owner._buffers[name] = b.to(device)
    return model.eval()


def _check_complete(model: nn.Module, path: Path) -> None:
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    missing += [n for n, b in model.named_buffers() if b.is_meta]
    if missing:
        raise ValueError(
            f"{path}: the checkpoint has no value for {missing[0]} ({len(missing)} tensors missing)"
        )
