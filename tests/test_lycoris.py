"""LoHa and LoKr beyond the shared suite (tests/test_methods.py): LoKr's factor shapes
against peft's for every option, the two dropouts' equations, options from the CLI and
YAML, and resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from peftlab.cli import build_parser
from peftlab.config import build_config
from peftlab.methods import get_method
from peftlab.methods.loha import LohaConfig, LohaLinear
from peftlab.methods.lokr import LokrConfig, LokrLinear, factorization
from peftlab.model.inject import adapter_layers, inject

from conftest import make_tiny_llama

peft = pytest.importorskip("peft")


def test_factorization_is_peft_rule():
    from peft.tuners.lokr.layer import factorization as theirs

    for dim in (*range(1, 130), 576, 1536, 4096, 14336, 151936):
        for factor in (-1, 1, 2, 3, 4, 8, 16, 24, 100):
            assert factorization(dim, factor) == theirs(dim, factor), (dim, factor)


@pytest.mark.parametrize(
    "opts",
    [
        dict(r=1),
        dict(r=4),
        dict(r=8),
        dict(r=2, decompose_both=True),
        dict(r=1, decompose_both=True, decompose_factor=4),
        dict(r=3, decompose_factor=8),
        dict(r=16, decompose_both=True, decompose_factor=2),
    ],
)
def test_lokr_parameters_are_peft_names_and_shapes(opts):
    """Which of lokr_w1 / lokr_w1_a,b / lokr_w2 / lokr_w2_a,b exist, and their shapes,
    equal peft's on every layer of the tiny model (its in/out sizes 16, 32 and 64)."""
    ours = make_tiny_llama()
    inject(ours, get_method("lokr", **opts))
    got = {
        f"{name}.{k}": tuple(p.shape)
        for name, layer in adapter_layers(ours)
        for k, p in layer.adapter_params().items()
    }
    cfg = peft.LoKrConfig(target_modules="all-linear", **opts)
    theirs = peft.get_peft_model(make_tiny_llama(), cfg)
    want = {
        n.removeprefix("base_model.model.").removesuffix(".default"): tuple(p.shape)
        for n, p in theirs.named_parameters()
        if p.requires_grad
    }
    assert got == want


def _layer(cls, config):
    torch.manual_seed(0)
    layer = cls(nn.Linear(24, 40, bias=False), config)
    with torch.no_grad():
        for p in layer.adapter_params().values():
            p.normal_()
    return layer


@pytest.mark.parametrize(
    "cls,config,rescaled",
    [
        (LohaLinear, LohaConfig(r=2, rank_dropout=0.5), True),
        (LokrLinear, LokrConfig(r=2, rank_dropout=0.5), False),
        (LokrLinear, LokrConfig(r=2, rank_dropout=0.5, rank_dropout_scale=True), True),
    ],
)
def test_rank_dropout_masks_output_rows_of_the_update(cls, config, rescaled):
    """Training: ΔW x with whole output features dropped (the same ones for every
    token), the rest scaled by out/kept when the method rescales; evaluation: ΔW x."""
    layer = _layer(cls, config)
    x = torch.randn(5, 24)
    with torch.no_grad():
        full = x @ layer.delta_weight().T
        layer.train()
        torch.manual_seed(1)
        got = layer(x) - layer.base_layer(x)
        layer.eval()
        assert torch.allclose(layer(x) - layer.base_layer(x), full, atol=1e-5)
    kept = got.abs().sum(0) > 0
    assert 0 < kept.sum() < 40  # some rows dropped, some kept (p = 0.5, 40 rows)
    scale = 40 / kept.sum() if rescaled else 1.0
    assert torch.allclose(got[:, kept], full[:, kept] * scale, atol=1e-4)
    assert torch.equal(got[:, ~kept], torch.zeros_like(got[:, ~kept]))


def test_module_dropout_skips_whole_updates_while_training_only():
    layer = _layer(LohaLinear, LohaConfig(r=2, module_dropout=0.5))
    x = torch.randn(3, 24)
    torch.manual_seed(2)
    with torch.no_grad():
        base = layer.base_layer(x)
        layer.train()
        skipped = sum(torch.equal(layer(x), base) for _ in range(200))
        layer.eval()
        assert not torch.equal(layer(x), base)
    assert 70 <= skipped <= 130  # Binomial(200, 0.5): ~4.2 standard deviations either side


