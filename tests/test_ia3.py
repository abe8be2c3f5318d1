"""IA³-specific checks (arXiv 2205.05638): vector shapes and start values, input vs output
scaling with bias handling, parameter count, feedforward validation, the saved
feedforward spec, zeros at unmerge, fp32 vectors on a bf16 base, training."""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch
from safetensors.torch import load_file

from peftlab.formats.peft import load_adapter_into, peft_config_dict, save_adapter
from peftlab.methods import Ia3Linear, get_method
from peftlab.methods.ia3 import saved_feedforward_spec
from peftlab.model.inject import adapter_layers, count_parameters, inject

from conftest import make_tiny_llama, write_toy_dataset

BIAS = dict(attention_bias=True, mlp_bias=True)


def ia3_model(**opts):
    model = make_tiny_llama(**opts.pop("model", {}))
    inject(model, get_method("ia3", **opts))
    return model


def randomize(model, seed=7):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            layer.ia3_l.add_(torch.randn(layer.ia3_l.shape, generator=g) * 0.3)


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def test_default_targets_shapes_and_ones():
    model = ia3_model()
    layers = dict(adapter_layers(model))
    assert sorted({n.rsplit(".", 1)[-1] for n in layers}) == ["down_proj", "k_proj", "v_proj"]
    for name, layer in layers.items():
        base = layer.base_layer
        if name.endswith("down_proj"):
            assert layer.is_feedforward and layer.ia3_l.shape == (1, base.in_features)
        else:
            assert not layer.is_feedforward and layer.ia3_l.shape == (base.out_features, 1)
        assert layer.ia3_l.dtype == torch.float32 and torch.equal(
            layer.ia3_l, torch.ones_like(layer.ia3_l)
        )
        assert list(layer.adapter_params()) == ["ia3_l"]


def test_parameter_count_is_sum_of_vector_lengths():
    model = ia3_model()
    cfg = model.config
    kv_out = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    per_layer = kv_out + kv_out + cfg.intermediate_size  # k out + v out + down_proj in
    assert count_parameters(model)["trainable"] == per_layer * cfg.num_hidden_layers


def test_output_scaling_includes_bias_and_input_scaling_does_not():
    model = ia3_model(model=BIAS)
    randomize(model)
    x = torch.randn(3, 5, model.config.hidden_size)
    h = torch.randn(3, 5, model.config.intermediate_size)
    v = model.get_submodule("model.layers.0.self_attn.v_proj")
    down = model.get_submodule("model.layers.0.mlp.down_proj")
    assert v.base_layer.bias is not None and down.base_layer.bias is not None
    with torch.no_grad():
        lv, ld = v.ia3_l.flatten(), down.ia3_l.flatten()
        bv, bd = v.base_layer, down.base_layer
        # attention: l ⊙ (W x + b), the bias is scaled
        assert torch.allclose(v(x), (x @ bv.weight.T + bv.bias) * lv, atol=1e-6)
        # feed-forward: W (l ⊙ h) + b, the bias is not scaled
        assert torch.allclose(down(h), (h * ld) @ bd.weight.T + bd.bias, atol=1e-6)
        assert torch.allclose(down(h), bd(h * ld), atol=1e-6)


def test_merge_scales_rows_or_columns_and_bias(tiny_inputs):
    model = ia3_model(model=BIAS)
    randomize(model)
    ref = logits(model, tiny_inputs)
    v = model.get_submodule("model.layers.1.self_attn.v_proj")
    down = model.get_submodule("model.layers.1.mlp.down_proj")
    w_v, b_v = v.base_layer.weight.clone(), v.base_layer.bias.clone()
    w_d, b_d = down.base_layer.weight.clone(), down.base_layer.bias.clone()
    assert torch.allclose(v.delta_weight(), w_v * (v.ia3_l - 1), atol=1e-7)
    for _, layer in adapter_layers(model):
        layer.merge()
    assert torch.allclose(v.base_layer.weight, w_v * v.ia3_l, atol=1e-7)  # rows (out, 1)
    assert torch.allclose(v.base_layer.bias, b_v * v.ia3_l.flatten(), atol=1e-7)
    assert torch.allclose(down.base_layer.weight, w_d * down.ia3_l, atol=1e-7)  # (1, in)
    assert torch.equal(down.base_layer.bias, b_d)
    assert torch.allclose(v.delta_weight(), w_v * (v.ia3_l - 1), atol=1e-6)
    assert (logits(model, tiny_inputs) - ref).abs().max() <= 1e-5
    for _, layer in adapter_layers(model):
        layer.unmerge()
    assert torch.allclose(v.base_layer.bias, b_v, atol=1e-6)


