"""``peftlab export``: a run as one GGUF file for llama.cpp / Ollama / LM Studio (the
adapter merged in, layer by layer), or the adapter alone as a llama.cpp LoRA GGUF; an
Ollama Modelfile beside it on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import RunConfig
from .core.atomic import clean_leftovers, staged_file
from .core.readers import read_json
from .core.rundir import check_new_output, output_lock
from .formats import gguf as G
from .formats.card import Card, write_card_beside
from .formats.gguf_vocab import add_tokenizer_metadata
from .formats.modelfile import modelfile
from .methods import AdapterLayer
from .model.load import loadable_reference
from .quant.linear4bit import Linear4bit
from .training.session import Session, command_inputs, log, open_session

FORMATS = ("gguf", "gguf-lora")


def export(
    adapter: str | Path | None = None,
    output: str | Path = "model.gguf",
    format: str = "gguf",
    outtype: str = "f16",
    write_modelfile: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> dict:
    """Write ``output``; returns what was written (path, bytes, tensors, type)."""
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if outtype not in G.OUTTYPES:
        raise ValueError(f"--outtype must be one of {', '.join(G.OUTTYPES)}, got {outtype!r}")
    output = Path(output)
    if format == "gguf-lora" and adapter is None:
        raise ValueError("--format gguf-lora needs --adapter")
    from .api import config_for_adapter

    reads, _ = command_inputs(config_for_adapter(adapter, **overrides), adapter)
    for path in [output] + ([output.parent / "Modelfile"] if write_modelfile else []):
        check_new_output(
            path,
            overwrite,
            protect=Path(adapter) if adapter else None,
            reads=reads,
            directory=False,
        )
    with output_lock(output, "export"):
        for path in [output] + ([output.parent / "Modelfile"] if write_modelfile else []):
            clean_leftovers(path)  # a killed export's temporaries (the lock is ours)
        return _export(adapter, output, format, outtype, write_modelfile, progress, **overrides)


def _export(
    adapter,
    output: Path,
    format: str,
    outtype: str,
    write_modelfile: bool,
    progress: bool,
    **overrides: Any,
) -> dict:
    from .api import config_for_adapter

    cfg: RunConfig = config_for_adapter(adapter, **overrides)
    s = open_session(cfg, adapter_dir=adapter, with_data=False)
    G.check_supported(s.model.config)
    s.model.eval()
    name = Path(adapter).name if adapter else s.model_id.rstrip("/").split("/")[-1]
    if format == "gguf":
        plans = _model_plans(s.model, outtype)
        meta = _model_metadata(s, name, outtype)
    else:
        plans, alpha = _lora_plans(s.model)
        meta = _lora_metadata(s, name, alpha)
    bar = _progress(progress, len(plans))
    with staged_file(output) as tmp:
        G.write_gguf(tmp, meta, plans, bar)
    res = {
        "output": str(output),
        "format": format,
        "outtype": outtype if format == "gguf" else "f32",
        "tensors": len(plans),
        "bytes": output.stat().st_size,
    }
    if write_modelfile:
        res["modelfile"] = str(_write_modelfile(s, output, format))
    res["card"] = str(write_card_beside(output, _card(adapter, s, output)))
    log(f"wrote {output} ({res['bytes'] / 2**20:.1f} MiB, {len(plans)} tensors)")
    return res


def _card(adapter, s: Session, output: Path) -> Card:
    """The GGUF file's card: the run's recorded facts (its ``results.json``), if any."""
    saved = Path(adapter) / "results.json" if adapter else None
    facts = read_json(saved, "run results") if saved and saved.is_file() else {}
    return Card("gguf", s.model_id, loadable_reference(s.model_id), facts, output.name)


def _progress(enabled: bool, total: int):
    if not enabled:
        return iter
    from tqdm import tqdm

    return lambda items: tqdm(items, total=total, desc="export", unit="tensor")


def dense_weight(module: nn.Module) -> torch.Tensor:
    """A module's weight in fp32 with any adapter folded in (one layer at a time)."""
    if isinstance(module, AdapterLayer):
        return module.merged_weight()
    if isinstance(module, Linear4bit):
        return module.dequantized_weight().float()
    return module.weight.detach().float()


