"""The one training loop: resume equivalence, checkpointing, precision, NaN handling."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from safetensors.torch import load_file

from peftlab import build_config, train
from peftlab.training.checkpoint import list_checkpoints

from conftest import write_toy_dataset

train_mod = importlib.import_module("peftlab.training.loop")  # the package exports a train() too


def toy_config(tmp_path, model_dir, **kw):
    data = write_toy_dataset(tmp_path / "toy.json")
    base = dict(
        model=model_dir,
        dataset=data,
        output=str(tmp_path / "run"),
        max_steps=6,
        batch_size=4,
        lr=5e-3,
        r=4,
        alpha=8,
        dropout=0.1,
        mixed_precision="no",
        save_every=3,
        exact_match_limit=2,
        max_new_tokens=4,
        progress=False,
        max_length=64,
        seed=11,
    )
    base.update(kw)
    return build_config(**base)


def losses(run_dir):
    lines = [json.loads(x) for x in open(run_dir / "metrics.jsonl")]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


def train_interrupted_after(step_n: int, cfg, monkeypatch) -> None:
    """Train with ``cfg`` and stop (KeyboardInterrupt) right after step ``step_n``'s
    periodic work (evaluation, checkpoint), as an interrupted run would."""
    real_periodic = train_mod._periodic

    def crash(run, step, *a, **k):
        real_periodic(run, step, *a, **k)
        if step == step_n:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(train_mod, "_periodic", crash)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(train_mod, "_periodic", real_periodic)


def test_resume_gives_same_losses_and_weights(tmp_path, tiny_model_dir, monkeypatch):
    full = train(toy_config(tmp_path / "a", tiny_model_dir))
    ref_losses = losses(tmp_path / "a" / "run")
    assert len(ref_losses) == 6

    train_interrupted_after(3, toy_config(tmp_path / "b", tiny_model_dir), monkeypatch)
    run_b = tmp_path / "b" / "run"
    assert [p.name for p in list_checkpoints(run_b)] == ["step-000003"]
    resumed = train(toy_config(tmp_path / "b", tiny_model_dir, resume=True))
    got = losses(run_b)
    assert sorted(got) == list(range(1, 7)), "metrics.jsonl must hold each step once"
    for step in range(4, 7):
        assert got[step] == pytest.approx(ref_losses[step], abs=1e-6), step
    a = load_file(tmp_path / "a" / "run" / "adapter_model.safetensors")
    b = load_file(run_b / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert resumed["after"]["perplexity"] == pytest.approx(full["after"]["perplexity"], rel=1e-6)


def test_training_lowers_eval_loss_and_writes_outputs(tmp_path, tiny_model_dir):
    res = train(
        toy_config(tmp_path, tiny_model_dir, max_steps=40, lr=5e-2, dropout=0.0, save_every=0)
    )
    run = tmp_path / "run"
    assert res["after"]["eval_loss"] < res["before"]["eval_loss"] - 0.1
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "config.yaml",
        "metrics.jsonl",
        "results.json",
    ):
        assert (run / name).is_file(), name
    saved = json.loads((run / "results.json").read_text())
    assert (
        saved["params"]["trainable"] > 0 and saved["params"]["total"] > saved["params"]["trainable"]
    )
    assert "r: 4" in (run / "config.yaml").read_text()


def test_gradient_checkpointing_matches_plain_training(tmp_path, tiny_model_dir):
    kw = dict(max_steps=2, dropout=0.0, save_every=0)
    train(toy_config(tmp_path / "plain", tiny_model_dir, **kw))
    train(toy_config(tmp_path / "ckpt", tiny_model_dir, gradient_checkpointing=True, **kw))
    a, b = losses(tmp_path / "plain" / "run"), losses(tmp_path / "ckpt" / "run")
    assert a[2] == pytest.approx(b[2], abs=1e-5)
    wa = load_file(tmp_path / "plain" / "run" / "adapter_model.safetensors")
    wb = load_file(tmp_path / "ckpt" / "run" / "adapter_model.safetensors")
    # adapters really trained (B starts at zero) and identically with checkpointing
    assert any(wa[k].abs().max() > 0 for k in wa if "lora_B" in k)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-5


def test_bf16_autocast_keeps_adapter_weights_fp32(tmp_path, tiny_model_dir):
    res = train(toy_config(tmp_path, tiny_model_dir, max_steps=2, mixed_precision="bf16"))
    assert res["precision"] == "bf16"
    w = load_file(tmp_path / "run" / "adapter_model.safetensors")
    assert all(t.dtype == torch.float32 for t in w.values())
    assert all(torch.isfinite(t).all() for t in w.values())


@pytest.mark.parametrize("save_every", [1, 0])
def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, tiny_model_dir, save_every):
    cfg = toy_config(
        tmp_path,
        tiny_model_dir,
        max_grad_norm=0.0,
        save_every=save_every,
        warmup_ratio=0.0,
        dropout=0.0,
    )
    cfg.train.lr = 1e30  # past the option's range check: the fault under test
    with pytest.raises(FloatingPointError, match=r"loss is (nan|inf) at step \d") as e:
        train(cfg)
    found = list_checkpoints(tmp_path / "run")
    if not save_every:  # the message never claims a checkpoint that does not exist
        assert not found and "no checkpoint was written yet" in str(e.value)
        return
    assert found, "checkpoints written before the NaN must survive"
    assert f"the last checkpoint, {found[-1]}, is intact" in str(e.value)
    w = load_file(found[-1] / "adapter_model.safetensors")
    assert w and all(name.startswith("base_model.model.") for name in w)


def test_resume_without_checkpoint_is_an_error(tmp_path, tiny_model_dir):
    with pytest.raises(FileNotFoundError, match="no peftlab run to resume|no checkpoint"):
        train(toy_config(tmp_path, tiny_model_dir, resume=True))


def test_malformed_record_stops_training_naming_record(tmp_path, tiny_model_dir):
    bad = write_toy_dataset(tmp_path / "bad.json", bad=2)
    with pytest.raises(ValueError, match=r"bad\.json: record 5: field 'instruction' is empty"):
        train(toy_config(tmp_path, tiny_model_dir, dataset=bad))
    res = train(
        toy_config(tmp_path, tiny_model_dir, dataset=bad, skip_bad_records=True, max_steps=1)
    )
    assert res["after"]["eval_tokens"] > 0
