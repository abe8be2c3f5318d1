"""Token-level negative log-likelihood on response tokens only.

The output head is applied only at positions whose next token carries loss, so the
prompt's positions never pay for a full-vocabulary projection (with a 49k vocabulary that
projection is a large share of a small model's compute). The sum, not the mean, is
returned with the token count, so losses over micro-batches and processes can be
combined exactly (perplexity = exp(total NLL / total target tokens)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data.alpaca import IGNORE
from .modules import output_head

# Architectures whose causal-LM head is exactly ``lm_head(final hidden state)``: no logit
# soft-capping or scaling (Gemma-2, Cohere and others have them), so projecting a subset
# of positions gives the same logits as the model's own forward.
PLAIN_HEAD_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "phi3", "smollm3", "olmo", "olmo2"}
)


def _plain_head_parts(model: nn.Module):
    mtype = getattr(getattr(model, "config", None), "model_type", None)
    if mtype not in PLAIN_HEAD_MODEL_TYPES:
        return None
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = output_head(model)
    if decoder is None or head is None or decoder is model:
        return None
    return decoder, head


def response_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(sum of NLL over target tokens, number of target tokens) for a collated batch."""
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = targets != IGNORE
    n = int(keep.sum())
    parts = _plain_head_parts(model)
    if parts is not None:
        decoder, head = parts
        hidden = decoder(input_ids=batch["input_ids"],
                         attention_mask=batch["attention_mask"]).last_hidden_state
        logits = head(hidden[:, :-1][keep])
    else:
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits[:, :-1][keep]
    # The loss is taken in fp32 even under autocast: a bf16 log-softmax over ~50k classes
    # loses about two decimal digits of the loss.
    nll = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return nll, n
