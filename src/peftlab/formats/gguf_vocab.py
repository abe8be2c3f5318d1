"""A Hugging Face tokenizer as GGUF tokenizer metadata (``tokenizer.ggml.*``).

Byte-level BPE tokenizers (GPT-2 style: SmolLM2, Llama 3) are written as llama.cpp's
``gpt2`` model with their vocabulary and merges; SentencePiece-style BPE tokenizers
(Llama 2, Mistral) as its ``llama`` model, with byte tokens marked and scores from the
vocabulary order. Added tokens keep their kind (special: control; others: user-defined),
and the special ids, BOS behaviour and chat template go with them.
"""

from __future__ import annotations

import json

from ..data.chat import end_of_turn_ids

# gguf's TokenType values (kept here so the module reads without the package).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def tokenizer_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("GGUF export needs a fast (tokenizers) tokenizer")
    return json.loads(backend.to_str())


def _is_byte_level(tj: dict) -> bool:
    text = json.dumps({k: tj.get(k) for k in ("pre_tokenizer", "decoder")})
    return "ByteLevel" in text


def pre_tokenizer_name(tj: dict) -> str:
    """llama.cpp's name for how text is split before BPE, recognised from what the
    tokenizer does (not from the model's name): SmolLM's single digits before the GPT-2
    split, Llama 3's regex, GPT-2's own regex, else llama.cpp's default."""
    pre = tj.get("pre_tokenizer") or {}
    text = json.dumps(pre)
    if '"Digits"' in text and '"individual_digits": true' in text:
        return "smollm"
    if r"\\p{N}{1,3}" in text:
        return "llama-bpe"
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    return "default"


def vocabulary(tokenizer, n_vocab: int) -> tuple[list[str], list[int], list[float] | None]:
    """Tokens in id order (padded to the embedding's ``n_vocab`` rows), their types, and
    scores for a SentencePiece-style model (None for byte-level BPE)."""
    tj = tokenizer_json(tokenizer)
    byte_level = _is_byte_level(tj)
    vocab = tokenizer.get_vocab()
    n = max(n_vocab, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [UNUSED] * n
    for tok, i in vocab.items():
        tokens[i], types[i] = tok, NORMAL
        if not byte_level and len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
            types[i] = BYTE
    for i, added in tokenizer.added_tokens_decoder.items():
        types[i] = CONTROL if added.special else USER_DEFINED
    if tokenizer.unk_token_id is not None and not byte_level:
        types[tokenizer.unk_token_id] = UNKNOWN
    scores = None if byte_level else [-float(i) for i in range(n)]
    return tokens, types, scores


def merges(tokenizer) -> list[str]:
    raw = tokenizer_json(tokenizer).get("model", {}).get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in raw]


def adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def add_tokenizer_metadata(w, tokenizer, n_vocab: int) -> None:
    tj = tokenizer_json(tokenizer)
    byte_level = _is_byte_level(tj)
    tokens, types, scores = vocabulary(tokenizer, n_vocab)
    w.add_tokenizer_model("gpt2" if byte_level else "llama")
    w.add_tokenizer_pre(pre_tokenizer_name(tj) if byte_level else "default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    if scores is not None:
        w.add_token_scores(scores)
    w.add_token_merges(merges(tokenizer))
    for add, tid in (
        (w.add_bos_token_id, tokenizer.bos_token_id),
        (w.add_eos_token_id, tokenizer.eos_token_id),
        (w.add_unk_token_id, tokenizer.unk_token_id),
        (w.add_pad_token_id, tokenizer.pad_token_id),
    ):
        if tid is not None:
            add(tid)
    w.add_add_bos_token(adds_bos(tokenizer))
    if tokenizer.chat_template:
        w.add_chat_template(tokenizer.chat_template)
        eot = end_of_turn_ids(tokenizer)[0]
        if eot != tokenizer.eos_token_id:
            w.add_eot_token_id(eot)