def test_options_flow_from_cli_and_yaml(tmp_path):
    ns = build_parser().parse_args(
        ["train", "--method", "lokr", "--decompose-both", "--decompose-factor", "8"]
    )
    assert (ns.method, ns.decompose_both, ns.decompose_factor) == ("lokr", True, 8)
    path = tmp_path / "run.yaml"
    path.write_text("method: loha\nadapter: {r: 4, alpha: 2, module_dropout: 0.1}\n")
    cfg = build_config(str(path))
    assert cfg.adapter == {"r": 4, "alpha": 2, "module_dropout": 0.1}
    assert get_method(cfg.method, **cfg.adapter).config.scaling == 0.5
    with pytest.raises(ValueError, match="decompose_factor"):
        build_config(method="lokr", decompose_factor=0)
    with pytest.raises(ValueError, match=r"unknown option.*decompose_both.*'loha'"):
        build_config(method="loha", decompose_both=True)


def test_peft_config_with_layer_patterns_is_refused(tmp_path):
    from peftlab.formats.peft import load_adapter_into

    model = peft.get_peft_model(
        make_tiny_llama(),
        peft.LoHaConfig(r=2, target_modules=["q_proj"], rank_pattern={"q_proj": 4}),
    )
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"rank_pattern=\{'q_proj': 4\}.*LoHa"):
        load_adapter_into(make_tiny_llama(), tmp_path)


def test_lokr_resume_gives_same_losses_and_weights(tmp_path, tiny_model_dir, monkeypatch):
    from peftlab import train
    from test_train import losses, train_interrupted_after

    from conftest import write_toy_dataset

    def cfg(d, **more):
        return build_config(
            model=tiny_model_dir,
            dataset=write_toy_dataset(d / "toy.json"),
            output=str(d / "run"),
            method="lokr",
            r=2,
            alpha=4,
            rank_dropout=0.2,
            module_dropout=0.2,
            max_steps=4,
            save_every=2,
            batch_size=4,
            lr=5e-3,
            mixed_precision="no",
            exact_match_limit=0,
            progress=False,
            max_length=64,
            seed=11,
            **more,
        )

    train(cfg(tmp_path / "a"))
    train_interrupted_after(2, cfg(tmp_path / "b"), monkeypatch)
    train(cfg(tmp_path / "b", resume=True))
    ref, got = losses(tmp_path / "a" / "run"), losses(tmp_path / "b" / "run")
    assert sorted(got) == [1, 2, 3, 4]
    for step in (3, 4):
        assert got[step] == pytest.approx(ref[step], abs=1e-6), step
    a = load_file(tmp_path / "a" / "run" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "run" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and any("lokr_w2_a" in k for k in a)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("r", [2, 5], ids=["factorised", "formed"])
def test_lean_hadamard_linear_equals_the_formed_product(autocast, r):
    """LoHa's lean path B'(A'x) gives the plain path's s ((B1 A1) ⊙ (B2 A2)) x and the
    same gradients (r=2: 4·(30+20) < 600, factorised; r=5: 25·50 > 600, ΔW formed)."""
    from peftlab.methods.lean import LeanOps, PlainOps

    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(s, generator=g, requires_grad=True) for s in [(20, r), (r, 30)] * 2]
    x = torch.randn(2, 3, 30, generator=g, requires_grad=True)
    outs, grads = [], []
    for ops in (PlainOps, LeanOps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = ops.hadamard_linear(x, *ws, 0.5)
        (y.float() * torch.linspace(-1, 1, 20)).sum().backward()
        outs.append(y.float())
        grads.append([t.grad.clone() for t in (x, *ws)])
        for t in (x, *ws):
            t.grad = None
    assert outs[0].shape == (2, 3, 20)
    tol = 5e-2 if autocast else 1e-4
    scale = outs[0].abs().max()
    assert (outs[0] - outs[1]).abs().max() <= tol * scale
    for a, b in zip(*grads):
        assert (a - b).abs().max() <= tol * a.abs().max()
