"""Token-level negative log-likelihood on response tokens only.

Two levers keep the output head cheap (``LossOptions``):

- ``response_only_head``: the head is applied only at positions whose next token carries
  loss, so prompt positions never pay for a full-vocabulary projection (with a 49k
  vocabulary that projection is a large share of a small model's compute).
- ``chunk``: the cross-entropy runs over ``chunk`` positions at a time and recomputes
  each chunk's logits in backward (``ChunkedHeadNLL``), so the (tokens x vocabulary)
  logits, their fp32 copy and their gradient never exist whole; autograd keeps only the
  hidden states and one float per position.

The sum, not the mean, is returned with the token count, so losses over micro-batches
and processes combine exactly (perplexity = exp(total NLL / total target tokens)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.modules import output_head
from ..data.batching import IGNORE, model_inputs
from ..model.kernels import liger_head_nll
from .distributed import is_parallel_wrapper, unwrap_parallel, wrapper_logits

# Architectures whose causal-LM head is exactly ``lm_head(final hidden state)``: no logit
# soft-capping or scaling (Gemma-2, Cohere and others have them), so projecting a subset
# of positions gives the same logits as the model's own forward.
PLAIN_HEAD_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "phi3", "smollm3", "olmo", "olmo2"}
)


@dataclass(frozen=True)
class LossOptions:
    response_only_head: bool = True
    chunk: int = 256
    """Positions per cross-entropy chunk; 0 materialises all logits at once."""
    fused_head: bool = False
    """The head's loss by Liger's fused linear cross-entropy (``--kernels``; CUDA)."""

    def __post_init__(self):
        if self.chunk < 0:
            raise ValueError(
                f"loss_chunk must be 0 (off) or a positive number of positions, not {self.chunk}"
            )


DEFAULT_LOSS = LossOptions()


def _plain_head_parts(model: nn.Module):
    mtype = getattr(getattr(model, "config", None), "model_type", None)
    if mtype not in PLAIN_HEAD_MODEL_TYPES:
        return None
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = output_head(model)
    if decoder is None or head is None or decoder is model:
        return None
    return decoder, head


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return t.dtype


class ChunkedHeadNLL(torch.autograd.Function):
    """sum_i -log softmax(h_i W^T)[t_i], chunk by chunk, logits recomputed in backward.

    The matmuls run in ``dtype`` (the autocast dtype, as the head would under autocast);
    log-softmax, the loss and the softmax gradient are fp32. Saves ``hidden`` and the
    per-position log-sum-exp; the gradient reaches ``hidden`` and, if it is trainable,
    ``weight`` (accumulated in fp32).
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, dtype: torch.dtype):
        w = weight.to(dtype)
        lse = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            logits = (hidden[s : s + chunk].to(dtype) @ w.t()).float()
            lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, targets[s : s + chunk, None]).squeeze(1)
            total += (lse[s : s + chunk] - picked).sum()
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk, ctx.dtype = chunk, dtype
        return total

    @staticmethod
    def backward(ctx, grad_total):
        hidden, weight, targets, lse = ctx.saved_tensors
        chunk, dtype = ctx.chunk, ctx.dtype
        w = weight.to(dtype)
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if ctx.needs_input_grad[1]
            else None
        )
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s : s + chunk].to(dtype)
            # d/dlogits of (lse - logit_t) = softmax - onehot(t)
            g = (h @ w.t()).float().sub_(lse[s : s + chunk, None]).exp_()
            g.scatter_add_(1, targets[s : s + chunk, None], torch.full_like(g[:, :1], -1.0))
            g = g.mul_(grad_total).to(dtype)
            if grad_h is not None:
                grad_h[s : s + chunk] = (g @ w).to(hidden.dtype)
            if grad_w is not None:
                grad_w += (g.t() @ h).float()
        return grad_h, (grad_w.to(weight.dtype) if grad_w is not None else None), None, None, None


def head_nll(
    head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk: int, fused: bool = False
) -> torch.Tensor:
    """Summed NLL of ``targets`` under ``head(hidden)``, fused (Liger's kernel, ``fused``)
    or chunked when the head allows it (a bias-free ``nn.Linear``; an adapter on the head
    takes the plain path)."""
    plain_linear = type(head) is nn.Linear and head.bias is None
    if fused and plain_linear:
        return liger_head_nll(hidden, head.weight, targets, _compute_dtype(hidden))
    if chunk > 0 and plain_linear:
        return ChunkedHeadNLL.apply(hidden, head.weight, targets, chunk, _compute_dtype(hidden))
    # The loss is taken in fp32 even under autocast: a bf16 log-softmax over ~50k classes
    # loses about two decimal digits of the loss.
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


