"""Frozen weights stored in the compute dtype while training (issue 16): which layers
qualify, the originals restored bit for bit however the block ends, and training that
computes exactly what it computes with fp32 weights."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file

from peftlab import build_config, train
from peftlab.host.heap import drop_mapped_pages, file_mapped_ranges
from peftlab.host.stash import _HostStash, narrowed
from peftlab.methods import get_method
from peftlab.methods.frozen import castable_linears
from peftlab.model.inject import inject
from peftlab.model.load import load_model
from test_train import losses

from conftest import make_tiny_llama, write_toy_dataset


def compute_dtype_weights(model, dtype, folder, log=None):
    """The stash as the training loop uses it: the castable layers, narrowed on CPU."""
    layers = castable_linears(model, dtype) if dtype is not None else {}
    return narrowed(layers, dtype, folder, log, spill=True)


def adapted(method: str, **options):
    model = make_tiny_llama()
    inject(model, get_method(method, **options))
    return model


def fp32_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def evals(run_dir) -> dict[int, float]:
    lines = [json.loads(x) for x in open(run_dir / "metrics.jsonl")]
    return {r["step"]: r["eval_loss"] for r in lines if "eval_loss" in r}


def test_every_frozen_projection_but_the_head_qualifies():
    names = set(castable_linears(adapted("lora", r=4), torch.bfloat16))
    assert len(names) == 2 * 7  # two layers x q k v o gate up down
    assert all(n.endswith(".base_layer") for n in names)
    assert not any("lm_head" in n for n in names)
    # untargeted projections are plain frozen layers: they qualify too
    names = set(castable_linears(adapted("lora", r=4, target_modules=["q_proj"]), torch.bfloat16))
    assert "model.layers.0.self_attn.q_proj.base_layer" in names
    assert "model.layers.0.mlp.down_proj" in names and len(names) == 14


def test_layers_whose_weight_is_read_elsewhere_do_not_qualify():
    # DoRA's row norms read W0 itself: its base layers stay, the untargeted ones qualify
    names = set(
        castable_linears(adapted("dora", r=4, target_modules=["q_proj", "v_proj"]), torch.bfloat16)
    )
    assert len(names) == 10 and not any("q_proj" in n or "v_proj" in n for n in names)
    # trained weights, weights already as narrow, a head tied to the embedding: none
    assert castable_linears(adapted("full"), torch.bfloat16) == {}
    assert castable_linears(adapted("lora", r=4), torch.float32) == {}
    tied = make_tiny_llama(tie_word_embeddings=True)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert "lm_head" not in castable_linears(tied.requires_grad_(False), torch.bfloat16)
    shared = make_tiny_llama().requires_grad_(False)
    shared.model.layers[1].mlp.up_proj.weight = shared.model.layers[0].mlp.up_proj.weight
    names = castable_linears(shared, torch.bfloat16)
    assert "model.layers.0.mlp.up_proj" not in names and "model.layers.0.mlp.gate_proj" in names


def test_weights_are_narrow_inside_and_restored_bit_for_bit(tmp_path):
    model = adapted("ia3")
    before = fp32_weights(model)
    logged = []
    with compute_dtype_weights(model, torch.bfloat16, tmp_path, logged.append) as saved:
        layer = model.model.layers[0].mlp.down_proj.base_layer
        assert layer.weight.dtype == torch.bfloat16 and not layer.weight.requires_grad
        assert torch.equal(
            layer.weight,
            before["model.layers.0.mlp.down_proj.base_layer.weight"].to(torch.bfloat16),
        )
        assert model.lm_head.weight.dtype == torch.float32
        spilled = list(tmp_path.glob(".fp32-weights.*.tmp"))
        assert len(spilled) == 1 and spilled[0].stat().st_size == 2 * saved
        assert saved == 2 * sum(
            before[f"{n}.weight"].numel() for n in castable_linears(adapted("ia3"), torch.bfloat16)
        )
    assert "stored in bfloat16" in logged[0]
    after = fp32_weights(model)
    assert all(
        torch.equal(before[n], after[n]) and after[n].dtype == before[n].dtype for n in before
    )
    assert list(tmp_path.iterdir()) == []  # the spill file is gone


def test_restored_when_the_block_raises_and_left_alone_when_nothing_can_be_set_aside(tmp_path):
    model = adapted("lora", r=4)
    before = fp32_weights(model)
    with pytest.raises(KeyboardInterrupt):
        with compute_dtype_weights(model, torch.bfloat16, tmp_path):
            raise KeyboardInterrupt
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert list(tmp_path.iterdir()) == []
    logged = []
    with compute_dtype_weights(model, torch.bfloat16, tmp_path / "missing", logged.append) as saved:
        assert saved == 0
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert "could not set them aside" in logged[0] and "missing" in logged[0]
    with compute_dtype_weights(model, None, tmp_path) as saved:  # fp32 compute: nothing
        assert saved == 0


@pytest.mark.parametrize(
    "method,options",
    [
        ("lora", dict(r=4, dropout=0.1)),
        ("ia3", dict(gradient_checkpointing=True)),
        ("dora", dict(r=4, target_modules=["q_proj", "up_proj"])),
    ],
)
def test_training_is_the_same_with_narrow_weights(tmp_path, tiny_model_dir, method, options):
    data = write_toy_dataset(tmp_path / "toy.json")
    res = {}
    for flag in (True, False):
        res[flag] = train(
            build_config(
                method=method,
                model=tiny_model_dir,
                dataset=data,
                max_steps=3,
                save_every=2,
                eval_every=2,
                batch_size=4,
                lr=5e-3,
                mixed_precision="bf16",
                exact_match_limit=2,
                max_new_tokens=4,
                max_length=64,
                seed=11,
                progress=False,
                output=str(tmp_path / str(flag)),
                compute_dtype_weights=flag,
                **options,
            )
        )
    on, off = tmp_path / "True", tmp_path / "False"
    assert res[True]["compute_dtype_weights_bytes"] > 0
    assert res[False]["compute_dtype_weights_bytes"] == 0
    assert losses(on) == losses(off) and len(losses(on)) == 3
    assert evals(on) == evals(off) and sorted(evals(on)) == [0, 2, 3]
    wa = load_file(on / "adapter_model.safetensors")
    wb = load_file(off / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(wa[k].abs().max() > 0 for k in wa)
    for key in ("before", "after"):
        assert res[True][key]["eval_loss"] == res[False][key]["eval_loss"]
    assert res[True]["merge_check"] == res[False]["merge_check"]
    assert not list(on.glob(".fp32-weights.*"))


def _rss_file() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssFile:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and madvise: Linux")
def test_pages_left_in_the_safetensors_mapping_are_released(tmp_path):
    """transformers leaves loaded weights in safetensors' file mapping: a weight replaced
    by its bf16 copy would keep its pages resident (the other weights keep the mapping)
    unless released; one still in use elsewhere keeps them."""
    make_tiny_llama(
        hidden_size=256, intermediate_size=1024, num_attention_heads=4, num_key_value_heads=4
    ).save_pretrained(tmp_path / "model")
    model = load_model(str(tmp_path / "model"))
    inject(model, get_method("lora", r=4))
    ranges = file_mapped_ranges()
    up = model.model.layers[0].mlp.up_proj.base_layer
    assert any(lo <= up.weight.data_ptr() < hi for lo, hi in ranges)
    assert drop_mapped_pages(torch.randn(1024, 1024), ranges) == 0  # not in a mapping
    with torch.no_grad():
        up.weight.mul_(2)  # its pages now hold values the file does not
    kept = up.weight.data[:4].clone(), up.weight.data[:4]  # a view still in use
    for p in model.parameters():
        float(p.detach().sum())  # every page resident
    before = _rss_file()
    with compute_dtype_weights(model, torch.bfloat16, tmp_path) as saved:
        # the 1 MiB MLP weights' pages (~6 MiB) go; the view's keep theirs
        assert before - _rss_file() >= 4 * 2**20 and saved > 0
        assert torch.equal(kept[1], kept[0])
    assert torch.equal(up.weight[:4], kept[0])


def test_a_gpu_run_sets_the_originals_aside_in_host_memory():
    w = torch.randn(64, 32)
    stash = _HostStash()
    stash.put("w", w)
    w.zero_()  # a copy, not a reference, is kept
    back = stash.get("w")
    assert back.device.type == "cpu" and back.abs().sum() > 0
    stash.close()
    assert stash.kept == {}
