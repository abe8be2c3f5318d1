"""Full fine-tuning (method "full"): every base weight trains through the one loop, the
run directory is the whole model (reloaded for eval and generate, nothing to merge),
resume is exact, and ``peftlab compare --full`` adds a row with every column filled."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import peftlab
from peftlab import build_config, train
from peftlab.cli import main
from peftlab.compare.harness import default_methods, read_rows
from peftlab.compare.report import DASH, table_row
from peftlab.methods import METHODS
from peftlab.training.checkpoint import list_checkpoints
from test_train import train_interrupted_after

from conftest import write_toy_dataset

train_mod = importlib.import_module("peftlab.training.loop")  # the package exports a train() too


def full_config(tmp_path, model_dir, **kw):
    data = write_toy_dataset(tmp_path / "toy.json")
    base = dict(
        method="full",
        model=model_dir,
        dataset=data,
        output=str(tmp_path / "run"),
        max_steps=6,
        batch_size=4,
        lr=3e-3,
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


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("full")
    res = train(full_config(tmp, tiny_model_dir, max_steps=10, save_every=0))
    return tmp / "run", res


def test_full_trains_every_weight_and_lowers_the_loss(trained, tiny_model_dir):
    run, res = trained
    p = res["params"]
    assert p["trainable"] == p["total"] > 0 and p["share_pct"] == 100.0
    assert res["after"]["eval_loss"] < res["before"]["eval_loss"] - 0.1
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    tuned = load_file(str(run / "model.safetensors"))
    assert tuned.keys() == base.keys()
    assert all(t.dtype == torch.float32 for t in tuned.values())  # fp32 master weights
    assert all(not torch.equal(tuned[k], base[k]) for k in base), "every weight trains"
    assert res["adapter_bytes"] == (run / "model.safetensors").stat().st_size
    assert not (run / "adapter_config.json").exists()
    assert res["merge_check"]["max_logit_diff"] is None
    assert res["merge_check"]["skipped"].startswith("nothing to merge")
    # the loop turns the KV cache off; the saved model must not keep that
    assert json.loads((run / "config.json").read_text())["use_cache"] is True


def test_saved_model_reloads_for_eval_and_generate(trained, tmp_path):
    from transformers import AutoModelForCausalLM

    run, res = trained
    ev = peftlab.evaluate(adapter=run, output=tmp_path / "eval.json", mixed_precision="no")
    assert ev["eval_tokens"] == res["after"]["eval_tokens"]
    assert ev["perplexity"] == pytest.approx(res["after"]["perplexity"], rel=1e-6)
    ids = torch.tensor([[5, 17, 99, 3]])
    ours = peftlab.load_adapter(run)
    plain = AutoModelForCausalLM.from_pretrained(run).eval()  # an ordinary model dir
    with torch.no_grad():
        assert torch.equal(ours(input_ids=ids).logits, plain(input_ids=ids).logits)
    out = peftlab.generate(
        "Repeat the input word.", adapter=run, max_new_tokens=3, mixed_precision="no"
    )
    assert len(out) == 1 and isinstance(out[0], str)


def test_merge_of_a_full_run_says_there_is_nothing_to_merge(trained, tmp_path, capsys):
    run, _ = trained
    assert main(["merge", "--adapter", str(run), "--output", str(tmp_path / "m")]) == 2
    assert "nothing to merge" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_frozen_embeddings_stay_as_loaded(tmp_path, tiny_model_dir):
    res = train(
        full_config(tmp_path, tiny_model_dir, max_steps=2, save_every=0, train_embeddings=False)
    )
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    tuned = load_file(str(tmp_path / "run" / "model.safetensors"))
    emb = "model.embed_tokens.weight"
    assert torch.equal(tuned[emb], base[emb])
    assert not torch.equal(tuned["lm_head.weight"], base["lm_head.weight"])
    assert res["params"]["trainable"] == res["params"]["total"] - base[emb].numel()
    assert "train_embeddings: false" in (tmp_path / "run" / "config.yaml").read_text()


def test_bf16_base_and_autocast_keep_fp32_master_weights(tmp_path, tiny_model_dir):
    res = train(
        full_config(
            tmp_path,
            tiny_model_dir,
            max_steps=2,
            save_every=0,
            dtype="bfloat16",
            mixed_precision="bf16",
        )
    )
    assert res["precision"] == "bf16"
    tuned = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in tuned.values())


def test_resume_gives_same_losses_and_weights(tmp_path, tiny_model_dir, monkeypatch):
    whole = train(full_config(tmp_path / "a", tiny_model_dir))
    ref = losses(tmp_path / "a" / "run")
    train_interrupted_after(3, full_config(tmp_path / "b", tiny_model_dir), monkeypatch)
    run_b = tmp_path / "b" / "run"
    [ckpt] = list_checkpoints(run_b)
    # every weight is in the checkpoint (no PEFT adapter copy: there is no adapter)
    saved = load_file(str(ckpt / "adapter_params.safetensors"))
    assert saved.keys() == load_file(str(tmp_path / "a" / "run" / "model.safetensors")).keys()
    assert not (ckpt / "adapter_model.safetensors").exists()
    resumed = train(full_config(tmp_path / "b", tiny_model_dir, resume=True))
    got = losses(run_b)
    assert sorted(got) == list(range(1, 7))
    for step in range(4, 7):
        assert got[step] == pytest.approx(ref[step], abs=1e-6), step
    a = load_file(str(tmp_path / "a" / "run" / "model.safetensors"))
    b = load_file(str(run_b / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert resumed["after"]["perplexity"] == pytest.approx(whole["after"]["perplexity"], rel=1e-6)


def test_full_is_compared_only_when_asked():
    assert "full" in METHODS and not METHODS["full"].compare_by_default
    assert "full" not in default_methods()
    assert set(default_methods()) == {n for n in METHODS if n != "full"}


def test_compare_full_flag_adds_a_row_with_every_column(tmp_path, tiny_model_dir):
    cfg = {
        "model": tiny_model_dir,
        "dataset": write_toy_dataset(tmp_path / "toy.json"),
        "max_steps": 2,
        "batch_size": 4,
        "max_length": 64,
        "save_every": 1,
        "exact_match_limit": 2,
        "max_new_tokens": 4,
        "progress": False,
        "mixed_precision": "no",
        "lr": 5e-3,
    }
    (tmp_path / "cmp.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert (
        main(
            [
                "compare",
                "--config",
                str(tmp_path / "cmp.yaml"),
                "--methods",
                "ia3",
                "--full",
                "--no-base",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    rows = read_rows(out)
    assert list(rows) == ["ia3", "full"]
    full = rows["full"]
    assert full["status"] == "ok", full.get("error")
    assert full["params"]["share_pct"] == 100.0
    assert full["adapter_bytes"] > rows["ia3"]["adapter_bytes"]
    assert full["config"]["method"] == "full"
    cells = table_row(full)
    empty = [c for c, v in cells.items() if v in (DASH, "") or v.startswith("n/a")]
    assert not empty, cells
    assert cells["Merge check"].startswith("skipped: nothing to merge")
    assert "| full |" in (out / "report.md").read_text()
