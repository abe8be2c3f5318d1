"""Where a training step's memory goes, measured: the tensors autograd saves for backward,
by the kind of layer that saved them, beside weights, trainable state and the process's
resident set (``bench/memory.py`` prints it; the planner's activation model is checked
against it in the tests).

Each saved tensor is counted once (by its storage) and credited to the innermost module
running when autograd saved it. Tensors that share storage with a parameter are weights,
not activations; a saved tensor shaped like the running Linear's weight (in another
dtype) is an autocast copy of that weight.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
from torch import nn

KINDS = (
    "attention",
    "projection inputs",
    "adapter",
    "mlp activation",
    "norms",
    "residual / rotary / other",
    "autocast weight copies",
    "output head and loss",
)


def _kind(path: list[tuple[str, nn.Module]], t: torch.Tensor) -> str:
    """The kind of a saved tensor from the stack of running modules (outermost first)."""
    from ..methods.base import AdapterLayer

    names = [n for n, _ in path]
    mods = [m for _, m in path]
    if not any(".layers." in n or n.endswith("embed_tokens") for n in names) or any(
        n.endswith("lm_head") for n in names
    ):
        return "output head and loss"
    inner_name, inner = path[-1]
    weight = getattr(inner, "weight", None)
    if (
        isinstance(weight, torch.Tensor)
        and t.dim() == 2
        and weight.dim() == 2
        and tuple(t.shape) in (tuple(weight.shape), tuple(weight.shape)[::-1])
    ):
        return "autocast weight copies"  # (or its transpose, as some kernels keep it)
    in_adapter = [isinstance(m, AdapterLayer) for m in mods]
    if any(in_adapter):
        at = max(i for i, a in enumerate(in_adapter) if a)
        inside = names[at + 1 :] if at + 1 < len(names) else []
        if inside and inside[0].endswith("base_layer"):
            return "projection inputs"
        return "adapter"
    if isinstance(inner, nn.Linear) or inner_name.endswith("_proj"):
        return "projection inputs"
    low = inner_name.lower()
    if "norm" in low:
        return "norms"
    if "act" in low or "mlp" in low:
        return "mlp activation"
    if "attn" in low or "attention" in low:
        return "attention"
    return "residual / rotary / other"


@contextlib.contextmanager
def saved_tensor_census(model: nn.Module):
    """Count the bytes autograd saves inside the block, by kind; yields the dict (filled
    as the block runs). Run it without gradient checkpointing: a checkpointed layer saves
    through its own hooks, which hide its tensors from these."""
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    param_storages |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen: set[int] = set()
    by_kind: dict[str, int] = defaultdict(int)
    stack: list[tuple[str, nn.Module]] = []
    handles = []

    def enter(name, module):
        stack.append((name, module))

    def leave():
        if stack:
            stack.pop()

    for name, module in model.named_modules():  # the hooks return None: nothing changes
        handles.append(module.register_forward_pre_hook(lambda m, a, _n=name: enter(_n, m)))
        handles.append(module.register_forward_hook(lambda m, a, o: leave(), always_call=True))

    def pack(t: torch.Tensor):
        try:
            ptr = t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            return t
        if ptr in param_storages or ptr in seen:
            return t
        seen.add(ptr)
        by_kind[_kind(list(stack), t)] += t.untyped_storage().nbytes()
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield by_kind
    finally:
        for h in handles:
            h.remove()


def tensor_bytes(model: nn.Module) -> dict[str, int]:
    """Frozen weights (parameters and buffers that do not train) and trainable parameters,
    in bytes as stored."""
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    frozen += sum(b.numel() * b.element_size() for b in model.buffers())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return {"frozen weights": frozen, "trainable parameters": trainable}
