"""QLoRA: LoRA on a frozen 4-bit NF4 base (Dettmers et al., 2023, arXiv 2305.14314).

    h = dequant(W0_NF4) x + s · B A x            (paper Eq. 5; LoRA as in ``lora.py``)

Before the adapters are added, :meth:`QLoRA.prepare_model` replaces every ``nn.Linear``
of the model except the output head by a :class:`~peftlab.quant.linear4bit.Linear4bit`
(NF4, block 64, double-quantized statistics: ≈ 4.13 bits per weight). The embeddings
and the output head stay as they are, as in the paper; every other Linear of a causal
LM lives in its decoder blocks. Then the targeted 4-bit layers get LoRA adapters (fp32,
as always in peftlab); with ``use_dora`` they get DoRA instead (QDoRA), whose weight
norm reads the dequantized base weight.

On disk a QLoRA adapter *is* a LoRA (or DoRA) adapter: ``peft_type: "LORA"``, the same
keys, so peft loads it onto a bitsandbytes-4bit or a full-precision base. The file cannot
say it was trained on a 4-bit base, so :func:`~peftlab.formats.peft.load_adapter_into`
loads it as plain LoRA on whatever base it is given unless asked for ``method="qlora"``
(peftlab's own commands ask when the run's ``config.yaml`` says ``method: qlora``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..core.modules import linear_names_but_head
from ..core.options import make_config, option
from ..core.runtime import parse_dtype
from ..quant.kernels import check_kernel
from ..quant.linear4bit import Linear4bit, quantize_linears
from ..quant.stream import load_quantized
from .base import AdapterLayer, check_rank
from .dora import DoraLinear
from .loftq import approximation_error, loftq_factors
from .lora import LoRA, LoraConfig, LoraLinear


@dataclasses.dataclass
class QloraConfig(LoraConfig):
    """QLoRA options: LoRA's, plus how the base is quantized."""

    use_dora: bool = option(False, "DoRA adapters on the 4-bit base (QDoRA) instead of LoRA")
    compute_dtype: str = option(
        "auto",
        "dtype the 4-bit layers compute in: float32, "
        "bfloat16, float16, or auto (the base model's "
        "dtype); autocast overrides it",
    )
    double_quant: bool = option(
        True,
        "Quantize the NF4 block scales to 8 bits too "
        "(QLoRA's double quantization: 4.13 instead of "
        "4.5 bits per weight)",
    )
    nf4_kernel: str = option(
        "auto",
        "Dequantization kernel of the 4-bit layers: torch "
        "(pure PyTorch), bitsandbytes (its C++/CUDA kernel "
        "when installed), or auto (torch unless "
        "PEFTLAB_NF4_KERNEL says otherwise); all give the "
        "same bits",
    )
    stream_load: bool = option(
        True,
        "Quantize the checkpoint tensor by tensor while it "
        "loads (peak memory: the 4-bit model plus one "
        "tensor); off: load it whole, then quantize",
    )

    loftq_iter: int | None = option(
        None,
        "LoftQ (arXiv 2310.08659): alternate NF4 quantization and a rank-r SVD this many "
        "times so the 4-bit base plus the initial adapter approximate the full-precision "
        "weight (loads the model whole first); unset: plain QLoRA (B = 0)",
    )

    def __post_init__(self):
        super().__post_init__()
        if self.loftq_iter is not None:
            if int(self.loftq_iter) != self.loftq_iter or self.loftq_iter < 1:
                raise ValueError(
                    f"QLoRA option loftq_iter must be an integer >= 1, got {self.loftq_iter!r} "
                    "(leave it unset for plain QLoRA)"
                )
            if self.use_dora:
                raise ValueError("QLoRA options loftq_iter and use_dora cannot be combined")
            self.loftq_iter = int(self.loftq_iter)
        if self.compute_dtype != "auto":
            parse_dtype(self.compute_dtype)  # an unknown name is an error here, early
        check_kernel(self.nf4_kernel)


