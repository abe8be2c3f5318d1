"""Find target modules, swap in adapter layers, freeze the base, switch the lean layers,
merge and unload.

Target matching follows Hugging Face PEFT: a list of names matches a module whose full
name equals a name or ends with ``"." + name``; a string is a regular expression that
must match the full name; ``"all-linear"`` selects every Linear except the output head.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.modules import output_head, set_submodule
from ..methods.base import AdapterLayer, Method
from ..methods.lean import layer_ops
from ..quant.linear4bit import Linear4bit, dequantize_linears
from .fused import fuse_swiglu, unfuse_swiglu

ALL_LINEAR = "all-linear"


@dataclass
class AdapterInfo:
    """What peftlab remembers about the adapter injected into a model."""

    method: Method
    targets: list[str]
    target_modules: Any
    """The target spec to write into adapter_config.json (resolved for "all-linear")."""
    base_model: str = ""


def _linear_types() -> tuple[type, ...]:
    return (nn.Linear, Linear4bit)  # a 4-bit Linear is a Linear for targeting


def linear_module_names(model: nn.Module) -> list[str]:
    """Full names of the model's Linear modules (adapters unwrapped)."""
    # Modules an adapter layer owns (lora_A, base_layer, ...) are never targets themselves;
    # they are found by identity (isinstance of AdapterLayer), never by their names.
    owned = {id(m) for _, layer in adapter_layers(model) for m in layer.modules() if m is not layer}
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, _linear_types()) and id(module) not in owned
    ]


def _output_head_names(model: nn.Module) -> set[str]:
    head = output_head(model)
    return {n for n, m in model.named_modules() if head is not None and m is head}


def _matches(name: str, spec: Any) -> bool:
    if isinstance(spec, str):
        return re.fullmatch(spec, name) is not None
    return any(name == t or name.endswith("." + t) for t in spec)


def find_targets(model: nn.Module, spec: Any) -> list[str]:
    """Names of the Linear modules ``spec`` selects; a spec matching nothing is an error.

    For a list, *each* entry must match at least one Linear module, so a typo such as
    ``q_prj`` stops with the list of the model's Linear module names instead of silently
    training fewer layers than asked.
    """
    names = linear_module_names(model)
    if isinstance(spec, str) and spec.lower() == ALL_LINEAR:
        heads = _output_head_names(model)
        found = [n for n in names if n not in heads]
    elif isinstance(spec, str):
        found = [n for n in names if _matches(n, spec)]
        if not found:
            raise ValueError(_no_match_message([spec], names, regex=True))
    else:
        spec = list(spec)
        if not spec:
            raise ValueError("target_modules is empty")
        missing = [t for t in spec if not any(_matches(n, [t]) for n in names)]
        if missing:
            raise ValueError(_no_match_message(missing, names, regex=False))
        found = [n for n in names if _matches(n, spec)]
    if not found:
        raise ValueError("the model has no Linear modules to adapt")
    return found


def _no_match_message(missing: list[str], names: list[str], regex: bool) -> str:
    suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
    kind = "regular expression" if regex else "target module(s)"
    return (
        f"{kind} {', '.join(repr(m) for m in missing)} matched no Linear module of the "
        f"model. Its Linear module names end in: {', '.join(suffixes)} "
        f"(e.g. {names[0] if names else 'none'})"
    )


def saved_target_spec(spec: Any, targets: list[str]) -> Any:
    """The spec written to adapter_config.json: "all-linear" becomes explicit suffixes
    (None, no module targeted, stays None)."""
    if spec is None:
        return None
    if isinstance(spec, str) and spec.lower() == ALL_LINEAR:
        return sorted({t.rsplit(".", 1)[-1] for t in targets})
    return spec if isinstance(spec, str) else list(spec)


