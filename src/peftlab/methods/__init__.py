"""The registry of methods: a plain dict from name to :class:`Method` subclass."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..core.options import make_config
from .adalora import AdaLoRA, AdaloraConfig, AdaLoraLinear
from .base import AdapterLayer, Method, MethodConfig
from .dora import DoRA, DoraConfig, DoraLinear
from .full import FullConfig, FullFineTune
from .ia3 import IA3, Ia3Config, Ia3Linear
from .loha import LoHa, LohaConfig, LohaLinear
from .lokr import LoKr, LokrConfig, LokrLinear
from .lora import LoRA, LoraConfig, LoraLinear
from .oft import OFT, OftConfig, OftLinear
from .pissa import OLoRA, PiSSA
from .qlora import QLoRA, QloraConfig
from .vera import VeRA, VeraConfig, VeraLinear


def _registry(*classes: type[Method]) -> dict[str, type[Method]]:
    out: dict[str, type[Method]] = {}
    for cls in classes:
        if cls.name in out:
            raise RuntimeError(f"two methods are named {cls.name!r}")
        out[cls.name] = cls
    return out


METHODS: dict[str, type[Method]] = _registry(
    LoRA, DoRA, IA3, AdaLoRA, QLoRA, FullFineTune, PiSSA, OLoRA, VeRA, OFT, LoHa, LoKr
)


def get_method(name: str, **options: Any) -> Method:
    """Instantiate the method called ``name`` with its options (unknown ones are errors)."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}"
        ) from None
    return cls(**options)


def method_for_peft_config(
    cfg: dict[str, Any],
    where: str = "adapter_config.json",
    method: str | None = None,
    options: dict[str, Any] | None = None,
) -> Method:
    """The method that reads an ``adapter_config.json``: the one named by ``method``
    (which must accept the file), else the one auto-detectable method that accepts it
    (QLoRA files are LoRA files, so QLoRA is used only when named). ``options``: values
    for the named method's ``local_options``, which the file does not hold."""
    if method is not None:
        return _named_method(cfg, where, method, options or {})
    if options:
        raise ValueError("method options need a method name")
    matches = [cls for cls in METHODS.values() if cls.auto_detect and cls.accepts_peft_config(cfg)]
    if len(matches) != 1:
        raise ValueError(
            f"{where}: peftlab has no method for peft_type={cfg.get('peft_type')!r}"
            + (f" with use_dora={cfg['use_dora']}" if "use_dora" in cfg else "")
            + f" (methods: {', '.join(sorted(METHODS))})"
        )
    return matches[0].from_peft_config(cfg)


def _named_method(cfg: dict[str, Any], where: str, name: str, options: dict[str, Any]) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    if not cls.accepts_peft_config(cfg):
        raise ValueError(
            f"{where}: not a {name} adapter (peft_type="
            f"{cfg.get('peft_type')!r}, use_dora={cfg.get('use_dora')})"
        )
    method = cls.from_peft_config(cfg)
    unknown = sorted(set(options) - set(cls.local_options))
    if unknown:
        raise ValueError(
            f"{where}: option(s) {', '.join(unknown)} come from the adapter "
            f"file, not the caller; {name} takes only "
            f"{', '.join(cls.local_options) or 'none'}"
        )
    if options:
        opts = {**dataclasses.asdict(method.config), **options}
        method = cls(make_config(cls.config_cls, opts, where=f"{name} options for {where}"))
    return method


__all__ = [
    "AdapterLayer",
    "Method",
    "MethodConfig",
    "METHODS",
    "get_method",
    "method_for_peft_config",
    "LoRA",
    "LoraConfig",
    "LoraLinear",
    "AdaLoRA",
    "AdaloraConfig",
    "AdaLoraLinear",
    "IA3",
    "Ia3Config",
    "Ia3Linear",
    "DoRA",
    "DoraConfig",
    "DoraLinear",
    "QLoRA",
    "QloraConfig",
    "FullFineTune",
    "FullConfig",
    "PiSSA",
    "OLoRA",
    "VeRA",
    "VeraConfig",
    "VeraLinear",
    "OFT",
    "OftConfig",
    "OftLinear",
    "LoHa",
    "LohaConfig",
    "LohaLinear",
    "LoKr",
    "LokrConfig",
    "LokrLinear",
]
