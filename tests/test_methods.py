"""The shared suite every adapter method in METHODS must pass (DESIGN.md), with peft as
oracle."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from peftlab.formats.peft import AdapterMismatchError, load_adapter_into, save_adapter
from peftlab.methods import METHODS, AdapterLayer, get_method
from peftlab.model.inject import (
    adapter_layers,
    count_parameters,
    inject,
    merge,
    merge_and_unload,
    unmerge,
)
from peftlab.quant.linear4bit import dequantize_linears

from conftest import make_tiny_llama

peft = pytest.importorskip("peft")

# Variants exercised per method; a method with no entry runs with its defaults.
VARIANTS = {
    "adalora": [
        dict(init_r=4, target_r=2, alpha=8),
        dict(
            init_r=3, target_r=1, alpha=16, orth_reg_weight=0.1, target_modules=["q_proj", "v_proj"]
        ),
    ],
    "ia3": [
        dict(),
        dict(
            target_modules=["q_proj", "up_proj", "down_proj"],
            feedforward_modules=["up_proj", "down_proj"],
        ),
        dict(target_modules=r".*\.1\.(self_attn\.v_proj|mlp\.down_proj)"),
    ],
    "dora": [
        dict(r=4, alpha=8),
        dict(r=4, alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj"]),
    ],
    "loha": [
        dict(r=2, alpha=4),
        dict(r=4, alpha=8, rank_dropout=0.5, target_modules=["q_proj", "v_proj"]),
    ],
    # LoKr's factor shapes: r=2 splits W2 into rank-2 factors on every layer; r=8 keeps
    # W2 whole; decompose_both with factor 4 splits W1 too (4×4 parts of q and down).
    "lokr": [
        dict(r=2, alpha=4),
        dict(r=8, alpha=8, rank_dropout=0.3, rank_dropout_scale=True),
        dict(
            r=1,
            alpha=2,
            decompose_both=True,
            decompose_factor=4,
            target_modules=["q_proj", "down_proj"],
        ),
    ],
    "lora": [
        dict(r=4, alpha=8),
        dict(r=4, alpha=8, use_rslora=True),
        dict(r=2, alpha=4, target_modules=["q_proj", "v_proj"]),
        dict(r=3, alpha=6, target_modules=r".*\.1\.mlp\.(up|down)_proj"),
    ],
    "pissa": [
        dict(r=4, alpha=8),
        dict(r=2, alpha=4, use_rslora=True, niter=2, save_as_lora=False, target_modules=["q_proj"]),
    ],
    "olora": [dict(r=3, alpha=6, target_modules=r".*\.1\.(mlp\.up|self_attn\.v)_proj")],
    "oft": [
        dict(),
        dict(oft_block_size=0, r=4, use_cayley_neumann=False, target_modules=["q_proj", "v_proj"]),
        dict(oft_block_size=8, num_cayley_neumann_terms=3),
        dict(oft_block_size=4, coft=True, eps=0.05, target_modules=["o_proj", "down_proj"]),
    ],
    "vera": [
        dict(r=4),
        dict(r=8, d_initial=0.05, target_modules=["q_proj", "down_proj"]),
        dict(
            r=4, save_projection=False, projection_prng_key=7, target_modules=["k_proj", "up_proj"]
        ),
    ],
    "qlora": [
        dict(r=4, alpha=8),
        dict(r=4, alpha=8, use_dora=True, target_modules=["q_proj", "v_proj"]),
        dict(r=2, alpha=4, double_quant=False, target_modules=r".*\.1\.mlp\.(up|down)_proj"),
    ],
}
# The adapter methods; full fine-tuning (saves_full_model) has no adapter layers and no
# PEFT format, and is tested in test_full.py.
ADAPTERS = sorted(n for n, cls in METHODS.items() if not cls.saves_full_model)
CASES = [(name, opts) for name in ADAPTERS for opts in VARIANTS.get(name, [{}])]
IDS = [f"{n}-{i}" for n in ADAPTERS for i in range(len(VARIANTS.get(n, [{}])))]


def make_method(name: str, opts: dict):
    fields = {f.name for f in dataclasses.fields(METHODS[name].config_cls)}
    if "dropout" in fields:  # deterministic comparisons need dropout off
        opts = {"dropout": 0.0, **opts}
    return get_method(name, **opts)


def randomize_adapter(model, seed=3, scale=0.2) -> None:
    """Non-trivial adapter values (a fresh adapter is the identity and proves little)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            for p in layer.adapter_params().values():
                p.add_(torch.randn(p.shape, generator=g) * scale)