@dataclass(frozen=True)
class Targets:
    """Where a batch's loss is: the flat indices, over its batch x length positions, of
    the positions whose next token carries loss, those next tokens, and how many. Found
    where the labels are: on the host, before a batch moves to the GPU, finding them
    costs no device sync (a boolean index on the device waits for one)."""

    index: torch.Tensor
    ids: torch.Tensor
    count: int

    @classmethod
    def of(cls, labels: torch.Tensor) -> Targets:
        rows, cols = (labels[:, 1:] != IGNORE).nonzero(as_tuple=True)  # row-major order
        return cls(rows * labels.shape[1] + cols, labels[rows, cols + 1], int(rows.numel()))

    def to(self, device: torch.device) -> Targets:
        return Targets(
            self.index.to(device, non_blocking=True),
            self.ids.to(device, non_blocking=True),
            self.count,
        )


def _at(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` of a (batch, length, ...) tensor's flattened positions: what the
    boolean index ``t[:, :-1][keep]`` gives, without waiting for the device."""
    return t.reshape(-1, *t.shape[2:]).index_select(0, index)


def response_nll(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    opts: LossOptions = DEFAULT_LOSS,
    targets: Targets | None = None,
) -> tuple[torch.Tensor, int]:
    """(sum of NLL over target tokens, number of target tokens) for a collated batch,
    padded (``collate``) or padding-free (``flatten``: the same targets); ``targets``:
    :meth:`Targets.of` its labels, found on the host (default: here)."""
    if targets is None:
        targets = Targets.of(batch["labels"])
    # Padded, or flattened (``position_ids``, ``cu_seq_lens``). No key/value cache: a
    # training forward never reads one (and with one transformers stops telling packed
    # records apart from their position_ids).
    inputs = {**model_inputs(batch), "use_cache": False}
    # A DDP/FSDP wrapper's own forward must run (DDP's forward arms the gradient
    # all-reduce, FSDP's gathers the sharded weights): never call its decoder directly.
    wrapped = is_parallel_wrapper(model)
    parts = _plain_head_parts(model) if opts.response_only_head and not wrapped else None
    if parts is not None:
        decoder, head = parts
        hidden = decoder(**inputs).last_hidden_state
        nll = head_nll(head, _at(hidden, targets.index), targets.ids, opts.chunk, opts.fused_head)
        return nll, targets.count
    if wrapped:
        keep = batch["labels"][:, 1:] != IGNORE
        plain = opts.response_only_head and _plain_head_parts(unwrap_parallel(model)) is not None
        logits = wrapper_logits(model, batch, keep, plain)
    else:
        logits = _at(model(**inputs).logits, targets.index)
    return F.cross_entropy(logits.float(), targets.ids, reduction="sum"), targets.count


@torch.no_grad()
def response_nll_rows(
    model: nn.Module, batch: dict[str, torch.Tensor], opts: LossOptions = DEFAULT_LOSS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation only: each row's summed NLL over its target tokens, and its count (the
    per-record figures a paired bootstrap over eval records needs). Padded batches only
    (``collate``): evaluation is not padding-free. Same logits as
    :func:`response_nll`; the head runs in chunks, nothing is kept for backward."""
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    rows = keep.nonzero()[:, 0]
    parts = None if is_parallel_wrapper(model) else _plain_head_parts(model)
    if parts is not None and opts.response_only_head:
        decoder, head = parts
        hidden = decoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state[:, :-1][keep]
        step = opts.chunk or hidden.shape[0] or 1
        nll = (
            torch.cat(
                [
                    F.cross_entropy(
                        head(hidden[s : s + step]).float(),
                        targets[keep][s : s + step],
                        reduction="none",
                    )
                    for s in range(0, hidden.shape[0], step)
                ]
            )
            if hidden.shape[0]
            else hidden.new_zeros(0, dtype=torch.float32)
        )
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[
            :, :-1
        ][keep]
        nll = F.cross_entropy(logits.float(), targets[keep], reduction="none")
    n_rows = targets.shape[0]
    sums = torch.zeros(n_rows, dtype=torch.float64, device=nll.device).index_add_(
        0, rows, nll.double()
    )
    return sums, keep.sum(dim=1)