def inject(
    model: nn.Module, method: Method, base_model: str = "", lean_layers: bool = True
) -> AdapterInfo:
    """Freeze ``model`` and wrap the method's target modules with its adapter layers.

    The targets are resolved and checked first, so a bad spec leaves the model untouched;
    then ``method.prepare_model`` may transform the base (QLoRA quantizes it) and the
    targets are resolved again on the prepared model before wrapping. A method that
    targets nothing (``target_modules()`` is None) wraps nothing; the base parameters it
    names in ``trainable_base_parameters`` stay trainable (full fine-tuning).
    ``lean_layers``: the setting of :func:`use_lean_layers` for the model.

    Returns the :class:`AdapterInfo`, also stored as ``model.peftlab_adapter``.
    """
    if getattr(model, "peftlab_adapter", None) is not None:
        raise ValueError("this model already has a peftlab adapter; load a fresh base model")
    spec = method.target_modules()
    targets = find_targets(model, spec) if spec is not None else []
    method.check_targets(targets)  # before any swap: a failure leaves the model untouched
    method.prepare_model(model)  # e.g. QLoRA's NF4 quantization; keeps module names
    targets = find_targets(model, spec) if spec is not None else []
    for p in model.parameters():
        p.requires_grad_(False)
    for p in method.trainable_base_parameters(model):
        p.requires_grad_(True)
    method.before_wrap(model, targets)  # shared state, e.g. VeRA's projections
    for name in targets:
        module = model.get_submodule(name)
        layer = method.wrap(module, name)
        layer.train(module.training)  # new modules start in training mode (dropout on)
        for p in layer.adapter_params().values():
            p.requires_grad_(True)
        set_submodule(model, name, layer)
    use_lean_layers(model, lean_layers)
    info = AdapterInfo(method, targets, saved_target_spec(spec, targets), base_model)
    model.peftlab_adapter = info
    return info


def use_lean_layers(model: nn.Module, lean: bool = True) -> None:
    """The lean-layers switch (:mod:`peftlab.methods.lean`) for a whole model: its adapter
    layers compute with the lean ops and its SwiGLU MLPs keep less for backward (on), or
    both compute as plain PyTorch modules do (off). The same equations either way."""
    for _, layer in adapter_layers(model):
        layer.ops = layer_ops(lean)
    if lean:
        fuse_swiglu(model)
    else:
        unfuse_swiglu(model)


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, AdapterLayer]]:
    """(name, layer) for every adapter layer, found by type, never by name."""
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer):
            yield name, module


def adapter_state(model: nn.Module) -> dict[str, Any]:
    """Adapter parameters keyed ``<module name>.<local name>`` (a view, not a copy)."""
    out = {}
    for name, layer in adapter_layers(model):
        for local, p in layer.adapter_params().items():
            out[f"{name}.{local}"] = p
    return out


def trainable_state(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint holds to resume: the adapter parameters (trainable or not) and
    any base parameter the method trains directly (full fine-tuning), by full name (a
    view, not a copy). For adapter methods this is exactly :func:`adapter_state`."""
    out = adapter_state(model)
    for name, p in model.named_parameters():
        if p.requires_grad:
            out.setdefault(name, p)
    return out


def merge(model: nn.Module) -> None:
    for _, layer in adapter_layers(model):
        layer.merge()


def unmerge(model: nn.Module) -> None:
    for _, layer in adapter_layers(model):
        layer.unmerge()


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and put the plain base layers back.

    4-bit layers become plain ``nn.Linear`` in fp32: the adapted ones hold the
    dequantized weight plus the update (added in fp32, see ``AdapterLayer.merge``), the
    others their dequantized weight, so the result is an ordinary transformers model.
    """
    for name, layer in list(adapter_layers(model)):
        if not layer.merged:
            layer.merge()
        set_submodule(model, name, layer.base_layer)
    dequantize_linears(model, torch.float32)
    if hasattr(model, "peftlab_adapter"):
        del model.peftlab_adapter
    return model


def count_parameters(model: nn.Module) -> dict[str, int | float]:
    """Trainable and total parameter counts and the trainable share in percent."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    # A 4-bit weight is a buffer, not a parameter; count it at its logical size.
    total += sum(m.weight_numel for m in model.modules() if isinstance(m, Linear4bit))
    return {"trainable": trainable, "total": total, "share_pct": 100.0 * trainable / total}