def test_logits_match_peft_with_biases(tiny_inputs, tmp_path):
    peft = pytest.importorskip("peft")
    model = ia3_model(
        model=BIAS,
        target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
        feedforward_modules=["up_proj", "down_proj"],
    )
    randomize(model)
    save_adapter(model, tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert "layers_to_transform" not in saved and saved["peft_type"] == "IA3"
    keys = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert "base_model.model.model.layers.0.mlp.down_proj.ia3_l" in keys
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        theirs = peft.PeftModel.from_pretrained(make_tiny_llama(**BIAS), tmp_path).eval()
    assert not [w for w in rec if "Unexpected keyword" in str(w.message)]
    assert (logits(theirs, tiny_inputs) - logits(model, tiny_inputs)).abs().max() <= 1e-5
    merged = theirs.merge_and_unload()
    assert (logits(merged, tiny_inputs) - logits(model, tiny_inputs)).abs().max() <= 1e-4


def test_feedforward_module_must_be_a_target():
    model = make_tiny_llama()
    with pytest.raises(ValueError, match=r"feedforward module 'up_proj' is not among"):
        inject(
            model,
            get_method(
                "ia3",
                target_modules=["k_proj", "v_proj", "down_proj"],
                feedforward_modules=["down_proj", "up_proj"],
            ),
        )
    with pytest.raises(ValueError, match=r"feedforward module 'down_proj' is not among"):
        inject(model, get_method("ia3", target_modules=r".*\.(k|v)_proj"))
    assert not any(isinstance(m, Ia3Linear) for m in model.modules())
    # the unknown target name is reported before the feedforward problem
    with pytest.raises(ValueError, match=r"'q_prj'"):
        inject(model, get_method("ia3", target_modules=["q_proj", "q_prj"]))


@pytest.mark.parametrize("ff", ["all-linear", "(unclosed", [""], [3], {"a": 1}])
def test_bad_feedforward_spec_is_rejected(ff):
    with pytest.raises(ValueError, match="feedforward_modules"):
        get_method("ia3", feedforward_modules=ff)


def test_empty_feedforward_scales_every_output():
    model = ia3_model(feedforward_modules=[])
    assert all(not layer.is_feedforward for _, layer in adapter_layers(model))
    assert peft_config_dict(model)["feedforward_modules"] == []


def test_saved_feedforward_spec_reads_the_same_in_peft():
    names = ["m.0.mlp.up_proj", "m.0.mlp.gate_up_proj", "m.0.attn.k_proj"]
    # as given when peft reads it the same way
    assert saved_feedforward_spec(["k_proj", "up_proj"], names[::2], {names[0]}, ["up_proj"]) == [
        "up_proj"
    ]
    # peft's plain suffix test would also catch gate_up_proj: fall back to a regex
    spec = saved_feedforward_spec("all-linear", names, {names[0]}, ["up_proj"])
    assert isinstance(spec, str) and [n for n in names if re.fullmatch(spec, n)] == [names[0]]
    # peft wants feedforward ⊆ targets as strings: "mlp.up_proj" becomes "up_proj"
    assert saved_feedforward_spec(
        ["k_proj", "up_proj"], names[::2], {names[0]}, ["mlp.up_proj"]
    ) == ["up_proj"]


def test_dotted_feedforward_name_round_trips(tiny_inputs, tmp_path):
    peft = pytest.importorskip("peft")
    model = ia3_model(target_modules=["q_proj", "mlp.down_proj"], feedforward_modules=["down_proj"])
    randomize(model)
    save_adapter(model, tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    peft.get_peft_config(saved)  # peft's own subset check accepts what we wrote
    ours = make_tiny_llama()
    load_adapter_into(ours, tmp_path)
    assert {n for n, lay in adapter_layers(ours) if lay.is_feedforward} == {
        n for n, lay in adapter_layers(model) if lay.is_feedforward
    }
    theirs = peft.PeftModel.from_pretrained(make_tiny_llama(), tmp_path).eval()
    assert (logits(theirs, tiny_inputs) - logits(model, tiny_inputs)).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "key,value",
    [("fan_in_fan_out", True), ("modules_to_save", ["lm_head"]), ("exclude_modules", ["k_proj"])],
)
def test_unsupported_peft_keys_are_errors(tmp_path, key, value):
    model = ia3_model()
    save_adapter(model, tmp_path)
    path = tmp_path / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg[key] = value
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=f"{key}=.*does not support"):
        load_adapter_into(make_tiny_llama(), tmp_path)


