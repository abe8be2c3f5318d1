"""AdaLoRA's ``adapter_config.json`` as peft writes and reads it (arXiv 2303.10512;
peft's ``AdaLoraConfig``): the options, ``total_step`` and the ``rank_pattern`` of kept
triplets, keyed by each module's ``lora_E`` parameter."""

from __future__ import annotations

from typing import Any

# adapter_config.json keys that would change what the tensors mean; anything but the
# default is refused rather than loaded wrongly. (peft's AdaLoRA ignores alpha_pattern,
# use_rslora and lora_bias, so they need no check.)
_PEFT_DEFAULTS_WE_REQUIRE = {
    "bias": "none",
    "fan_in_fan_out": False,
    "layers_to_transform": None,
    "modules_to_save": None,
    "exclude_modules": None,
    "layer_replication": None,
    "use_dora": False,
}

# adapter_config.json key -> AdaloraConfig option.
_KEYS = {
    "init_r": "init_r",
    "target_r": "target_r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "tinit": "tinit",
    "tfinal": "tfinal",
    "deltaT": "deltaT",
    "beta1": "beta1",
    "beta2": "beta2",
    "orth_reg_weight": "orth_reg_weight",
    "target_modules": "target_modules",
}


def peft_config(c: Any, target_modules: Any, ada: dict[str, Any], total_step: int | None) -> dict:
    """The ``adapter_config.json`` of an AdaLoRA with options ``c`` and layers ``ada``
    (name -> ``AdaLoraLinear``)."""
    patterns = {n: lay.rank_pattern() for n, lay in ada.items()}
    rank_pattern = None  # peft writes null until its allocator has run
    if any(p is not None for p in patterns.values()):
        # Keyed like peft's: the lora_E parameter's name in the base model.
        rank_pattern = {
            f"{n}.lora_E": p if p is not None else [True] * ada[n].r for n, p in patterns.items()
        }
    # peft requires total_step > tinit + tfinal; an untrained adapter gets the least
    # valid value (it only matters to whoever trains further).
    total = total_step or c.tinit + c.tfinal + 1
    return {
        "peft_type": "ADALORA",
        "init_r": c.init_r,
        "target_r": c.target_r,
        "lora_alpha": c.alpha,
        "lora_dropout": c.dropout,
        "target_modules": target_modules,
        "tinit": c.tinit,
        "tfinal": c.tfinal,
        "deltaT": c.deltaT,
        "beta1": c.beta1,
        "beta2": c.beta2,
        "orth_reg_weight": c.orth_reg_weight,
        "total_step": total,
        "rank_pattern": rank_pattern,
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "use_dora": False,
    }


def peft_options(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """AdaloraConfig options from an ``adapter_config.json``; keys that would change what
    the tensors mean are refused unless at their default."""
    for key, default in _PEFT_DEFAULTS_WE_REQUIRE.items():
        value = cfg.get(key, default)
        if value not in (None, default):
            raise ValueError(
                f"{where} sets {key}={value!r}, which peftlab does not "
                f"support (expected {default!r})"
            )
    if cfg.get("target_modules") is None:
        raise ValueError(
            f"{where} has no target_modules (peftlab does not guess them from the model type)"
        )
    return {ours: cfg[theirs] for theirs, ours in _KEYS.items() if theirs in cfg}


def parse_rank_pattern(pattern: Any, where: str) -> dict[str, list[bool]]:
    """peft's ``rank_pattern`` (``<module>.lora_E[.<adapter>]`` → list of bools), by
    module name."""
    if not pattern:
        return {}
    if not isinstance(pattern, dict):
        raise ValueError(f"{where}: rank_pattern must be a mapping, got {type(pattern).__name__}")
    out = {}
    for key, kept in pattern.items():
        module, sep, _ = key.rpartition(".lora_E")
        if not sep or not isinstance(kept, list) or not all(isinstance(k, bool) for k in kept):
            raise ValueError(
                f"{where}: rank_pattern entry {key!r} must name a lora_E "
                "parameter and map it to a list of true/false"
            )
        out[module] = kept
    return out
