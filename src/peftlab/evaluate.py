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

from .data.alpaca import Example, collate, epoch_batches, format_prompt
from .loss import response_nll

_TRAILING = string.punctuation + string.whitespace


def normalize_answer(text: str) -> str:
    """Lower-case, collapse whitespace, strip surrounding quotes and trailing punctuation."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(_TRAILING + "\"'")


@torch.no_grad()
def perplexity(model: nn.Module, examples: list[Example], pad_id: int, batch_size: int = 16,
               device: torch.device | str = "cpu", autocast=None) -> dict[str, float]:
    """Eval loss (mean NLL per target token), perplexity and the token count."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    lengths = [len(e.input_ids) for e in examples]
    try:
        for idx in epoch_batches(lengths, batch_size, seed=0, epoch=0, shuffle=False):
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx],
                                                        pad_id).items()}
            with autocast() if autocast else contextlib.nullcontext():
                nll, n = response_nll(model, batch)
            total += float(nll)
            tokens += n
    finally:
        model.train(was_training)
    loss = total / max(tokens, 1)
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "eval_tokens": tokens}


@torch.no_grad()
def generate(model: nn.Module, tokenizer, prompts: list[str], max_new_tokens: int = 64,
             device: torch.device | str = "cpu", batch_size: int = 16,
             autocast=None) -> list[str]:
    """Greedy completions of raw prompts (batched, left-padded)."""
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends at the right end of each row
    outs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt",
                            padding=True).to(device)
            with autocast() if autocast else contextlib.nullcontext():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     use_cache=True, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
            new = gen[:, enc["input_ids"].shape[1]:]
            outs += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return outs


def exact_match(model: nn.Module, tokenizer, records: list[dict], limit: int = 64,
                max_new_tokens: int = 48, device="cpu", autocast=None) -> dict:
    """Share of exactly checkable records (``exact: true``) answered exactly.

    Returns ``exact_match: None`` when the dataset marks no record as exactly checkable.
    """
    checkable = [r for r in records if r.get("exact")][:limit]
    if not checkable:
        return {"exact_match": None, "exact_n": 0, "samples": []}
    prompts = [format_prompt(r["instruction"], r["input"]) for r in checkable]
    answers = generate(model, tokenizer, prompts, max_new_tokens, device, autocast=autocast)
    hits = [normalize_answer(a) == normalize_answer(r["output"])
            for a, r in zip(answers, checkable)]
    samples = [{"instruction": r["instruction"], "input": r["input"], "expected": r["output"],
                "generated": a, "correct": h}
               for r, a, h in list(zip(checkable, answers, hits))[:5]]
    return {"exact_match": sum(hits) / len(hits), "exact_n": len(hits), "samples": samples}
