"""Alpaca prompt format and tokenisation with a response-only label mask.

The label mask is built from positions (where the prompt ends), never from the pad id:
the embedded model's pad and EOS share id 2, and the EOS after the response must be
learned.
"""

from __future__ import annotations

from .batching import Encoded, Example

# The Stanford Alpaca prompt template (Taori et al., 2023), with and without input.
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def format_prompt(instruction: str, input: str = "") -> str:
    if input.strip():
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def prompt_ids(tokenizer, rec: dict) -> list[int]:
    return tokenizer(format_prompt(rec["instruction"], rec["input"]))["input_ids"]


def encode(tokenizer, records: list[dict], max_length: int) -> Encoded:
    """Tokenise prompt and response separately (so the boundary is exact), append EOS,
    truncate to ``max_length`` from the end, and count what was cut."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; cannot end responses")
    out = Encoded([], [])
    for rec in records:
        p = prompt_ids(tokenizer, rec)
        r = tokenizer(rec["output"], add_special_tokens=False)["input_ids"]
        ids = p + r + [tokenizer.eos_token_id]
        truncated = len(ids) > max_length
        if len(p) >= max_length:
            out.dropped += 1
            continue
        out.truncated += truncated
        out.examples.append(Example(ids[:max_length], len(p), truncated))
        out.records.append(rec)
    return out