def _shape(module: nn.Module) -> tuple[int, ...]:
    if isinstance(module, AdapterLayer):
        module = module.base_layer
    if isinstance(module, Linear4bit):
        return (module.out_features, module.in_features)
    return tuple(module.weight.shape)


def _tied(model: nn.Module) -> bool:
    head = model.get_output_embeddings()
    return head is None or head.weight is model.get_input_embeddings().weight


def _model_plans(model: nn.Module, outtype: str) -> list[G.TensorPlan]:
    heads, kv_heads = G.head_counts(model.config)
    plans = []
    for gname, path in G.model_tensor_names(model.config, _tied(model)):
        module = model.get_submodule(path)
        shape = _shape(module)
        n = heads if ".attn_q." in gname else kv_heads if ".attn_k." in gname else None

        def make(module=module, n=n):
            w = dense_weight(module)
            return G.permute_qk(w, n) if n else w

        plans.append(G.TensorPlan(gname, shape, G.ggml_type(outtype, len(shape)), make))
    return plans


def _model_metadata(s: Session, name: str, outtype: str):
    def add(w):
        G.add_model_metadata(w, s.model.config, name, outtype)
        add_tokenizer_metadata(w, s.tokenizer, s.model.config.vocab_size)

    return add


def _lora_plans(model: nn.Module) -> tuple[list[G.TensorPlan], float]:
    """``lora_a`` / ``lora_b`` per adapted layer. llama.cpp applies ``alpha / rank · B A``
    with one alpha per file, so alpha is the first layer's ``s · r`` and each layer's own
    scaling is folded into its B (exact for rsLoRA and per-layer ranks alike)."""
    heads, kv_heads = G.head_counts(model.config)
    names = {path: g for g, path in G.model_tensor_names(model.config, _tied(model))}
    plans, alpha = [], None
    for path, layer in model.named_modules():
        if not isinstance(layer, AdapterLayer):
            continue
        factors = layer.low_rank_factors()
        method = model.peftlab_adapter.method.name
        if factors is None:
            raise ValueError(
                f"{method} adapters have no llama.cpp LoRA form (layer {path} is not a plain "
                "s·B A update); export the merged model instead: --format gguf"
            )
        if path not in names:
            raise ValueError(f"adapted module {path} has no llama.cpp tensor name")
        a, b, s = factors
        r = a.shape[0]
        alpha = alpha if alpha is not None else s * r
        n = heads if ".attn_q." in names[path] else kv_heads if ".attn_k." in names[path] else None
        base = names[path].removesuffix(".weight")

        def make_b(b=b, fold=s * r / alpha, n=n):
            w = b.detach().float() * fold
            return G.permute_qk(w, n) if n else w

        plans += [
            G.TensorPlan(
                f"{base}.weight.lora_a",
                tuple(a.shape),
                G.ggml_type("f32", 2),
                lambda a=a: a.detach().float(),
            ),
            G.TensorPlan(f"{base}.weight.lora_b", tuple(b.shape), G.ggml_type("f32", 2), make_b),
        ]
    if not plans:
        raise ValueError("the run has no adapter layers to export as a LoRA GGUF")
    return plans, float(alpha)


def _lora_metadata(s: Session, name: str, alpha: float):
    def add(w):
        w.add_type("adapter")
        w.add_name(name)
        w.add_string("adapter.type", "lora")
        w.add_float32("adapter.lora.alpha", alpha)

    return add


def _write_modelfile(s: Session, output: Path, format: str) -> Path:
    if format != "gguf":
        raise ValueError("--modelfile goes with --format gguf (a whole model)")
    tok = s.tokenizer
    stops = sorted(
        {tok.decode([i]) for i in (s.prompt.stop_ids() or [tok.eos_token_id]) if i is not None}
    )
    text = modelfile(output.name, tok, s.prompt.is_chat, stops)
    path = output.parent / "Modelfile"
    from .core.atomic import atomic_write_bytes

    atomic_write_bytes(path, text.encode())
    return path
