"""VeRA and OFT beyond the shared suite (tests/test_methods.py): VeRA's shared projections
(one pair per model, saved once, redrawn from the key), OFT's Cayley forms, block sizes
and options against peft 0.21's own functions, and a resumed run of each."""

from __future__ import annotations

import importlib
import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

from peftlab import build_config, train
from peftlab.formats.peft import load_adapter_into, save_adapter
from peftlab.methods import get_method
from peftlab.methods.oft import OFT, OftLinear
from peftlab.methods.oft_math import adjust_to_divisor, cayley_exact, cayley_neumann, skew
from peftlab.methods.vera import VeraLinear
from peftlab.model.inject import adapter_layers, count_parameters, inject, merge

from conftest import make_tiny_llama, write_toy_dataset

peft = pytest.importorskip("peft")
train_mod = importlib.import_module("peftlab.training.loop")


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def randomize(model, seed=3, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            for p in layer.adapter_params().values():
                p.add_(torch.randn(p.shape, generator=g) * scale)


# -- VeRA ---------------------------------------------------------------------------------
def test_vera_projections_are_one_pair_sliced_per_layer_and_saved_once(tmp_path):
    model = make_tiny_llama()
    inject(model, get_method("vera", r=4, target_modules=["k_proj", "down_proj"]))
    layers = [layer for _, layer in adapter_layers(model)]
    assert all(isinstance(la, VeraLinear) for la in layers)
    # k_proj is 32 -> 16, down_proj 64 -> 32: A is r x max(in), B is max(out) x r
    shared = {id(la.vera_shared) for la in layers}
    assert len(shared) == 1
    a, b = layers[0].vera_shared.vera_A, layers[0].vera_shared.vera_B
    assert (tuple(a.shape), tuple(b.shape)) == ((4, 64), (32, 4))
    k = next(la for la in layers if la.out_features == 16)
    ka, kb = k.sliced()
    assert torch.equal(ka, a[:, :32]) and torch.equal(kb, b[:16])
    # trainable: r + out per layer, nothing else
    assert count_parameters(model)["trainable"] == sum(4 + la.out_features for la in layers)
    save_adapter(model, tmp_path / "with")
    saved = load_file(tmp_path / "with" / "adapter_model.safetensors")
    assert torch.equal(saved["base_model.vera_A"], a) and torch.equal(saved["base_model.vera_B"], b)
    assert sum("vera_A" in key or "vera_B" in key for key in saved) == 2  # not per layer


def test_vera_without_saved_projections_redraws_them_from_the_key(tmp_path, tiny_inputs):
    model = make_tiny_llama()
    inject(model, get_method("vera", r=4, save_projection=False, projection_prng_key=11))
    randomize(model)
    save_adapter(model, tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert not any(key.startswith("base_model.vera_") for key in saved)
    fresh = make_tiny_llama()
    load_adapter_into(fresh, tmp_path)
    assert torch.equal(logits(fresh, tiny_inputs), logits(model, tiny_inputs))
    # another key draws other projections: the same vectors then give other logits
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**cfg, "projection_prng_key": 12}))
    other = make_tiny_llama()
    load_adapter_into(other, tmp_path)
    assert (logits(other, tiny_inputs) - logits(model, tiny_inputs)).abs().max() > 1e-4


def test_vera_low_rank_factors_are_its_update(tiny_inputs):
    model = make_tiny_llama()
    inject(model, get_method("vera", r=4, target_modules=["v_proj"]))
    randomize(model)
    _, layer = next(adapter_layers(model))
    a, b, s = layer.low_rank_factors()
    x = torch.randn(3, layer.in_features)
    want = layer.update(x)
    assert (s * x @ a.T @ b.T - want).abs().max() <= 1e-6
    assert (x @ layer.delta_weight().T - want).abs().max() <= 1e-6


def test_vera_config_from_peft_refuses_what_it_cannot_honour():
    with pytest.raises(ValueError, match="fan_in_fan_out=True"):
        get_method("vera").from_peft_config(
            {"peft_type": "VERA", "r": 4, "target_modules": ["q_proj"], "fan_in_fan_out": True}
        )


