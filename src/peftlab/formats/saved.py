"""What a training run leaves in its output directory, and how to tell what it is.

Most methods leave a PEFT adapter (:mod:`peftlab.formats.peft`). A method that trains the
base weights themselves (``Method.saves_full_model``: full fine-tuning) leaves the whole
model instead, written by transformers' ``save_pretrained`` (safetensors) with its
tokenizer, so the run directory is an ordinary model directory: ``from_pretrained`` and
``peftlab eval/generate --adapter`` load it as it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from torch import nn

from .peft import CONFIG_NAME, WEIGHTS_NAME, save_adapter

MODEL_CONFIG = "config.json"
"""transformers' model config; written last, so its presence marks a complete model."""


def is_model_dir(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a whole model rather than an adapter: a
    ``config.json`` and no ``adapter_config.json`` (a full fine-tune's run directory, or a
    model written by ``peftlab merge``)."""
    d = Path(directory)
    return (d / MODEL_CONFIG).is_file() and not (d / CONFIG_NAME).is_file()


def save_trained(model: nn.Module, tokenizer, directory: str | os.PathLike) -> int:
    """Save what the run trained into ``directory``: the PEFT adapter, or the whole model
    for a method that ``saves_full_model``. Returns the bytes of the saved weights (the
    "adapter size" of a run)."""
    directory = Path(directory)
    if model.peftlab_adapter.method.saves_full_model:
        return save_whole_model(model, tokenizer, directory)
    save_adapter(model, directory)
    return (directory / WEIGHTS_NAME).stat().st_size


def save_whole_model(model: nn.Module, tokenizer, directory: str | os.PathLike) -> int:
    """``save_pretrained`` (safetensors) and the tokenizer into ``directory``, which may
    already hold other files (the run's config.yaml, metrics, checkpoints).

    Everything is written to a temporary directory inside ``directory`` and then renamed
    file by file, ``config.json`` last: a crash leaves either the new model complete or
    no ``config.json`` (an error that names the directory), never new and old files mixed
    under a valid config. Adapter files left by an earlier run in the same directory are
    removed, so the directory is unambiguously a model. Returns the weight files' bytes.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".model.tmp-"))
    try:
        with _cache_enabled(model):
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = sorted(
            (p for p in tmp.iterdir() if p.is_file()),
            key=lambda p: (p.name == MODEL_CONFIG, p.name),
        )
        weights = sum(p.stat().st_size for p in files if p.name.endswith(".safetensors"))
        for stale in (MODEL_CONFIG, CONFIG_NAME, WEIGHTS_NAME):
            (directory / stale).unlink(missing_ok=True)
        for p in files:
            os.replace(p, directory / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return weights


@contextlib.contextmanager
def _cache_enabled(model: nn.Module):
    """The training loop turns the KV cache off (``use_cache=False``, for gradient
    checkpointing); the saved config should not carry that into generation."""
    config = getattr(model, "config", None)
    old = getattr(config, "use_cache", None)
    if config is not None and old is not None:
        config.use_cache = True
    try:
        yield
    finally:
        if config is not None and old is not None:
            config.use_cache = old


FREE_NAMES = ("eval.json", "general.json", "Modelfile")
"""Files peftlab writes into a run directory but never reads back as part of the run
(``general.json``: ``compare --general-eval``'s score of the run, rewritten per set);
with ``.gguf`` files (exports) and hidden ones (temporaries, locks) they may be replaced."""


def run_reads(directory: str | os.PathLike) -> list[Path]:
    """What a command that reads the run (or model) in ``directory`` reads: every entry
    but the free ones above (the adapter or model files, config.yaml, metrics,
    checkpoints, tokenizer files, the run marker). No writer may replace them."""
    d = Path(directory)
    if not d.is_dir():
        return [d]
    return [
        p
        for p in d.iterdir()
        if p.name not in FREE_NAMES and not p.name.startswith(".") and p.suffix != ".gguf"
    ]


__all__ = ["is_model_dir", "run_reads", "save_trained", "save_whole_model"]