class QLoRA(LoRA):
    """LoRA (or DoRA) on an NF4-quantized base model."""

    name = "qlora"
    peft_type = "LORA"
    config_cls = QloraConfig
    auto_detect = False  # its files are LoRA files (see the module docstring)
    memory_first = True  # the point of a 4-bit base
    # How the base was quantized and computes: not in the adapter files, but needed to
    # rebuild the same base when the adapter is loaded again.
    local_options = ("double_quant", "compute_dtype", "stream_load", "nf4_kernel")

    def _compute_dtype(self):
        c = self.config.compute_dtype
        return None if c == "auto" else parse_dtype(c)

    def base_loader(self):
        """Quantize-while-loading (:func:`peftlab.quant.stream.load_quantized`) unless
        ``stream_load`` is off; the model it gives is what :meth:`prepare_model` makes."""
        if not self.config.stream_load or self.config.loftq_iter:
            return None  # LoftQ reads the full-precision weights of the targets

        def load(path, dtype, device=None, trust_remote_code=False, reclaim=None):
            try:
                return load_quantized(
                    path,
                    dtype,
                    self._compute_dtype(),
                    self.config.double_quant,
                    device or "cpu",
                    trust_remote_code,
                    reclaim,
                )
            except ValueError as e:
                raise ValueError(
                    f"{e} (QLoRA option stream_load: false loads the whole "
                    "model with transformers, then quantizes it)"
                ) from None

        return load

    def prepare_model(self, model: nn.Module) -> None:
        """Quantize every ``nn.Linear`` but the output head to NF4, in place (layers
        already in 4 bits, as :meth:`base_loader` makes them, are left alone)."""
        if self.config.loftq_iter:  # kept (not copied) until wrap() factors them
            for name in self._targets:
                module = model.get_submodule(name)
                if isinstance(module, nn.Linear):
                    self._dense[name] = module.weight.detach()
        quantize_linears(
            model, linear_names_but_head(model), self._compute_dtype(), self.config.double_quant
        )
        for module in model.modules():
            if isinstance(module, Linear4bit):
                module.kernel = self.config.nf4_kernel

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self._targets: list[str] = []
        self._dense: dict[str, torch.Tensor] = {}  # LoftQ: full-precision target weights
        self.loftq_errors = {"qlora": 0.0, "loftq": 0.0}
        """‖W − start‖_F summed over the adapted layers: QLoRA's NF4(W) and LoftQ's."""

    def check_targets(self, targets: list[str]) -> None:
        self._targets = list(targets)

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        if not isinstance(module, (nn.Linear, Linear4bit)):
            raise TypeError(f"QLoRA can wrap Linear layers only; {name} is {type(module).__name__}")
        c = self.config
        check_rank(c.r, module, name, "r")
        layer_cls = DoraLinear if c.use_dora else LoraLinear
        layer = layer_cls(module, c.r, c.scaling, c.dropout)  # both read a 4-bit base
        dense = self._dense.pop(name, None)
        # (On the meta device, as the memory planner builds models, there is nothing to
        # factor: LoftQ changes values, not shapes.)
        if dense is not None and isinstance(module, Linear4bit) and not dense.is_meta:
            self._loftq(layer, module, dense)
        return layer

    @torch.no_grad()
    def _loftq(self, layer: LoraLinear, module: Linear4bit, w: torch.Tensor) -> None:
        """Re-quantize the base to LoftQ's Q_T and start A, B at its factors."""
        c = self.config
        plain = module.dequantized_weight(torch.float32)  # NF4(W): QLoRA's start
        self.loftq_errors["qlora"] += approximation_error(w, plain, None)
        to_quantize, a, b = loftq_factors(w, c.r, c.scaling, c.loftq_iter, c.double_quant)
        module.load_weight(to_quantize)
        layer.lora_A.weight.copy_(a)
        layer.lora_B.weight.copy_(b)
        start = module.dequantized_weight(torch.float32)
        self.loftq_errors["loftq"] += approximation_error(w, start, layer.delta_weight())

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.config.loftq_iter:
            out["loftq_error"] = dict(self.loftq_errors)
        return out

    def to_peft_config(self, target_modules: Any, layers=None) -> dict[str, Any]:
        cfg = {**super().to_peft_config(target_modules, layers), "use_dora": self.config.use_dora}
        if self.config.loftq_iter:  # the base is LoftQ's Q_T: a loader must rebuild it
            loftq = {"loftq_bits": 4, "loftq_iter": self.config.loftq_iter}
            cfg.update(init_lora_weights="loftq", loftq_config=loftq)
        return cfg

    @classmethod
    def accepts_peft_config(cls, cfg: dict[str, Any]) -> bool:
        return cfg.get("peft_type") == "LORA"  # LoRA or DoRA files, when asked by name

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> QLoRA:
        opts = cls.lora_options_from_peft(cfg)
        opts["use_dora"] = bool(cfg.get("use_dora", False))
        if cfg.get("init_lora_weights") == "loftq":
            opts["loftq_iter"] = (cfg.get("loftq_config") or {}).get("loftq_iter", 1)
        return cls(make_config(cls.config_cls, opts, where="QLoRA adapter_config.json"))
