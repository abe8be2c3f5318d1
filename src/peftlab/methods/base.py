"""The one abstraction every method implements: an adapter layer and a method object.

An :class:`AdapterLayer` *wraps* a frozen ``base_layer`` (a module swap, not a
parametrization), so the parameter names come out PEFT-shaped
(``q_proj.base_layer.weight``, ``q_proj.lora_A.weight``) and a later packed 4-bit base
layer can be wrapped the same way.

A :class:`Method` knows its name, its PEFT type, its config dataclass and how to wrap a
module. The training loop, the comparison harness and the report talk to methods only
through this interface; nothing outside ``peftlab.methods`` branches on a method's name.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.options import make_config, option
from ..quant.linear4bit import Linear4bit
from .lean import LeanOps, PlainOps


class AdapterLayer(nn.Module):
    """A frozen ``base_layer`` plus trainable adapter parameters.

    Additive adapters (LoRA, AdaLoRA) implement :meth:`update` and :meth:`delta_weight`;
    the others (DoRA, IA³) override :meth:`forward`, :meth:`_merge` and :meth:`_unmerge`
    too. The base class owns the ``merged`` flag so that a second merge warns
    and does nothing, whatever the method.
    """

    ops: type[PlainOps] = LeanOps
    """The ops the forward is written with (:mod:`.lean`): :class:`~.lean.LeanOps`, the
    same values keeping less for backward, unless the lean-layers switch
    (:func:`peftlab.model.inject.use_lean_layers`) set :class:`~.lean.PlainOps`."""

    reads_base_weight: ClassVar[bool] = False
    """Whether the training forward reads the base weight other than through the base
    layer's own forward (DoRA's row norms): if so, it stays in its stored dtype while
    training (:func:`~peftlab.methods.frozen.castable_linears`)."""

    def __init__(self, base_layer: nn.Module):
        super().__init__()
        self.base_layer = base_layer
        self.merged = False
        # A packed (4-bit) base put aside while merged: merging swaps in a dense copy.
        self._packed_base: nn.Module | None = None
        for p in self.base_layer.parameters():
            p.requires_grad_(False)

    # -- what subclasses provide -------------------------------------------------------
    def update(self, x: torch.Tensor) -> torch.Tensor:
        """The additive term of an additive adapter (h = W0 x + update(x)); methods whose
        output is not additive (DoRA, IA³) override :meth:`forward` instead."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """h = W0 x + update(x)."""
        out = self.base_out(x)
        if self.merged:
            return out
        return out + self.update(x).to(out.dtype)

    def base_out(self, x: torch.Tensor) -> torch.Tensor:
        """W0 x + b, the frozen base layer's output."""
        return self.ops.frozen_linear(self.base_layer, x)

    def delta_weight(self) -> torch.Tensor:
        """The change this adapter makes to the base weight, in fp32, shaped like it."""
        raise NotImplementedError

    def _merge(self) -> None:
        """Additive adapters: W <- W + delta_weight() (others override)."""
        w = self.base_layer.weight
        w.add_(self.delta_weight().to(w.dtype))

    def _unmerge(self) -> None:
        w = self.base_layer.weight
        w.sub_(self.delta_weight().to(w.dtype))

    def low_rank_factors(self) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """``(A, B, s)`` when the update is exactly ``s·B A`` on W0 (what llama.cpp's LoRA
        adapters apply); None for adapters of another form (the default)."""
        return None

    # -- shared behaviour ---------------------------------------------------------------
    def merged_weight(self) -> torch.Tensor:
        """W0 with this adapter folded in, in fp32, computed on a copy: the layer itself
        (a packed 4-bit base included) is left as it is. One layer's dense weight is the
        only large allocation, so a model can be merged and written layer by layer."""
        dense = nn.Linear(1, 1, bias=False)  # its weight is replaced just below
        dense.weight = nn.Parameter(
            self.base_weight().detach().float().clone(), requires_grad=False
        )
        if getattr(self.base_layer, "bias", None) is not None:
            dense.bias = nn.Parameter(
                self.base_layer.bias.detach().float().clone(), requires_grad=False
            )
        base, packed = self.base_layer, self._packed_base
        self.base_layer, self._packed_base = None, None  # not deep-copied
        try:
            work = copy.deepcopy(self)
        finally:
            self.base_layer, self._packed_base = base, packed
        work.base_layer, work.merged = dense, False
        work.float().merge()
        return work.base_layer.weight.detach()

    @property
    def weight(self) -> torch.Tensor:
        """The base weight, so code that reads ``module.weight`` keeps working."""
        return self.base_layer.weight

    def base_device(self) -> torch.device:
        """Device of the base layer (a 4-bit base has buffers but no weight parameter)."""
        tensors = itertools.chain(self.base_layer.parameters(), self.base_layer.buffers())
        return next(tensors).device

    def base_weight(self) -> torch.Tensor:
        """W0 as a dense out×in tensor: the base layer's weight, or, for a packed base
        (:class:`~peftlab.quant.linear4bit.Linear4bit`), a fresh dequantized copy that
        the caller should let go of as soon as it can."""
        if isinstance(self.base_layer, Linear4bit):
            return self.base_layer.dequantized_weight()
        return self.base_layer.weight

    def base_weight_key(self) -> tuple:
        """Changes whenever W0 does (storage, dtype, device, shape, in-place version), to
        key caches of values derived from it, such as DoRA's ‖W0‖²_row."""
        if isinstance(self.base_layer, Linear4bit):
            return self.base_layer.cache_key()
        w = self.base_layer.weight
        return (w.data_ptr(), w.dtype, w.device, tuple(w.shape), w._version)

    def adapter_params(self) -> dict[str, nn.Parameter]:
        """Trainable adapter parameters by their local name (``lora_A.weight``, ...)."""
        return {
            name: p for name, p in self.named_parameters() if not name.startswith("base_layer.")
        }

    def export_params(self) -> dict[str, torch.Tensor]:
        """Tensors to save in the PEFT format, by local name; default: the parameters.
        (AdaLoRA overrides this to cut its matrices to the ranks it kept.)"""
        return dict(self.adapter_params())

    def merge(self) -> None:
        """Fold the adapter into the base weight; a second call warns and does nothing."""
        if self.merged:
            warnings.warn(f"{type(self).__name__} is already merged; merge() did nothing")
            return
        with torch.no_grad():
            self._densify_base()
            self._merge()
        self.merged = True

    def unmerge(self) -> None:
        """Undo :meth:`merge`; on an unmerged layer it warns and does nothing."""
        if not self.merged:
            warnings.warn(f"{type(self).__name__} is not merged; unmerge() did nothing")
            return
        with torch.no_grad():
            self._unmerge()
            self._restore_packed_base()
        self.merged = False

    def merge_extra_bytes(self) -> int:
        """Memory a merge needs beyond the model: the dense fp32 copy of a packed base."""
        if isinstance(self.base_layer, Linear4bit):
            return 4 * self.base_layer.weight_numel
        return 0

    def _densify_base(self) -> None:
        """Before merging into a 4-bit base: swap in a dense fp32 copy of it, so the
        update is added in fp32 and never re-quantized (re-quantizing W0 + ΔW to NF4 would
        add an error as large as ΔW itself; QLoRA merges into the dequantized weight).
        The packed layer is kept for :meth:`unmerge`, which restores it bit for bit."""
        if isinstance(self.base_layer, Linear4bit):
            # A plain attribute, not a submodule: registered, its bias would count as an
            # adapter parameter and its buffers would enter the state dict while merged.
            object.__setattr__(self, "_packed_base", self.base_layer)
            self.base_layer = self.base_layer.to_linear(torch.float32)

    def _restore_packed_base(self) -> None:
        if self._packed_base is not None:
            device = self.base_layer.weight.device  # follow a .to() made while merged
            self.base_layer = self._packed_base.to(device)
            self._packed_base = None


