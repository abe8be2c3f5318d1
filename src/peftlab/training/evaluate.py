"""Evaluation: token-weighted perplexity, exact match, and generation.

Perplexity is exp(total NLL / total target tokens) over the whole eval set, never a mean
of per-batch means (batches of different lengths would be weighted wrongly).
"""

from __future__ import annotations

import contextlib
import math
import re
import string

import torch
from torch import nn

from ..data.batching import Example, collate, epoch_batches
from ..data.prompting import PromptFormat
from ..model.inference import inference_weights
from .distributed import Dist
from .loss import DEFAULT_LOSS, LossOptions, response_nll_rows

_TRAILING = string.punctuation + string.whitespace


def normalize_answer(text: str) -> str:
    """Lower-case, collapse whitespace, strip surrounding quotes and trailing punctuation."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(_TRAILING + "\"'")


@torch.no_grad()
def perplexity(
    model: nn.Module,
    examples: list[Example],
    pad_id: int,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    autocast=None,
    loss_options: LossOptions = DEFAULT_LOSS,
    dist: Dist | None = None,
) -> dict[str, float]:
    """Eval loss (mean NLL per target token), perplexity and the token count.

    With several processes (``dist``) each evaluates every ``world``-th batch and the
    sums of NLL and tokens are added up over the processes, so every record counts
    exactly once. Under FSDP (each forward a collective) a process short of a batch runs
    a stand-in forward so that all run the same number."""
    dist = dist or Dist()
    was_training = model.training
    model.eval()
    n = len(examples)
    rec_nll, rec_tok = [0.0] * n, [0] * n
    lengths = [len(e.input_ids) for e in examples]
    batches = epoch_batches(lengths, batch_size, seed=0, epoch=0, shuffle=False)
    mine = dist.shard(batches)
    rounds = -(-len(batches) // dist.world) if dist.sharded else len(mine)
    try:
        for r in range(rounds):
            idx = mine[r] if r < len(mine) else batches[0]
            batch = {
                k: v.to(device) for k, v in collate([examples[i] for i in idx], pad_id).items()
            }
            with autocast() if autocast else contextlib.nullcontext():
                sums, counts = response_nll_rows(model, batch, loss_options)
            if r < len(mine):
                for i, s, c in zip(idx, sums.tolist(), counts.tolist()):
                    rec_nll[i], rec_tok[i] = s, int(c)
    finally:
        model.train(was_training)
    if dist.world > 1:  # each record was scored by one process: the sums gather them
        both = dist.sum(rec_nll + rec_tok)
        rec_nll, rec_tok = both[:n], [int(c) for c in both[n:]]
    total, tokens = sum(rec_nll), sum(rec_tok)
    loss = total / max(tokens, 1)
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"evaluation gave a loss of {loss} over {tokens} tokens: the model's or the "
            "adapter's weights or options are not finite (an alpha or a weight of NaN or "
            "inf?); nothing was written"
        )
    # Per record, in eval order: what a paired bootstrap between methods resamples.
    return {
        "eval_loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "eval_tokens": tokens,
        "record_nll": rec_nll,
        "record_tokens": rec_tok,
    }


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 64,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    autocast=None,
    add_special_tokens: bool = True,
    stop_ids: list[int] | None = None,
    streamer=None,
) -> list[str]:
    """Greedy completions of raw prompts (batched, left-padded). Chat-template prompts
    carry their special tokens as text (``add_special_tokens=False``) and end at the
    template's end-of-turn token (``stop_ids``)."""
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends at the right end of each row
    outs: list[str] = []
    try:
        # Frozen weights cast or dequantized once for the whole call, not per token.
        with (
            autocast() if autocast else contextlib.nullcontext(),
            inference_weights(model, torch.device(device)),
        ):
            for start in range(0, len(prompts), batch_size):
                enc = tokenizer(
                    prompts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=add_special_tokens,
                ).to(device)
                gen = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=stop_ids or tokenizer.eos_token_id,
                    streamer=streamer,
                )
                new = gen[:, enc["input_ids"].shape[1] :]
                outs += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return outs


def exact_match(
    model: nn.Module,
    tokenizer,
    records: list[dict],
    limit: int = 64,
    max_new_tokens: int = 48,
    device="cpu",
    autocast=None,
    prompt: PromptFormat | None = None,
) -> dict:
    """Share of exactly checkable records (``exact: true``) answered exactly, each asked
    in the run's prompt format (a conversation: its turns before the final answer).

    Returns ``exact_match: None`` when the dataset marks no record as exactly checkable.
    """
    prompt = prompt or PromptFormat("alpaca", tokenizer)
    checkable = [r for r in records if r.get("exact")][:limit]
    if not checkable:
        return {"exact_match": None, "exact_n": 0, "samples": []}
    prompts = [prompt.prompt(r) for r in checkable]
    answers = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens,
        device,
        autocast=autocast,
        add_special_tokens=prompt.add_special_tokens,
        stop_ids=prompt.stop_ids(),
    )
    expected = [prompt.answer(r) for r in checkable]
    hits = [normalize_answer(a) == normalize_answer(e) for a, e in zip(answers, expected)]
    # exact_hits: per checkable record, in order (paired comparisons between methods)
    samples = [
        {**_question(r), "expected": e, "generated": a, "correct": h}
        for r, e, a, h in list(zip(checkable, expected, answers, hits))[:5]
    ]
    return {
        "exact_match": sum(hits) / len(hits),
        "exact_n": len(hits),
        "samples": samples,
        "exact_hits": hits,
    }


