"""Tokenised examples and how they become batches, for every data format.

An :class:`Example` is token ids with its label mask (from positions, never from the pad
id: the embedded model's pad and EOS share id 2, and the EOS after a response must be
learned). Batching is a pure function of lengths, seed and epoch, so a resumed run sees
the very batches the interrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100
"""Label value that PyTorch's cross-entropy skips (``ignore_index``)."""

LENGTH_GROUP_CHUNK = 32
"""Batches per shuffled chunk whose records are sorted by length before batching: long
enough to keep padding small, short enough to keep batches random across the epoch."""


@dataclass
class Example:
    input_ids: list[int]
    n_prompt: int
    """Leading positions that are prompt (no loss)."""
    truncated: bool = False
    mask: list[bool] | None = None
    """Per-position loss flags where targets are not one tail (a conversation's
    assistant turns); None: every position from ``n_prompt`` on."""

    @property
    def n_targets(self) -> int:
        if self.mask is not None:
            return sum(self.mask)
        return len(self.input_ids) - self.n_prompt

    @property
    def n_loss(self) -> int:
        """Positions that carry loss once collated (``target_count``: labels from position
        1 on; position 0 has no preceding token to predict it)."""
        if self.mask is not None:
            return sum(self.mask[1:])
        return len(self.input_ids) - max(self.n_prompt, 1)


@dataclass
class Encoded:
    examples: list[Example]
    records: list[dict]
    """The records kept, aligned with ``examples``."""
    truncated: int = 0
    dropped: int = 0
    """Records whose prompt alone filled ``max_length`` (no response token left)."""
    bad: int = 0
    """Records the chat template refuses, skipped (``skip_bad_records``)."""


def epoch_batches(
    lengths: list[int],
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    group: bool = True,
) -> list[list[int]]:
    """Index batches for one epoch, a pure function of (lengths, seed, epoch).

    Length-grouped: shuffle, cut into chunks of ``LENGTH_GROUP_CHUNK`` batches, sort each
    chunk by length, batch it, then shuffle the batches. Padding then costs little while
    the order stays random. Without ``shuffle`` the batches are sorted by length (eval);
    without ``group`` they are consecutive records of the shuffled order.
    """
    n = len(lengths)
    if not shuffle:
        order = sorted(range(n), key=lambda i: -lengths[i])
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    if not group:
        return [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    chunk = batch_size * LENGTH_GROUP_CHUNK
    batches = []
    for start in range(0, n, chunk):
        part = sorted(perm[start : start + chunk], key=lambda i: -lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


def token_pieces(examples: list[Example], budget: int) -> list[list[Example]]:
    """One micro-batch's rows regrouped into pieces of at most ``budget`` tokens (rows x
    the piece's longest row), longest rows first, for gradient accumulation inside the
    batch. Rows are independent, so the summed loss and its gradient are the whole
    batch's; only one piece's activations are alive at a time, and each piece pads to its
    own longest row. A row longer than the budget is a piece of its own. A batch within
    the budget (or ``budget`` 0) stays whole and in its order."""
    width = max((len(e.input_ids) for e in examples), default=0)
    if budget <= 0 or len(examples) * width <= budget:
        return [examples]
    pieces: list[list[Example]] = []
    for e in sorted(examples, key=lambda e: -len(e.input_ids)):
        if pieces and (len(pieces[-1]) + 1) * len(pieces[-1][0].input_ids) <= budget:
            pieces[-1].append(e)
        else:
            pieces.append([e])
    return pieces


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example; labels are IGNORE on prompt and padding."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        if e.mask is not None:
            keep = torch.tensor(e.mask, dtype=torch.bool)
            labels[row, :n] = torch.where(keep, ids[row, :n], IGNORE)
        else:
            labels[row, e.n_prompt : n] = ids[row, e.n_prompt : n]
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def flatten(examples: list[Example], pad_id: int) -> dict:
    """The padding-free form of :func:`collate`'s batch: the records end to end in one
    row (batch 1), ``position_ids`` restarting at 0 at each record, and the records'
    boundaries as flash-attention's varlen kwargs (``cu_seq_lens_q``/``_k``: cumulative
    lengths; ``max_length_q``/``_k``: the longest). No ``attention_mask``: no position is
    padding, and the attention (``model/padding_free.py``) keeps each record to itself.

    Each record's first label is IGNORE: in the row, the position before it is the
    previous record's last token, which must not be trained to predict it (the padded
    batch never predicts a row's first token either). The same targets, in the same
    order, as ``collate``'s. ``pad_id`` is unused (nothing is padded); kept so both
    collators are called alike."""
    del pad_id
    padded = collate(examples, 0)
    lengths = [len(e.input_ids) for e in examples]
    keep = padded["attention_mask"].bool()
    labels = padded["labels"].clone()
    labels[:, 0] = IGNORE
    cu = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    return {
        "input_ids": padded["input_ids"][keep][None],
        "labels": labels[keep][None],
        "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }


def model_inputs(batch: dict) -> dict:
    """What the model's forward takes from a batch, padded or flattened: all but labels."""
    return {k: v for k, v in batch.items() if k != "labels"}


def target_count(batch: dict[str, torch.Tensor]) -> int:
    """Tokens that carry loss: labels at positions 1.. that are not IGNORE."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())
