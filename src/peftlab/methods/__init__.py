"""The registry of methods: a plain dict from name to :class:`Method` subclass."""

from __future__ import annotations

from typing import Any

from .base import AdapterLayer, Method, MethodConfig
from .lora import LoRA, LoraConfig, LoraLinear
from .adalora import AdaLoRA, AdaloraConfig, AdaLoraLinear
from .ia3 import IA3, Ia3Config, Ia3Linear
from .dora import DoRA, DoraConfig, DoraLinear


def _registry(*classes: type[Method]) -> dict[str, type[Method]]:
    out: dict[str, type[Method]] = {}
    for cls in classes:
        if cls.name in out:
            raise RuntimeError(f"two methods are named {cls.name!r}")
        out[cls.name] = cls
    return out


METHODS: dict[str, type[Method]] = _registry(LoRA, DoRA, IA3, AdaLoRA)


def get_method(name: str, **options: Any) -> Method:
    """Instantiate the method called ``name`` with its options (unknown ones are errors)."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}"
        ) from None
    return cls(**options)


def method_for_peft_config(cfg: dict[str, Any], where: str = "adapter_config.json") -> Method:
    """The method that reads an ``adapter_config.json`` (exactly one must accept it)."""
    matches = [cls for cls in METHODS.values() if cls.accepts_peft_config(cfg)]
    if len(matches) != 1:
        raise ValueError(
            f"{where}: peftlab has no method for peft_type={cfg.get('peft_type')!r}"
            + (f" with use_dora={cfg['use_dora']}" if "use_dora" in cfg else "")
            + f" (methods: {', '.join(sorted(METHODS))})"
        )
    return matches[0].from_peft_config(cfg)


__all__ = [
    "AdapterLayer", "Method", "MethodConfig", "METHODS", "get_method",
    "method_for_peft_config", "LoRA", "LoraConfig", "LoraLinear",
    "AdaLoRA", "AdaloraConfig", "AdaLoraLinear",
    "IA3", "Ia3Config", "Ia3Linear",
    "DoRA", "DoraConfig", "DoraLinear",
]
