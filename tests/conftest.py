"""Shared fixtures: offline, seeded, tiny random Llama models."""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Trackio reads its store's place once, when imported: one per test session, never the
# user's cache (tests tell their runs apart by project name).
os.environ["TRACKIO_DIR"] = tempfile.mkdtemp(prefix="peftlab-trackio-")
os.environ["WANDB_MODE"] = "offline"  # W&B never reaches a server from a test

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

TINY = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    tie_word_embeddings=False,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def make_tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A 2-layer random Llama (fp32, eval mode) built from a fixed seed."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY, **overrides}))
    return model.eval()


@pytest.fixture
def tiny_llama():
    return make_tiny_llama()


@pytest.fixture
def tiny_inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, TINY["vocab_size"], (2, 12), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def write_toy_dataset(path, n: int = 48, bad: int = 0) -> str:
    """A learnable Alpaca-format .json file: copy a word, some records with input."""
    import json

    words = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "orbit"]
    recs = []
    for i in range(n):
        w = words[i % len(words)]
        if i % 3 == 0:
            recs.append(
                {"instruction": "Repeat the input word.", "input": w, "output": w, "exact": True}
            )
        else:
            recs.append(
                {
                    "instruction": f"Say the word {w} {1 + i % 4} times.",
                    "input": "",
                    "output": " ".join([w] * (1 + i % 4)),
                }
            )
    for j in range(bad):
        recs.insert(5 + j, {"instruction": "", "output": "x"})
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(recs, f)
    return str(path)


@pytest.fixture(scope="session")
def embedded_tokenizer():
    from peftlab.model.load import load_tokenizer, resolve_model_path

    return load_tokenizer(resolve_model_path(None))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer):
    """A tiny random Llama with the embedded model's tokenizer, saved as a model dir."""
    d = tmp_path_factory.mktemp("tiny-llama")
    tok = embedded_tokenizer
    model = make_tiny_llama(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(os.environ["TRACKIO_DIR"], ignore_errors=True)