@dataclasses.dataclass
class MethodConfig:
    """Options shared by every method."""

    target_modules: Any = option(
        "all-linear",
        "Linear modules to adapt, as in PEFT: names matched as the full module name or its "
        "dotted suffix (comma-separated on the CLI), a regular expression matched against "
        "the full name, or 'all-linear' (every Linear but the output head)",
    )


class Method:
    """A parameter-efficient fine-tuning method.

    Subclasses set the class attributes and implement :meth:`wrap`,
    :meth:`to_peft_config` and :meth:`from_peft_config`.
    """

    name: ClassVar[str]
    peft_type: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    merge_tolerance: ClassVar[float] = 1e-4
    """Largest logit difference (fp32) accepted between merged and unmerged models."""
    omit_peft_keys: ClassVar[tuple[str, ...]] = ()
    """Generic adapter_config.json keys this method's peft config class does not accept
    (IA3Config has no ``layers_to_transform``); left out when saving."""
    auto_detect: ClassVar[bool] = True
    """Whether an adapter_config.json is enough to recognise this method. QLoRA saves
    plain LoRA files, so it is False there: such adapters load as LoRA unless the caller
    names the method (``load_adapter_into(..., method="qlora")``)."""
    local_options: ClassVar[tuple[str, ...]] = ()
    """Options that adapter_config.json does not record because they describe the base,
    not the adapter (QLoRA's ``double_quant``); a loader may pass them again."""
    supports_sharding: ClassVar[bool] = True
    """Whether the method trains under FSDP, where each process holds a shard of every
    parameter and of its gradient (hooks that read whole gradients cannot)."""
    saves_full_model: ClassVar[bool] = False
    """Whether the method trains the base weights themselves (full fine-tuning), so a run
    saves the whole model (transformers ``save_pretrained``, safetensors) in its output
    directory instead of a PEFT adapter: there are no adapter layers, nothing to merge,
    and the directory loads as a model on its own."""
    memory_first: ClassVar[bool] = False
    """Whether the method exists to save memory (QLoRA): where a run has a choice
    between memory and speed, it then favours memory."""
    rewrites_base: ClassVar[bool] = False
    """Whether wrapping a layer changes its base weight (PiSSA and OLoRA leave the
    residual W − s·B0 A0 there): the adapter is then saved re-expressed for the original
    base, so saving and loading again is equal within fp32 rounding, not bit for bit."""
    compare_by_default: ClassVar[bool] = True
    """Whether ``peftlab compare`` runs the method when no method list is given; one that
    is not (full fine-tuning: far more memory and time) is added with its own flag,
    ``peftlab compare --<name>``."""

    def __init__(self, config: MethodConfig | None = None, **options: Any):
        if config is None:
            config = make_config(self.config_cls, options, where=f"method {self.name!r}")
        elif options:
            raise TypeError("pass either a config or options, not both")
        self.config = config

    # -- building ------------------------------------------------------------------------
    def base_loader(self) -> Any:
        """A callable ``(path, dtype=, device=, trust_remote_code=) -> model`` that loads
        the base model in the form this method needs (QLoRA: quantized while it loads),
        or None for the ordinary loader. Default: None."""
        return None

    def prepare_model(self, model: nn.Module) -> None:
        """Transform the base model before the target modules are wrapped (QLoRA
        quantizes its Linear layers to NF4 here); module names must stay the same.
        Default: nothing."""

    def before_wrap(self, model: nn.Module, targets: list[str]) -> None:
        """Called once after :meth:`prepare_model`, with every resolved target, before any
        is wrapped: state that all of a model's adapter layers share is made here (VeRA's
        random projections, sized to the largest target). Default: nothing."""

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        """Return an adapter layer wrapping ``module`` (whose full name is ``name``)."""
        raise NotImplementedError

    def target_modules(self) -> Any:
        """What :func:`peftlab.model.inject.find_targets` should match; None: wrap no module."""
        return self.config.target_modules

    def trainable_base_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters of the base model itself that this method trains directly (full
        fine-tuning: all of them); :func:`peftlab.model.inject.inject` freezes every other base
        parameter. Default: none."""
        return []

    def check_base(self, config: Any, targets: dict[str, nn.Module]) -> None:
        """Validate the base model before its weights load, from its transformers
        ``config`` and its target modules built on the meta device (shapes only); raise
        ValueError. Default: nothing."""

    def check_targets(self, targets: list[str]) -> None:
        """Validate the resolved target names before any module is swapped (IA³ checks
        its feedforward modules against them); raise ValueError. Default: nothing."""

    # -- training hooks (defaults: nothing) ----------------------------------------------
    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        """The optimiser's parameter groups; default: one group of every trainable
        parameter at ``lr`` (LoRA-family methods split them for LoRA+)."""
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the training loss (AdaLoRA's orthogonality); default none."""
        return None

    def on_step_end(self, model: nn.Module, step: int, plan: Any) -> dict | None:
        """Called after every optimiser step, before the gradients are cleared; may return
        metrics (JSON-serialisable) to log in ``metrics.jsonl``."""
        return None

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Training state beyond the parameters (AdaLoRA's importance EMAs and masks),
        saved in checkpoints so a resumed run continues exactly; default none."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise ValueError(
                f"method {self.name!r} keeps no state, but the checkpoint "
                f"has {len(tensors)} state tensors"
            )

    # -- PEFT format -----------------------------------------------------------------------
    def shared_tensors(self) -> dict[str, torch.Tensor]:
        """Frozen tensors kept once per model rather than per layer, saved in
        ``adapter_model.safetensors`` under ``base_model.<name>`` (as peft saves VeRA's
        ``vera_A``/``vera_B``) and loaded back into place. Default: none."""
        return {}

    def peft_key(self, local_name: str) -> str:
        """Name a parameter gets in ``adapter_model.safetensors`` (after the module path)."""
        return local_name

    def to_peft_config(
        self, target_modules: Any, layers: dict[str, AdapterLayer]
    ) -> dict[str, Any]:
        """Method-specific keys of ``adapter_config.json``; ``layers``: the model's adapter
        layers by module name (AdaLoRA derives its ``rank_pattern`` from them)."""
        raise NotImplementedError

    @classmethod
    def accepts_peft_config(cls, cfg: dict[str, Any]) -> bool:
        """Whether an ``adapter_config.json`` describes an adapter of this method."""
        return cfg.get("peft_type") == cls.peft_type

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> Method:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The resolved options, for saving beside results."""
        return {"method": self.name, **dataclasses.asdict(self.config)}


def check_rank(r: int, module: nn.Module, name: str, option_name: str) -> None:
    """A rank above the layer's smaller side adds parameters and no expressiveness (and a
    huge one would allocate gigabytes): refuse before allocating, naming the layer."""
    dims = (getattr(module, "in_features", None), getattr(module, "out_features", None))
    if None not in dims and r > min(dims):
        raise ValueError(
            f"option {option_name}={r} is larger than layer {name} allows "
            f"({dims[0]} inputs, {dims[1]} outputs): use at most {min(dims)}"
        )