def _question(rec: dict) -> dict:
    if "messages" in rec:
        return {"instruction": rec["messages"][-2]["content"], "input": ""}
    return {"instruction": rec["instruction"], "input": rec["input"]}


MERGE_CHECK_EXTRA_BYTES = 2 * 2**30
"""Above this much extra memory (a 4-bit base's dense copies), the end-of-training merge
check is skipped rather than risk running out of memory on a large model."""


def first_batches(
    examples: list[Example], pad_id: int, n_batches: int = 2, batch_size: int = 4
) -> list[dict]:
    """The first ``n_batches`` eval batches of ``batch_size`` records (in eval order), on
    which a changed model's logits are compared with the model's before the change."""
    return [
        collate(examples[i : i + batch_size], pad_id)
        for i in range(0, min(len(examples), n_batches * batch_size), batch_size)
    ]


@torch.no_grad()
def batch_logits(model: nn.Module, batch: dict, device) -> torch.Tensor:
    """The model's logits on ``batch``, in fp32."""
    return model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits.float()


@torch.no_grad()
def logit_drift(
    model: nn.Module, batches: list[dict], refs: list[torch.Tensor], device
) -> dict[str, float]:
    """How far the model's logits are from ``refs`` (one per batch, the logits before a
    change such as a merge): ``max_logit_diff``, the largest |logit - ref|, and
    ``max_abs_logit``, the largest |ref|, both over real positions only (padding's
    logits are never used, so they may differ freely)."""
    worst = scale = 0.0
    for batch, ref in zip(batches, refs):
        got = batch_logits(model, batch, device)
        mask = batch["attention_mask"].to(device)[..., None].bool()
        worst = max(worst, float(((got - ref).abs() * mask).max()))
        scale = max(scale, float((ref.abs() * mask).max()))
    return {"max_logit_diff": worst, "max_abs_logit": scale}


@torch.no_grad()
def merge_check(
    model: nn.Module,
    examples: list[Example],
    pad_id: int,
    device="cpu",
    n_batches: int = 2,
    batch_size: int = 4,
) -> dict:
    """Largest logit difference (real positions only) between the model with its adapter
    merged into the base weights and unmerged, on a few eval batches; merges in place and
    unmerges again, so it needs no second copy of the model (and, batch by batch, holds
    one batch's reference logits at a time)."""
    from ..model.inject import adapter_layers, merge, unmerge

    if next(adapter_layers(model), None) is None:  # full fine-tuning trains W itself
        return {"max_logit_diff": None, "skipped": "nothing to merge (no adapter layers)"}
    extra = sum(layer.merge_extra_bytes() for _, layer in adapter_layers(model))
    if extra > MERGE_CHECK_EXTRA_BYTES:
        return {
            "max_logit_diff": None,
            "skipped": f"merging in place would need "
            f"{extra / 2**30:.1f} GiB more (dense copies of packed weights); "
            "`peftlab merge` writes the merged model instead",
        }
    was_training = model.training
    model.eval()
    res = {"max_logit_diff": 0.0, "max_abs_logit": 0.0}
    try:
        for batch in first_batches(examples, pad_id, n_batches, batch_size):
            ref = batch_logits(model, batch, device)
            merge(model)
            try:
                one = logit_drift(model, [batch], [ref], device)
            finally:
                unmerge(model)
            res = {k: max(v, one[k]) for k, v in res.items()}
    finally:
        model.train(was_training)
    return res


def merge_within(diff: float, max_abs_logit: float, tolerance: float) -> bool:
    """Whether a merged model's logits are close enough: ``tolerance`` is absolute for
    logits up to 1 and relative above (fp32 rounding grows with the logits' size and the
    depth; a 30-layer model's logits of ~20 differ by ~1e-4 from summation order alone)."""
    return diff <= tolerance * max(1.0, max_abs_logit)


def evaluate_session(s, cfg, with_exact: bool, dist: Dist | None = None) -> dict:
    """Perplexity over the whole eval set (sharded over the processes, sums reduced) and,
    with ``with_exact``, exact match: on the main process only, or on every process under
    FSDP, where each forward is a collective."""
    t, dist = cfg.train, dist or Dist()
    out = perplexity(
        s.model,
        s.eval_data.examples,
        s.tokenizer.pad_token_id,
        t.eval_batch_size,
        s.device,
        s.autocast(),
        s.loss_options,
        dist=dist,
    )
    if with_exact and (dist.is_main or dist.sharded):
        out.update(
            exact_match(
                s.model,
                s.tokenizer,
                s.eval_data.records,
                t.exact_match_limit,
                t.max_new_tokens,
                s.device,
                s.autocast(),
                s.prompt,
            )
        )
    return out
