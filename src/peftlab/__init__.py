"""peftlab: parameter-efficient fine-tuning (LoRA and friends) in the Hugging Face PEFT
format, with one training loop for every method.

The names below are imported on first use, so that ``python -m peftlab`` can choose the
process's memory allocator before torch loads (:mod:`peftlab.host.malloc`)."""

from importlib import import_module

__version__ = "0.1.0"

_WHERE = {
    "evaluate": ".api",
    "generate": ".api",
    "load_adapter": ".api",
    "merge": ".api",
    "plan": ".api",
    "train": ".api",
    "RunConfig": ".config",
    "build_config": ".config",
    "export": ".export",
    "save_adapter": ".formats.peft",
    "METHODS": ".methods",
    "get_method": ".methods",
    "merge_and_unload": ".model.inject",
}

__all__ = [
    "RunConfig",
    "METHODS",
    "build_config",
    "evaluate",
    "export",
    "generate",
    "get_method",
    "load_adapter",
    "merge",
    "merge_and_unload",
    "plan",
    "save_adapter",
    "train",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'peftlab' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