def test_zero_entry_merge_warns_and_unmerge_refuses():
    model = ia3_model()
    layer = model.get_submodule("model.layers.0.self_attn.k_proj")
    with torch.no_grad():
        layer.ia3_l[3] = 0.0
    with pytest.warns(UserWarning, match="exactly 0"):
        layer.merge()
    w = layer.base_layer.weight.clone()
    with pytest.raises(ValueError, match=r"layers\.0\.self_attn\.k_proj.*exactly 0"):
        layer.unmerge()
    assert layer.merged and torch.equal(layer.base_layer.weight, w)  # nothing touched


def test_vectors_stay_fp32_on_bf16_base(tiny_inputs):
    model = make_tiny_llama().to(torch.bfloat16)
    inject(model, get_method("ia3"))
    for _, layer in adapter_layers(model):
        assert layer.ia3_l.dtype == torch.float32
        assert layer.base_layer.weight.dtype == torch.bfloat16
    out = model(**tiny_inputs, labels=tiny_inputs["input_ids"])
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    assert all(
        lay.ia3_l.grad is not None and lay.ia3_l.grad.dtype == torch.float32
        for _, lay in adapter_layers(model)
    )


@pytest.mark.parametrize("precision", ["no", "bf16"])  # bf16: frozen weights narrowed
def test_training_changes_only_ia3_vectors(tmp_path, tiny_model_dir, monkeypatch, precision):
    import importlib

    from peftlab import build_config, train

    train_mod = importlib.import_module("peftlab.training.finish")
    captured = {}
    real_save = train_mod.save_trained

    def spy(model, tokenizer, directory):
        captured["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return real_save(model, tokenizer, directory)

    monkeypatch.setattr(train_mod, "save_trained", spy)
    cfg = build_config(
        method="ia3",
        model=tiny_model_dir,
        dataset=write_toy_dataset(tmp_path / "toy.json"),
        output=str(tmp_path / "run"),
        max_steps=5,
        batch_size=4,
        lr=5e-2,
        mixed_precision=precision,
        save_every=0,
        exact_match_limit=2,
        max_new_tokens=4,
        progress=False,
        max_length=64,
        seed=3,
    )
    res = train(cfg)
    assert res["method"]["method"] == "ia3"
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    state = captured["state"]
    changed = {k for k, v in state.items() if k.endswith(".ia3_l")}
    assert changed and all(not torch.equal(state[k], torch.ones_like(state[k])) for k in changed)
    for k, v in state.items():
        if k not in changed:
            assert torch.equal(v, base[k.replace(".base_layer.", ".")]), k
    saved = load_file(str(tmp_path / "run" / "adapter_model.safetensors"))
    assert set(saved) == {f"base_model.model.{k}" for k in changed}
    assert res["params"]["trainable"] == sum(state[k].numel() for k in changed)


def test_peft_adapter_classified_by_peft_plain_suffix_rule(tiny_inputs, tmp_path):
    # peft marks a target feedforward when its name merely ends with an entry ("proj"
    # catches k_proj and down_proj); a peft adapter must load with peft's classification.
    peft = pytest.importorskip("peft")
    cfg = peft.IA3Config(
        task_type="CAUSAL_LM",
        target_modules=r".*\.(k_proj|down_proj)",
        feedforward_modules=["proj"],
    )
    theirs = peft.get_peft_model(make_tiny_llama(), cfg)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in theirs.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    theirs.eval().save_pretrained(tmp_path)
    ours = make_tiny_llama()
    load_adapter_into(ours, tmp_path)
    assert all(layer.is_feedforward for _, layer in adapter_layers(ours))
    assert (logits(ours, tiny_inputs) - logits(theirs, tiny_inputs)).abs().max() <= 1e-5
    # and what we write back reads the same in peft
    save_adapter(ours, tmp_path / "again")
    back = peft.PeftModel.from_pretrained(make_tiny_llama(), tmp_path / "again").eval()
    assert (logits(back, tiny_inputs) - logits(theirs, tiny_inputs)).abs().max() <= 1e-5


def test_cli_parses_feedforward_list():
    from peftlab.cli import build_parser

    ns = build_parser().parse_args(
        ["train", "--method", "ia3", "--feedforward-modules", "up_proj,down_proj"]
    )
    assert ns.feedforward_modules == ["up_proj", "down_proj"]
