"""Checks of a new adapter against the base model's shape, made from its ``config.json``
before any weight loads: a rank above a layer's size or a method that cannot take the
base (PiSSA on a 4-bit checkpoint) stops in a second, not after minutes of loading."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..methods.base import Method
from .inject import find_targets


def check_before_load(path: str, method: Method, trust_remote_code: bool = False) -> None:
    """Build the model on the ``meta`` device from ``path``'s config (no memory, no
    weights), resolve the method's targets on it and let the method check them
    (:meth:`Method.check_base`); raise ValueError naming the option and the layer. A
    config that cannot be read here is left for the real load to report."""
    spec = method.target_modules()
    if spec is None:
        return
    skeleton = _meta_model(path, trust_remote_code)
    if skeleton is None:
        return
    targets = find_targets(skeleton, spec)
    config = skeleton.config
    method.check_base(config, {name: skeleton.get_submodule(name) for name in targets})


def _meta_model(path: str, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        quantized = getattr(config, "quantization_config", None)
        with contextlib.suppress(AttributeError):
            del config.quantization_config  # the meta skeleton needs no quantizer
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        model.config.quantization_config = quantized
        return model
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return None
    finally:
        hf_logging.set_verbosity(level)