def plain_base(adapted):
    """The base model the adapter of ``adapted`` sits on, in plain modules: the tiny
    Llama prepared by the method (QLoRA quantizes it to NF4) with any 4-bit layer turned
    back into an fp32 nn.Linear holding the dequantized weight. For methods that do not
    transform the base this is just make_tiny_llama(); for QLoRA it is the equivalent
    full-precision model that peft (the oracle) can be given."""
    base = make_tiny_llama()
    adapted.peftlab_adapter.method.prepare_model(base)
    dequantize_linears(base, torch.float32)
    return base


def load_kwargs(adapted) -> dict:
    """Name the method when its adapter files alone cannot tell it (QLoRA's are LoRA's)."""
    method = adapted.peftlab_adapter.method
    if method.auto_detect:
        return {}
    return {
        "method": method.name,
        "method_options": {k: getattr(method.config, k) for k in method.local_options},
    }


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture(params=CASES, ids=IDS)
def adapted(request):
    name, opts = request.param
    model = make_tiny_llama()
    inject(model, make_method(name, opts), base_model="tiny")
    return model


def test_identity_at_init(adapted, tiny_inputs):
    base = plain_base(adapted)
    assert torch.allclose(logits(adapted, tiny_inputs), logits(base, tiny_inputs), atol=1e-6)


def test_merge_equals_unmerged_and_differs_from_base(adapted, tiny_inputs):
    randomize_adapter(adapted)
    ref = logits(adapted, tiny_inputs)
    base = logits(plain_base(adapted), tiny_inputs)
    assert (ref - base).abs().max() > 1e-3, "randomised adapter must change the output"
    before = {name: layer.base_weight().clone() for name, layer in adapter_layers(adapted)}
    merge(adapted)
    assert all(layer.merged for _, layer in adapter_layers(adapted))
    tol = adapted.peftlab_adapter.method.merge_tolerance
    assert (logits(adapted, tiny_inputs) - ref).abs().max() <= tol
    with pytest.warns(UserWarning, match="already merged"):
        merge(adapted)  # a second merge must change nothing
    assert (logits(adapted, tiny_inputs) - ref).abs().max() <= tol
    unmerge(adapted)
    assert (logits(adapted, tiny_inputs) - ref).abs().max() <= tol
    plain = plain_base(adapted)
    rewrites = adapted.peftlab_adapter.method.rewrites_base  # PiSSA, OLoRA: the residual
    for name, layer in adapter_layers(adapted):
        assert torch.allclose(layer.base_weight(), before[name], atol=1e-6), name
        orig = plain.get_submodule(name).weight
        assert torch.allclose(layer.base_weight(), orig, atol=1e-6) != rewrites, name


def test_merge_and_unload_gives_plain_model(adapted, tiny_inputs):
    randomize_adapter(adapted)
    ref = logits(adapted, tiny_inputs)
    plain = merge_and_unload(adapted)
    assert not any(isinstance(m, AdapterLayer) for m in plain.modules())
    assert set(plain.state_dict()) == set(make_tiny_llama().state_dict())
    assert (logits(plain, tiny_inputs) - ref).abs().max() <= 1e-4


def test_only_adapter_parameters_change(adapted, tiny_inputs):
    before = {k: v.clone() for k, v in adapted.state_dict().items()}
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all(".base_layer." not in n for n in trainable)
    opt = torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=1e-2)
    adapted.train()
    for _ in range(3):
        out = adapted(**tiny_inputs, labels=tiny_inputs["input_ids"])
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    after = adapted.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == trainable


