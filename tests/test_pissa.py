"""PiSSA and OLoRA against peft's initialisation, and their save rule: the saved adapter
applies to the original base and merges to the same model (the shared suite in
test_methods.py covers the rest)."""

from __future__ import annotations

import pytest
import torch

from peftlab.formats.peft import load_adapter_into, save_adapter
from peftlab.methods import get_method
from peftlab.model.inject import adapter_layers, inject, merge_and_unload

from conftest import make_tiny_llama

peft = pytest.importorskip("peft")


def randomize_adapter(model, seed=3, scale=0.2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            for p in layer.adapter_params().values():
                p.add_(torch.randn(p.shape, generator=g) * scale)


@pytest.mark.parametrize(
    "method, opts, init",
    [
        ("pissa", {}, "pissa"),
        ("pissa", {"niter": 2, "use_rslora": True}, "pissa_niter_2"),
        ("olora", {}, "olora"),
    ],
)
def test_initial_factors_and_residual_equal_peft(method, opts, init):
    """Same SVD / QR as peft, same random draws for the randomized SVD: A, B and the
    residual base weight agree to 1e-6 (they come out bit-identical on CPU)."""
    ours = make_tiny_llama()
    torch.manual_seed(7)
    inject(ours, get_method(method, r=4, alpha=8, dropout=0.0, **opts))
    base = make_tiny_llama()  # (it seeds the RNG itself)
    torch.manual_seed(7)
    cfg = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        use_rslora=opts.get("use_rslora", False),
        target_modules="all-linear",
        init_lora_weights=init,
    )
    theirs = peft.get_peft_model(base, cfg).base_model.model
    layers = dict(adapter_layers(ours))
    assert len(layers) == 14
    original = make_tiny_llama()
    for name, layer in layers.items():
        peer = theirs.get_submodule(name)
        pairs = [
            (layer.lora_A.weight, peer.lora_A["default"].weight),
            (layer.lora_B.weight, peer.lora_B["default"].weight),
            (layer.base_layer.weight, peer.base_layer.weight),
        ]
        for a, b in pairs:
            assert (a - b).abs().max() <= 1e-6, name
        # the residual is not the original weight: the base was really rewritten
        assert (layer.base_layer.weight - original.get_submodule(name).weight).abs().max() > 1e-3


@pytest.mark.parametrize("method", ["pissa", "olora"])
def test_saved_adapter_merges_to_same_model_on_original_base(method, tmp_path, tiny_inputs):
    """The converted rank-2r file, loaded as plain LoRA on the unmodified base, merges to
    the weights our trained (residual-base) model merges to."""
    model = make_tiny_llama()
    inject(model, get_method(method, r=4, alpha=8, dropout=0.0))
    randomize_adapter(model)
    save_adapter(model, tmp_path)
    cfg = peft.PeftConfig.from_pretrained(tmp_path)
    assert (cfg.r, cfg.lora_alpha, cfg.init_lora_weights) == (8, 16, True)
    loaded = make_tiny_llama()
    info = load_adapter_into(loaded, tmp_path)
    assert info.method.name == "lora"
    ours = merge_and_unload(model).state_dict()
    again = merge_and_unload(loaded).state_dict()
    assert ours.keys() == again.keys()
    assert max((ours[k] - again[k]).abs().max().item() for k in ours) <= 1e-6


def test_unconverted_file_needs_its_method():
    """A file saved with save_as_lora: false names its init: LoRA must not claim it."""
    from peftlab.methods import method_for_peft_config

    cfg = {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"]}
    assert method_for_peft_config(dict(cfg, init_lora_weights="pissa_niter_3")).config.niter == 3
    assert method_for_peft_config(dict(cfg, init_lora_weights="olora")).name == "olora"
    assert method_for_peft_config(dict(cfg, init_lora_weights=True)).name == "lora"


def test_compare_wide_preset_lists_every_method_with_valid_options():
    """configs/compare-wide.yaml names every method compared by default, and each
    method's mapping builds a valid run configuration (no model is loaded)."""
    from pathlib import Path

    from peftlab import build_config
    from peftlab.compare.grid import split_compare_config
    from peftlab.config import load_yaml
    from peftlab.methods import METHODS

    path = Path(__file__).parent.parent / "configs" / "compare-wide.yaml"
    methods, per_method, common = split_compare_config(load_yaml(path))
    expected = {n for n, cls in METHODS.items() if cls.compare_by_default}
    assert set(methods) == expected
    for name in methods:
        cfg = build_config({**common, **per_method.get(name, {}), "method": name})
        assert cfg.method == name
