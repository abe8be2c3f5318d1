"""Fused kernels from Liger-Kernel (``--kernels``), one seam, CUDA only.

Liger-Kernel (Hsu et al., 2024, arXiv 2410.10989) ships Triton kernels for the parts of a
Llama-family layer that eager PyTorch runs as several launches each: RMSNorm, rotary
position embeddings, the SwiGLU product, and a fused linear cross-entropy that never
holds the (tokens x vocabulary) logits. peftlab uses them through Liger's own public API
and nothing of ours: ``apply_liger_kernel_to_<family>(model=...)`` patches the model's
own module instances (names and parameters unchanged, so adapters, checkpoints and the
PEFT files are as without it), and ``LigerFusedLinearCrossEntropyLoss`` is the loss
head's fused path (``training/loss.py``, ``head_nll``).

:func:`resolve_kernels` is the rule (a pure function of what was asked, the device, the
model's family and whether Liger is installed); ``auto`` means Liger on CUDA when it is
installed and the family is one it patches, else none; ``liger`` asked where it cannot
run is an error that says why. The run prints the choice and saves it in
``config.yaml``. The plain path is the model as transformers builds it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

CHOICES = ("auto", "liger", "none")
INSTALL = "pip install 'peftlab[gpu]'"
LIGER_FAMILIES = {
    "llama": "apply_liger_kernel_to_llama",
    "mistral": "apply_liger_kernel_to_mistral",
    "qwen2": "apply_liger_kernel_to_qwen2",
    "qwen3": "apply_liger_kernel_to_qwen3",
}
"""Model types whose layers Liger patches (RMSNorm, RoPE, SwiGLU), by its function."""


@dataclass(frozen=True)
class KernelChoice:
    name: str
    """``liger`` or ``none``."""
    why: str

    @property
    def fused_head(self) -> bool:
        """Whether the loss head takes Liger's fused linear cross-entropy."""
        return self.name == "liger"


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def resolve_kernels(
    asked: str, device_type: str, model_type: str | None, installed: bool
) -> KernelChoice:
    """The kernels a run uses; ``liger`` asked where Liger cannot run raises ValueError."""
    if asked not in CHOICES:
        raise ValueError(f"option 'kernels' must be one of {', '.join(CHOICES)}, got {asked!r}")
    if asked == "none":
        return KernelChoice("none", "asked")
    why_not = None
    if device_type != "cuda":
        why_not = f"Liger's Triton kernels need a CUDA device; this run is on {device_type}"
    elif not installed:
        why_not = f"liger-kernel is not installed ({INSTALL})"
    elif model_type not in LIGER_FAMILIES:
        why_not = (
            f"Liger patches {', '.join(sorted(LIGER_FAMILIES))} models here, not "
            f"model type {model_type!r}"
        )
    if why_not is None:
        return KernelChoice("liger", "auto: CUDA, installed" if asked == "auto" else "asked")
    if asked == "liger":
        raise ValueError(f"--kernels liger: {why_not} (use --kernels auto or none)")
    return KernelChoice("none", f"auto: {why_not}")


def apply_kernels(model: nn.Module, choice: KernelChoice) -> None:
    """Patch ``model``'s RMSNorms, rotary embedding and SwiGLU MLPs with Liger's (only
    when ``choice`` is liger). The loss head is not patched here: peftlab's loss calls
    :func:`liger_head_nll` itself (the model's own forward never computes the loss)."""
    if choice.name != "liger":
        return
    from liger_kernel.transformers import monkey_patch

    apply = getattr(monkey_patch, LIGER_FAMILIES[model.config.model_type])
    apply(
        rope=True,
        rms_norm=True,
        swiglu=True,
        cross_entropy=False,
        fused_linear_cross_entropy=False,
        model=model,
    )


def liger_head_nll(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Summed NLL of ``targets`` under ``hidden · weightᵀ`` by Liger's fused linear
    cross-entropy (chunked logits, fp32 softmax inside the kernel), in ``dtype``."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")
    return loss(weight.to(dtype), hidden.to(dtype), targets).float()


def describe(choice: KernelChoice) -> str:
    return f"kernels: {choice.name} ({choice.why})"