def test_save_load_round_trip(adapted, tiny_inputs, tmp_path):
    randomize_adapter(adapted)
    save_adapter(adapted, tmp_path)
    fresh = make_tiny_llama()
    load_adapter_into(fresh, tmp_path, **load_kwargs(adapted))
    if adapted.peftlab_adapter.method.rewrites_base:  # re-expressed for the original base
        assert (logits(fresh, tiny_inputs) - logits(adapted, tiny_inputs)).abs().max() <= 1e-5
    else:
        assert torch.equal(logits(fresh, tiny_inputs), logits(adapted, tiny_inputs))


def test_peft_loads_ours_with_same_logits(adapted, tiny_inputs, tmp_path):
    randomize_adapter(adapted)
    save_adapter(adapted, tmp_path)
    theirs = peft.PeftModel.from_pretrained(plain_base(adapted), tmp_path).eval()
    assert (logits(theirs, tiny_inputs) - logits(adapted, tiny_inputs)).abs().max() <= 1e-5


def test_we_load_peft_adapter_with_same_logits(adapted, tiny_inputs, tmp_path):
    # Build the same adapter in peft from our config, give it its own random values.
    from peftlab.formats.peft import peft_config_dict

    # inference_mode=False: peft freezes an inference-mode adapter, and the random values
    # below would then never be added (every adapter would be compared at its identity).
    cfg = peft.get_peft_config({**peft_config_dict(adapted), "inference_mode": False})
    theirs = peft.get_peft_model(plain_base(adapted), cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in theirs.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    assert any(p.requires_grad for p in theirs.parameters())
    theirs.eval().save_pretrained(tmp_path)
    ours = make_tiny_llama()
    load_adapter_into(ours, tmp_path, **load_kwargs(adapted))
    assert (logits(ours, tiny_inputs) - logits(theirs, tiny_inputs)).abs().max() <= 1e-5


def test_parameter_counts(adapted):
    counts = count_parameters(adapted)
    base_total = sum(p.numel() for p in make_tiny_llama().parameters())
    adapter = sum(
        p.numel() for _, lay in adapter_layers(adapted) for p in lay.adapter_params().values()
    )
    assert counts["trainable"] == adapter > 0
    assert counts["total"] == base_total + adapter


def test_adapter_for_another_model_is_rejected(adapted, tmp_path):
    randomize_adapter(adapted)
    save_adapter(adapted, tmp_path)
    wider = make_tiny_llama(hidden_size=48, intermediate_size=96)
    with pytest.raises(AdapterMismatchError, match=r"module model\.layers\.\d\.\w+\.\w+_proj"):
        load_adapter_into(wider, tmp_path)
    shallower = make_tiny_llama(num_hidden_layers=1)
    with pytest.raises(AdapterMismatchError, match=r"layers\.1|matched no Linear"):
        load_adapter_into(shallower, tmp_path)


@pytest.mark.parametrize("name", ADAPTERS)
def test_unknown_target_module_lists_linear_names(name):
    model = make_tiny_llama()
    with pytest.raises(ValueError, match=r"'q_prj'.*q_proj.*v_proj"):
        inject(model, make_method(name, {"target_modules": ["q_proj", "q_prj"]}))
    # nothing was swapped in by the failed attempt
    assert not any(isinstance(m, AdapterLayer) for m in model.modules())


def test_rslora_scaling_differs_from_lora():
    plain = get_method("lora", r=16, alpha=8).config.scaling
    rs = get_method("lora", r=16, alpha=8, use_rslora=True).config.scaling
    assert plain == pytest.approx(0.5) and rs == pytest.approx(2.0)


def test_second_merge_of_single_layer_warns_once():
    model = make_tiny_llama()
    inject(model, make_method("lora", {"r": 2}))
    _, layer = next(adapter_layers(model))
    layer.merge()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        layer.merge()
    assert len(rec) == 1 and layer.merged


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_on_eval_model_is_deterministic(name, tiny_inputs):
    model = make_tiny_llama()  # in eval mode
    fields = {f.name for f in dataclasses.fields(METHODS[name].config_cls)}
    inject(model, get_method(name, **({"dropout": 0.5} if "dropout" in fields else {})))
    randomize_adapter(model)
    assert not any(m.training for m in model.modules())
    assert torch.equal(logits(model, tiny_inputs), logits(model, tiny_inputs))
