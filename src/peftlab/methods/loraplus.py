"""LoRA+: a larger learning rate for B than for A (Hayou et al., 2024, arXiv 2402.12354).

With A and B trained at one learning rate, the update of a wide LoRA layer is inefficient
(paper §3-4): B should move faster, η_B = λ·η_A with λ > 1 (the paper suggests λ ≈ 2⁴).
The optimiser then gets these parameter groups, as in peft's ``create_loraplus_optimizer``:

- A: every adapter matrix but B, at ``lr`` (η_A) with the run's weight decay;
- B: the B matrices and every 1-D adapter parameter (DoRA's magnitude), at ``λ·lr``;
  biases and layer-norm parameters among them without weight decay;
- embedding: the factors of an adapted embedding layer, at their own small rate
  ``lr_embedding`` (peft's ``loraplus_lr_embedding``, 1e-6 by default). peftlab's LoRA
  adapts Linear layers only, so this group is empty unless an adapter wraps an embedding.

Each group's rate then follows the run's schedule (warm-up, cosine), so λ holds at every
step, and the groups are saved with the optimiser state, so a resumed run keeps them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import AdapterLayer


def loraplus_groups(
    model: nn.Module, lr: float, weight_decay: float, ratio: float, lr_embedding: float
) -> list[dict[str, Any]]:
    """The optimiser's parameter groups for LoRA+ (empty groups left out)."""
    b_ids, embedding_ids = set(), set()
    for _, layer in model.named_modules():
        if not isinstance(layer, AdapterLayer):
            continue
        for local, p in layer.adapter_params().items():
            if isinstance(layer.base_layer, nn.Embedding):
                embedding_ids.add(id(p))
            elif local.startswith("lora_B"):
                b_ids.add(id(p))
    no_decay_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()
    }
    groups: dict[str, list[nn.Parameter]] = {"A": [], "embedding": [], "B": [], "B_no_decay": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in embedding_ids:
            groups["embedding"].append(p)
        elif id(p) in b_ids or p.ndim == 1:
            decays = "bias" not in name and id(p) not in no_decay_ids
            groups["B" if decays else "B_no_decay"].append(p)
        else:
            groups["A"].append(p)
    settings = {
        "A": (lr, weight_decay),
        "embedding": (lr_embedding, weight_decay),
        "B": (lr * ratio, weight_decay),
        "B_no_decay": (lr * ratio, 0.0),
    }
    return [
        {"params": params, "lr": settings[key][0], "weight_decay": settings[key][1]}
        for key, params in groups.items()
        if params
    ]
