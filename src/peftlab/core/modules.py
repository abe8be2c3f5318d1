"""Small helpers on module trees shared by injection, quantization and the loss."""

from __future__ import annotations

from torch import nn


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted path) by ``module``."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def output_head(model: nn.Module) -> nn.Module | None:
    """The model's output projection (``lm_head``), or None if it has none."""
    get = getattr(model, "get_output_embeddings", None)
    return get() if get is not None else None


def linear_names_but_head(model: nn.Module) -> list[str]:
    """Names of every ``nn.Linear`` except the output head (what QLoRA quantizes)."""
    head = output_head(model)
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head]