# -- OFT numerics against peft's own functions ---------------------------------------------
def test_cayley_forms_match_peft_and_exact_is_orthogonal():
    from peft.tuners.oft.layer import OFTRotationModule

    block = 6
    vec = torch.randn(3, block * (block - 1) // 2, dtype=torch.float64) * 0.3
    ref = OFTRotationModule(3, vec.shape[1], block, 18)
    assert torch.equal(skew(vec, block), ref._pytorch_skew_symmetric(vec, block))
    q = skew(vec, block)
    for terms in range(1, 8):
        want = ref._cayley_batch(vec, block, True, terms)
        assert torch.allclose(cayley_neumann(q, terms), want, atol=1e-12), terms
    want = ref._cayley_batch(vec.float(), block, False).double()
    r = cayley_exact(q)
    assert torch.allclose(r, want, atol=1e-5)
    eye = torch.eye(block, dtype=torch.float64).expand_as(r)
    assert torch.allclose(r @ r.transpose(-2, -1), eye, atol=1e-12)


def test_block_size_adjustment_matches_peft():
    from peft.tuners.oft.layer import OFTLayer

    for n in (12, 32, 48, 64, 96, 576):
        for v in range(1, n + 3):
            assert adjust_to_divisor(n, v) == OFTLayer.adjust_oft_parameters(None, n, v), (n, v)


def test_oft_options_and_old_files_are_clear_errors():
    with pytest.raises(ValueError, match="exactly one of r .* and oft_block_size"):
        get_method("oft", r=4)  # oft_block_size keeps its default 32
    get_method("oft", r=4, oft_block_size=0)
    base = {"peft_type": "OFT", "target_modules": ["q_proj"], "r": 0}
    with pytest.raises(ValueError, match="before 0.14"):
        OFT.from_peft_config(base)
    old = {**base, "oft_block_size": 8, "peft_version": "0.17.1"}
    with pytest.raises(ValueError, match="changed in peft 0.18"):
        OFT.from_peft_config(old)
    assert OFT.from_peft_config({**old, "use_cayley_neumann": False}).config.oft_block_size == 8


def test_oft_block_share_matches_peft_both_ways_and_merges(tmp_path, tiny_inputs):
    """One rotation for all blocks: the file's shape no longer depends on the width."""
    ours = make_tiny_llama()
    inject(ours, get_method("oft", oft_block_size=8, block_share=True))
    assert {tuple(la.oft_R.weight.shape) for _, la in adapter_layers(ours)} == {(1, 28)}
    randomize(ours, scale=0.1)
    save_adapter(ours, tmp_path / "ours")
    theirs = peft.PeftModel.from_pretrained(make_tiny_llama(), tmp_path / "ours").eval()
    ref = logits(ours, tiny_inputs)
    assert (logits(theirs, tiny_inputs) - ref).abs().max() <= 1e-5
    with torch.no_grad():
        for n, p in theirs.named_parameters():
            if "oft_R" in n:
                p.mul_(-0.5)
    theirs.save_pretrained(tmp_path / "theirs")
    back = make_tiny_llama()
    load_adapter_into(back, tmp_path / "theirs")
    assert (logits(back, tiny_inputs) - logits(theirs, tiny_inputs)).abs().max() <= 1e-5
    merge(ours)
    assert (logits(ours, tiny_inputs) - ref).abs().max() <= 1e-4


def test_oft_module_dropout_sets_blocks_to_identity_while_training_only():
    model = make_tiny_llama()
    inject(model, get_method("oft", oft_block_size=8, module_dropout=0.5))
    randomize(model)
    _, layer = next(adapter_layers(model))
    assert isinstance(layer, OftLinear) and layer.oft_R.blocks == 4
    eye = torch.eye(8)
    model.train()
    r = layer.oft_R.rotations(drop=True)
    assert sum(torch.equal(block, eye) for block in r) == 2  # int(0.5 * 4) blocks
    model.eval()
    assert not any(torch.equal(block, eye) for block in layer.oft_R.rotations(drop=True))


def test_oft_block_size_not_dividing_is_moved_with_a_warning():
    model = make_tiny_llama()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        inject(model, get_method("oft", oft_block_size=5, target_modules=["q_proj"]))
    assert rec and "oft_block_size=5 does not divide the 32 inputs" in str(rec[0].message)
    assert {la.oft_R.block for _, la in adapter_layers(model)} == {4}  # as peft: 32 = 8 x 4


# -- a run, interrupted and resumed ------------------------------------------------------
@pytest.mark.parametrize(
    "method,opts",
    [("vera", dict(r=8, dropout=0.1)), ("oft", dict(oft_block_size=8, module_dropout=0.5))],
)
def test_resumed_run_gives_the_same_losses_and_adapter(
    method, opts, tmp_path, tiny_model_dir, monkeypatch
):
    def cfg(d, **kw):
        return build_config(
            model=tiny_model_dir,
            dataset=write_toy_dataset(tmp_path / "toy.json"),
            output=str(d / "run"),
            method=method,
            max_steps=4,
            batch_size=4,
            lr=5e-3,
            mixed_precision="no",
            save_every=2,
            exact_match_limit=0,
            progress=False,
            max_length=64,
            seed=11,
            **opts,
            **kw,
        )

    train(cfg(tmp_path / "a"))
    real = train_mod._periodic

    def crash(run, step, *a, **k):
        real(run, step, *a, **k)
        if step == 2:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(train_mod, "_periodic", crash)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path / "b"))
    monkeypatch.setattr(train_mod, "_periodic", real)
    train(cfg(tmp_path / "b", resume=True))

    def losses(d):
        lines = [json.loads(x) for x in open(d / "run" / "metrics.jsonl")]
        return {r["step"]: r["loss"] for r in lines if "loss" in r}

    la, lb = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert sorted(lb) == [1, 2, 3, 4]
    assert all(lb[s] == pytest.approx(la[s], abs=1e-6) for s in (3, 4)), (la, lb)
    wa = load_file(tmp_path / "a" / "run" / "adapter_model.safetensors")
    wb = load_file(tmp_path / "b" / "run" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and max((wa[k] - wb[k]).abs().max() for k in wa) <= 1e-6
