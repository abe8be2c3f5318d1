"""Full fine-tuning: every weight of the base model trained directly, no adapter layers.

The reference the parameter-efficient methods are measured against (``peftlab compare
--full``): AdamW updates W itself, h = W x with W trainable, so the "adapter" of a run is
the whole model. It is saved with transformers' ``save_pretrained`` (safetensors, plus the
tokenizer) into the run directory, which then loads as a plain model
(``from_pretrained(run_dir)``, ``peftlab eval --adapter run_dir``); there is nothing to
merge, and no PEFT format exists for it.

The weights are held in fp32 whatever ``model.dtype`` says (master weights). Autocast
still runs the matmuls in bf16/fp16; but stored in bf16, a weight near 1 moves only in
steps of 2⁻⁷, so most of AdamW's updates (about ``lr`` in size) would round away. The
memory this takes (weights, gradients and two AdamW moments, 16 bytes per parameter in
fp32) is the cost a comparison should show.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from ..core.options import option
from .base import AdapterLayer, Method


@dataclasses.dataclass
class FullConfig:
    """Full fine-tuning options (names as in the CLI and YAML). Not a
    :class:`~peftlab.methods.base.MethodConfig`: no module is targeted, every weight is."""

    train_embeddings: bool = option(
        True,
        "Full fine-tuning: also train the input token embeddings (and an output head "
        "tied to them); false keeps them as loaded",
    )


class FullFineTune(Method):
    """Full fine-tuning: every base weight trained (fp32 master weights), saved whole."""

    name = "full"
    peft_type = ""  # no PEFT format: see saves_full_model
    config_cls = FullConfig
    merge_tolerance = 0.0  # nothing is merged
    saves_full_model = True
    compare_by_default = False

    def target_modules(self) -> Any:
        return None  # wrap nothing: the base weights themselves train

    def prepare_model(self, model: nn.Module) -> None:
        # fp32 master weights (see the module docstring); a no-op on an fp32 base.
        model.float()

    def trainable_base_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        frozen = set()
        if not self.config.train_embeddings:
            emb = model.get_input_embeddings()
            frozen = {id(p) for p in emb.parameters()} if emb is not None else set()
        return [p for p in model.parameters() if id(p) not in frozen]

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        raise TypeError("full fine-tuning wraps no module (target_modules() is None)")

    def to_peft_config(
        self, target_modules: Any, layers: dict[str, AdapterLayer]
    ) -> dict[str, Any]:
        raise NotImplementedError(
            "full fine-tuning saves the whole model with save_pretrained, not a PEFT adapter"
        )

    @classmethod
    def accepts_peft_config(cls, cfg: dict[str, Any]) -> bool:
        return False  # an adapter_config.json never describes a full fine-tune

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> FullFineTune:
        raise ValueError(
            "a full fine-tune has no adapter_config.json: its directory is a "
            "model (config.json + model.safetensors); load it as one"
        )
