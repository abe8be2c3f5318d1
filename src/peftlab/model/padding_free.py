"""Padding-free attention: one flattened row of records, each attending only to itself.

A padding-free micro-batch (``data/batching.py``'s :func:`flatten`) is its records laid
end to end in one row of batch 1, with ``position_ids`` restarting at 0 at each record and
the records' boundaries as ``cu_seq_lens_q`` / ``cu_seq_lens_k`` (cumulative lengths,
flash-attention's varlen form) beside it. No position is padding, so the linear layers,
the adapters and the norms compute on real tokens only; attention must be kept within
each record (a block-diagonal causal mask), or the records would read each other.

This module is the seam that picks how, once per run (:func:`use_padding_free`):

- ``flash_attention_2`` where flash-attn is installed on CUDA: transformers hands the
  ``cu_seq_lens`` kwargs to ``flash_attn_varlen_func`` (Dao, "FlashAttention-2", 2023),
  no mask at all;
- ``peftlab_varlen`` elsewhere (the CPU): :func:`varlen_sdpa`, PyTorch's
  ``scaled_dot_product_attention`` run causally on each record's slice. Exactly the
  per-record attention, at the cost of the records' own lengths (sum of L_i^2); the
  block-diagonal mask transformers builds from packed ``position_ids`` for ``sdpa``
  costs (sum of L_i)^2 and a dense mask that size.

Batches that are not flattened (evaluation's padded batches, generation) go through the
same registered name to transformers' own SDPA with its usual padding mask, so one model
serves both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VARLEN_SDPA = "peftlab_varlen"
"""The attention implementation registered with transformers for the CPU path."""

FLASH_VARLEN = "flash_attention_2"

_registered = False
_last_bounds: tuple[torch.Tensor | None, list[int]] = (None, [])


def _bounds(cu_seq_lens: torch.Tensor) -> list[int]:
    """The records' boundaries as host ints, read once per forward (every layer gets the
    same tensor; on a GPU reading it is a wait for the device)."""
    global _last_bounds
    if _last_bounds[0] is not cu_seq_lens:
        _last_bounds = (cu_seq_lens, [int(b) for b in cu_seq_lens.tolist()])
    return _last_bounds[1]


def _record_mask(n: int, window: int | None, device) -> torch.Tensor | None:
    """A causal mask limited to ``window`` keys back (Mistral's sliding window), or None
    where plain causal attention is the same (the record fits in the window)."""
    if window is None or n <= window:
        return None
    i = torch.arange(n, device=device)
    d = i[:, None] - i[None, :]
    return (d >= 0) & (d < window)


def varlen_sdpa(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """softmax(q k^T * scaling + causal) v on each record of a flattened row on its own
    (query, key, value: batch 1 x heads x positions x head dim; returned as batch x
    positions x heads x head dim, as transformers' attention functions return it).
    Without ``cu_seq_lens_q`` (a padded batch) it is transformers' SDPA, unchanged."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        raise NotImplementedError(
            f"padding-free batches: {type(module).__name__}'s attention has logit soft-capping "
            "or sinks, which peftlab_varlen does not compute; train without --padding-free"
        )
    if query.shape[0] != 1:
        raise ValueError(f"a padding-free batch is one row, got {query.shape[0]}")
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    bounds = _bounds(cu_seq_lens_q)
    window = kwargs.get("sliding_window")
    p = dropout if module.training else 0.0
    parts = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        mask = _record_mask(e - s, window, query.device)
        parts.append(
            F.scaled_dot_product_attention(
                query[:, :, s:e],
                key[:, :, s:e],
                value[:, :, s:e],
                attn_mask=mask,
                dropout_p=p,
                is_causal=mask is None,
                scale=scaling,
            )
        )
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def _varlen_mask(*args, attention_mask=None, **kwargs):
    """The mask for ``peftlab_varlen``: none for a flattened row (its records are kept
    apart by :func:`varlen_sdpa`), SDPA's own for a padded batch."""
    from transformers.masking_utils import sdpa_mask

    q_length, kv_length = kwargs.get("q_length"), kwargs.get("kv_length")
    if attention_mask is None and q_length == kv_length and not kwargs.get("kv_offset"):
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> None:
    """Make ``peftlab_varlen`` known to transformers (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa)
    AttentionMaskInterface.register(VARLEN_SDPA, _varlen_mask)
    _registered = True


def padding_free_attention(device: torch.device) -> str:
    """The attention a padding-free run uses on ``device``: flash-attention's varlen
    kernel on CUDA where flash-attn is installed, else :func:`varlen_sdpa`."""
    if torch.device(device).type == "cuda":
        from transformers.utils import is_flash_attn_2_available

        if is_flash_attn_2_available():
            return FLASH_VARLEN
    return VARLEN_SDPA


def use_padding_free(model: nn.Module, device: torch.device) -> str:
    """Switch ``model`` to the attention that keeps a flattened row's records apart;
    returns its name. A model whose attention does not go through transformers'
    attention interface (so never sees the records' boundaries) is refused."""
    if not getattr(model, "_supports_attention_backend", False):
        raise ValueError(
            f"padding-free batches need a model whose attention takes transformers' "
            f"attention kwargs; {type(model).__name__} does not: train without --padding-free"
        )
    name = padding_free_attention(device)
    if name == VARLEN_SDPA:
        register()
    model.set_attn_implementation(name)
    return name
