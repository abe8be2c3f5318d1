"""The Python API; the CLI is a thin layer over these functions.

import peftlab
model = peftlab.load_adapter("runs/demo")          # base model + adapter, ready to use
results = peftlab.train(method="lora", max_steps=50, output="runs/demo")
peftlab.evaluate(adapter="runs/demo")
peftlab.merge("runs/demo", "runs/demo-merged")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import (
    RunConfig,
    apply_mapping,
    build_config,
    load_yaml,
    method_option_names,
)
from .core.atomic import atomic_write_json, clean_leftovers, staged_dir
from .core.rundir import check_new_output, output_lock, refuse_inputs
from .core.runtime import environment, parse_dtype, peak_memory_bytes
from .data.records import check_conversation
from .formats.card import Card
from .formats.card import write_card as _write_card
from .formats.saved import is_model_dir
from .lmeval import LmEvalSpec, parse_spec, score_session
from .lmeval import check as check_lm_eval
from .model.inject import merge_and_unload
from .training.evaluate import (
    batch_logits,
    evaluate_session,
    first_batches,
    logit_drift,
    merge_within,
)
from .training.evaluate import generate as _generate
from .training.loop import train as _train
from .training.session import base_model_for_adapter, command_inputs, log, open_session


def train(config=None, **overrides: Any) -> dict:
    """Fine-tune; returns the results written to ``<output>/results.json``. With
    ``max_memory`` the planner picks the settings first (:mod:`peftlab.memory.cap`)."""
    from .memory.cap import HOOKS

    return _train(build_config(config, **overrides), memory=HOOKS)


def plan(
    config=None,
    fit: str | None = None,
    methods: list[str] | None = None,
    num_processes: int = 1,
    use_data: bool = True,
    **overrides: Any,
) -> dict:
    """``peftlab plan`` from Python: the predicted peak memory of the run that
    ``train(config, **overrides)`` would make, part by part (``methods[NAME]``), read
    from the model's ``config.json`` alone; with ``fit`` (``"24GB"``, ``"a100"``) which
    settings fit for every method (or ``methods``). ``text`` is the printed table."""
    from .memory.cli import plan_config

    return plan_config(build_config(config, **overrides), fit, methods, num_processes, use_data)


def config_for_adapter(adapter: str | Path | None, **overrides: Any) -> RunConfig:
    """Defaults, then the model/data settings the adapter was trained with, then overrides.

    The saved method and its options are read too: they matter where adapter_config.json
    cannot tell the method (a QLoRA adapter loads onto an NF4 base only when the run says
    ``method: qlora``; see ``session.adapter_method_hint``)."""
    cfg = RunConfig()
    saved = Path(adapter) / "config.yaml" if adapter else None
    if saved is not None and saved.is_file():
        data = load_yaml(saved)
        keys = ("model", "data", "method", "adapter")
        data = {k: data[k] for k in keys if k in data}
        if isinstance(data.get("model"), dict):
            # A downloaded adapter directory must never switch remote code on by itself.
            data["model"] = {k: v for k, v in data["model"].items() if k != "trust_remote_code"}
        apply_mapping(cfg, data, str(saved), method_option_names())
    overrides = {k: v for k, v in overrides.items() if v is not None}
    apply_mapping(cfg, overrides, "arguments", method_option_names())
    return cfg


def load_adapter(
    adapter_dir: str | Path, model: str | None = None, device: str = "cpu", dtype: str = "float32"
) -> nn.Module:
    """The base model with the saved adapter applied (a transformers model, eval mode);
    for a directory holding a whole model (a full fine-tune's), that model."""
    cfg = config_for_adapter(adapter_dir, model=model, device=device, dtype=dtype)
    return open_session(cfg, adapter_dir=adapter_dir, with_data=False).model


def evaluate(
    adapter: str | Path | None = None,
    output: str | Path | None = None,
    lm_eval: LmEvalSpec | str | None = None,
    **overrides: Any,
) -> dict:
    """Perplexity, eval loss, exact match and token count (base model without adapter).
    ``lm_eval``: lm-evaluation-harness tasks (names, comma-separated, or a
    :class:`peftlab.lmeval.LmEvalSpec`) scored on the model and, for an adapter, on its
    base too, under ``lm_eval`` in the result."""
    cfg = config_for_adapter(adapter, **overrides)
    if isinstance(lm_eval, str):
        lm_eval = parse_spec(lm_eval)
    if lm_eval is not None and lm_eval.batch_size is None:
        lm_eval.batch_size = cfg.train.eval_batch_size
    check_lm_eval(lm_eval)  # before any model loads
    if output is None and adapter is not None:
        output = Path(adapter) / "eval.json"
    if output is not None:
        reads, homes = command_inputs(cfg, adapter)
        refuse_inputs(output, reads, homes)
        if Path(output).is_dir():
            raise IsADirectoryError(f"--output {output} is a directory; give the JSON file")
    s = open_session(cfg, adapter_dir=adapter, train_data=False)
    res = evaluate_session(s, cfg, with_exact=True)
    res.update(
        {
            "adapter": str(adapter) if adapter else None,
            "base_model": s.model_id,
            "dataset": s.splits.source,
            "data": s.data_info(),
            "eval_records": len(s.eval_data.examples),
            "params": s.params,
            "device": str(s.device),
            "peak_memory_bytes": peak_memory_bytes(s.device),
            "env": environment(),
        }
    )
    if lm_eval is not None:
        base = None if adapter is None or not lm_eval.base else lambda: _base_session(cfg, adapter)
        res["lm_eval"] = score_session(lm_eval, s, base)
    if output is not None:
        atomic_write_json(Path(output), res)
    return res


def _base_session(cfg: RunConfig, adapter: str | Path):
    """The base model an adapter (or a fine-tuned model's run) started from, alone."""
    base = cfg.model.name if is_model_dir(adapter) else None
    base = base or base_model_for_adapter(adapter, cfg.model.name)
    t = cfg.train
    over = {"model": base, "dtype": cfg.model.dtype, "device": t.device}
    return open_session(config_for_adapter(None, **over), with_data=False)


def generate(
    prompt: str | list[str] | None = None,
    adapter: str | Path | None = None,
    max_new_tokens: int = 128,
    raw: bool = False,
    chat: bool | None = None,
    conversation: list[dict] | None = None,
    **overrides: Any,
) -> list[str]:
    """Greedy completions of each prompt, asked in the run's prompt format (a user
    message in the chat template for a chat run or with ``chat=True``; the Alpaca
    prompt otherwise), or of raw text (``raw``); ``conversation``: a list of
    ``{role, content}`` turns answered as one more assistant turn."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
    if chat is not None:
        overrides["prompt_format"] = "chat" if chat else "alpaca"
    if conversation is not None:
        overrides.setdefault("prompt_format", "chat")
    s = open_session(config_for_adapter(adapter, **overrides), adapter_dir=adapter, with_data=False)
    if conversation is not None:
        turns = check_conversation(
            {"messages": conversation}, "conversation", 0, "messages", to_train=False
        )
        prompts.append(s.prompt.conversation_prompt(turns["messages"]))
    elif not raw:
        prompts = [s.prompt.user_prompt(p) for p in prompts]
    return _generate(
        s.model,
        s.tokenizer,
        prompts,
        max_new_tokens,
        s.device,
        autocast=s.autocast(),
        add_special_tokens=raw or s.prompt.add_special_tokens,
        stop_ids=s.prompt.stop_ids(),
    )


class Chat:
    """An interactive conversation with a model in its chat template: ``say`` adds a
    user turn, generates (greedy, streamed through ``on_text``) and keeps the reply."""

    def __init__(
        self,
        adapter: str | Path | None = None,
        system: str | None = None,
        max_new_tokens: int = 256,
        **overrides: Any,
    ):
        overrides["prompt_format"] = "chat"
        self.session = open_session(
            config_for_adapter(adapter, **overrides), adapter_dir=adapter, with_data=False
        )
        self.system, self.max_new_tokens = system, max_new_tokens
        self.messages: list[dict] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def say(self, text: str, on_text=None) -> str:
        from transformers import TextStreamer

        s = self.session
        self.messages.append({"role": "user", "content": text})
        streamer = None
        if on_text is not None:
            streamer = TextStreamer(s.tokenizer, skip_prompt=True, skip_special_tokens=True)
            streamer.on_finalized_text = lambda chunk, stream_end=False: on_text(chunk)
        reply = _generate(
            s.model,
            s.tokenizer,
            [s.prompt.conversation_prompt(self.messages)],
            self.max_new_tokens,
            s.device,
            autocast=s.autocast(),
            add_special_tokens=False,
            stop_ids=s.prompt.stop_ids(),
            streamer=streamer,
        )[0]
        self.messages.append({"role": "assistant", "content": reply})
        return reply


def merge(
    adapter_dir: str | Path,
    output_dir: str | Path,
    dtype: str = "float32",
    check_batches: int = 2,
    requantize: bool = False,
    overwrite: bool = False,
    **overrides: Any,
) -> dict:
    """Fold the adapter into the base weights and write a plain transformers model.

    The merge is done in fp32 and the result cast to ``dtype``; the largest logit
    difference between the merged and the adapter model on a few eval batches is
    measured (in fp32) and returned.

    ``requantize``: quantize the merged decoder Linears to NF4 again (double
    quantization) and save them in the bitsandbytes 4-bit format transformers loads
    (``dtype`` is then their compute dtype and the other weights' dtype); the logit
    difference this second quantization introduces is measured and returned too.

    ``output_dir`` must not exist unless ``overwrite`` (then it is replaced atomically),
    and is never the adapter run itself or a directory containing it.
    """
    reads, _ = command_inputs(config_for_adapter(adapter_dir, **overrides), adapter_dir)
    check_new_output(Path(output_dir), overwrite, protect=Path(adapter_dir), reads=reads)
    with output_lock(Path(output_dir), "merge"):
        clean_leftovers(Path(output_dir))  # a killed merge's staged copy (the lock is ours)
        return _merge(adapter_dir, output_dir, dtype, check_batches, requantize, **overrides)


def _merge(
    adapter_dir, output_dir, dtype: str, check_batches: int, requantize: bool, **overrides: Any
) -> dict:
    if is_model_dir(adapter_dir):
        raise ValueError(
            f"{adapter_dir} holds a whole model (a full fine-tune, or a model merged "
            "before), not an adapter: there is nothing to merge. Use the directory as it "
            f"is: --model {adapter_dir}, or --adapter {adapter_dir} for eval and generate"
        )
    cfg = config_for_adapter(adapter_dir, **overrides)
    cfg.model.dtype = "float32"
    cfg.train.mixed_precision = "no"
    s = open_session(cfg, adapter_dir=adapter_dir, train_data=False)
    s.model.eval()
    batches = first_batches(s.eval_data.examples, s.tokenizer.pad_token_id, check_batches)
    before = [batch_logits(s.model, b, s.device) for b in batches]
    tolerance = s.adapter.method.merge_tolerance
    model = merge_and_unload(s.model)
    drift = logit_drift(model, batches, before, s.device)
    diff, scale = drift["max_logit_diff"], drift["max_abs_logit"]
    ok = merge_within(diff, scale, tolerance)
    res = {
        "output": str(output_dir),
        "max_logit_diff": diff,
        "max_abs_logit": scale,
        "tolerance": tolerance,
        "ok": ok,
        "dtype": dtype,
        "base_model": s.model_id,
    }
    log(
        f"merged into {output_dir}; largest logit difference merged vs adapter model: "
        f"{diff:.2e} (logits up to {scale:.1f}; tolerance {tolerance:.0e} relative)"
    )
    if not ok:
        log("warning: the merged model differs from the adapter model more than expected")
    card = merged_card(adapter_dir, s.model_id, res)
    if requantize:
        res["requantize_max_logit_diff"] = _requantize(model, batches, before, s.device)
        log(
            f"re-quantized to NF4: largest logit difference vs the adapter model "
            f"{res['requantize_max_logit_diff']:.2e} (the merge alone: {diff:.2e})"
        )
        _save_quantized_atomic(model, s.tokenizer, Path(output_dir), parse_dtype(dtype), card)
    else:
        model.to(parse_dtype(dtype))
        _save_model_atomic(model, s.tokenizer, Path(output_dir), card)
    return res


def merged_card(adapter_dir, model_id: str, merge: dict) -> Card:
    """A merged model's card: the adapter run's recorded facts (its ``results.json``,
    when there is one) and the merge's own."""
    from .core.readers import read_json
    from .model.load import loadable_reference

    saved = Path(adapter_dir) / "results.json"
    facts = read_json(saved, "run results") if saved.is_file() else {}
    facts["merge"] = {k: merge[k] for k in ("max_logit_diff", "dtype", "ok") if k in merge}
    return Card("merged", model_id, loadable_reference(model_id), facts)


@torch.no_grad()
def _requantize(model: nn.Module, batches, before, device) -> float:
    """NF4 again for every decoder Linear, in place; the largest logit difference to the
    adapter model's ``before`` logits (computed in fp32)."""
    from .core.modules import linear_names_but_head
    from .quant.linear4bit import quantize_linears

    quantize_linears(model, linear_names_but_head(model), torch.float32, double_quant=True)
    return logit_drift(model, batches, before, device)["max_logit_diff"]


def _save_quantized_atomic(
    model: nn.Module, tokenizer, output: Path, dtype: torch.dtype, card: Card
) -> None:
    """An NF4 model in bitsandbytes' 4-bit format (config.json says how to load it)."""
    from safetensors.torch import save_file

    from .core.modules import output_head
    from .formats.bnb4bit import quantization_config, quantized_state_dict

    head = output_head(model)
    skip = [n for n, m in model.named_modules() if m is head]
    config = model.config.to_dict()
    config["quantization_config"] = quantization_config(dtype, True, skip)
    config["dtype"] = str(dtype).removeprefix("torch.")
    with staged_dir(output) as tmp:
        save_file(
            quantized_state_dict(model, dtype),
            str(tmp / "model.safetensors"),
            metadata={"format": "pt"},
        )
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_card(tmp, card)


def _save_model_atomic(model: nn.Module, tokenizer, output: Path, card: Card) -> None:
    """save_pretrained and the card into a temp dir beside ``output``, then rename it into
    place."""
    with staged_dir(output) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_card(tmp, card)


__all__ = [
    "build_config",
    "train",
    "load_adapter",
    "evaluate",
    "generate",
    "merge",
    "Chat",
    "config_for_adapter",
]
