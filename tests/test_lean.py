"""Lean layers (methods/lean.py) compute what the plain ops compute (issue 26).

Bit for bit, values and gradients: ``frozen_linear``, ``silu_mul``, ``dropout_linear`` in
fp32 and without dropout, ``scale_rows`` but for f's gradient. Up to rounding: the in-place
sum (one rounding where the plain sum has two), ``dropout_linear`` under bf16 autocast with
dropout (the lean one drops the input after its cast to bf16, the plain one before: the
same mask from the same random draw, values one rounding apart), and f's gradient in
``scale_rows`` (recovered from the saved output). The bound, for every value and gradient
of an op or of a whole adapter layer: |lean − plain| ≤ tol · max|plain|, tol
:data:`FP32_TOL` in fp32 (float32 rounding) and :data:`BF16_TOL` under bf16 autocast (two
rounding units of bf16 at the largest value); for the losses of a few training steps, the
relative :data:`LOSS_TOL`.
"""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from torch import nn

from peftlab import build_config, train
from peftlab.memory.measure import saved_tensor_census
from peftlab.methods import get_method
from peftlab.methods.lean import LeanOps, PlainOps
from peftlab.model.inject import adapter_layers, inject, use_lean_layers
from test_train import losses

from conftest import make_tiny_llama, write_toy_dataset

FP32_TOL = 1e-6
BF16_TOL = 2.0**-6
LOSS_TOL = {False: 1e-5, True: 1e-3}
"""Relative bound on a loss after a few optimiser steps, fp32 and under bf16 autocast:
the values' rounding, compounded through the steps (observed: equal in fp32, 3e-5 under
bf16 autocast, on the tiny Llama)."""
MODES = [False, True]
MODE_IDS = ["fp32", "bf16-autocast"]


def assert_near(lean: torch.Tensor, plain: torch.Tensor, autocast: bool, what: str):
    assert lean.dtype == plain.dtype, what
    tol = BF16_TOL if autocast else FP32_TOL
    err = (lean.float() - plain.float()).abs().max().item()
    assert err <= tol * plain.float().abs().max().item(), (what, err)


def _autocast(on: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)


# -- the ops, one by one --------------------------------------------------------------------
# Each case returns its results (values and gradients) and the tensors it holds itself
# (inputs, weights): what backward keeps beyond those is what the lean ops exist to cut.
def _frozen_linear(ops, autocast):
    torch.manual_seed(0)
    layer = nn.Linear(48, 40).requires_grad_(False)
    x = torch.randn(3, 5, 48, requires_grad=True)
    with _autocast(autocast):
        y = ops.frozen_linear(layer, x)
    (y.float() * torch.randn(y.shape)).sum().backward()
    return {"y": y, "x.grad": x.grad}, [x, *layer.parameters()]


def _dropout_linear(p):
    def run(ops, autocast):
        torch.manual_seed(0)
        x = torch.randn(3, 5, 48, requires_grad=True)
        w = torch.randn(4, 48, requires_grad=True)
        gy = torch.randn(3, 5, 4)
        torch.manual_seed(7)  # the same draw for both: one mask
        with _autocast(autocast):
            y = ops.dropout_linear(x, w, nn.Dropout(p) if p else nn.Identity())
        (y.float() * gy).sum().backward()
        return {"y": y, "x.grad": x.grad, "w.grad": w.grad}, [x, w]

    return run


def _add_scaled_linear(ops, autocast):
    torch.manual_seed(0)
    base = nn.Linear(48, 40).requires_grad_(False)
    x = torch.randn(3, 5, 48, requires_grad=True)
    h = torch.randn(3, 5, 4, dtype=torch.bfloat16 if autocast else None).requires_grad_()
    w = torch.randn(40, 4, requires_grad=True)
    with _autocast(autocast):
        y = ops.add_scaled_linear(base(x), h, w, 0.7)
    (y.float() * torch.randn(y.shape)).sum().backward()
    return {"y": y, "x.grad": x.grad, "h.grad": h.grad, "w.grad": w.grad}, [x, h, w]


def _scale_rows(ops, autocast):
    torch.manual_seed(0)
    z0 = torch.randn(3, 5, 40).to(torch.bfloat16 if autocast else torch.float32)
    z0.requires_grad_(True)
    f = (1 + 0.01 * torch.randn(40)).requires_grad_(True)
    gy = torch.randn(3, 5, 40)
    with _autocast(autocast):
        z = z0 * 2  # an activation: held by no one but autograd
        y = ops.scale_rows(z, f)
        (y.square().float() * gy).sum().backward()  # the next op saves y too
    return {"y": y, "z.grad": z0.grad, "f.grad": f.grad}, [z0, f]


def _silu_mul(ops, autocast):
    torch.manual_seed(0)
    dtype = torch.bfloat16 if autocast else torch.float32
    a, b = (torch.randn(3, 5, 40).to(dtype).requires_grad_(True) for _ in range(2))
    with _autocast(autocast):
        y = ops.silu_mul(a, b)
    y.backward(torch.randn(y.shape).to(dtype))
    return {"y": y, "g.grad": a.grad, "u.grad": b.grad}, [a, b]


# op -> (run, the results that are the same bits: in fp32, under bf16 autocast)
OPS = {
    "frozen_linear": (_frozen_linear, {"y", "x.grad"}, {"y", "x.grad"}),
    "dropout_linear-p0": (
        _dropout_linear(0.0),
        {"y", "x.grad", "w.grad"},
        {"y", "x.grad", "w.grad"},
    ),
    "dropout_linear-p0.3": (_dropout_linear(0.3), {"y", "x.grad", "w.grad"}, set()),
    "add_scaled_linear": (_add_scaled_linear, {"x.grad"}, {"x.grad"}),
    "scale_rows": (_scale_rows, {"y", "z.grad"}, {"y", "z.grad"}),
    "silu_mul": (_silu_mul, {"y", "g.grad", "u.grad"}, {"y", "g.grad", "u.grad"}),
}


@pytest.mark.parametrize("autocast", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("op", list(OPS))
def test_each_lean_op_equals_the_plain_one(op, autocast):
    run, exact_fp32, exact_bf16 = OPS[op]
    (lean, _), (plain, _) = run(LeanOps, autocast), run(PlainOps, autocast)
    assert lean.keys() == plain.keys()
    for name in lean:
        if name in (exact_bf16 if autocast else exact_fp32):
            assert torch.equal(lean[name], plain[name]), name
        else:
            assert_near(lean[name], plain[name], autocast, name)


def _kept_bytes(run, ops) -> int:
    """Bytes autograd saves for backward beyond the tensors the caller holds anyway."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        _, held = run(ops, True)
    own = {t.untyped_storage().data_ptr() for t in held}
    sizes = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved}
    return sum(n for ptr, n in sizes.items() if ptr not in own)


@pytest.mark.parametrize("op", ["frozen_linear", "dropout_linear-p0.3", "scale_rows", "silu_mul"])
def test_the_lean_op_keeps_less(op):
    """What each lean form exists for, under bf16 autocast. (The in-place sum saves
    no tensor either way: it saves an allocation, not a saved activation.)"""
    run = OPS[op][0]
    assert _kept_bytes(run, LeanOps) < _kept_bytes(run, PlainOps)


# -- layers and models ------------------------------------------------------------------------
LAYERS = {
    "lora": dict(r=4, alpha=8),
    "adalora": dict(init_r=4, target_r=2, alpha=8),
    "dora": dict(r=4, alpha=8),
}


def _layer_pair(method: str, dropout: float):
    torch.manual_seed(0)
    lean = get_method(method, dropout=dropout, **LAYERS[method]).wrap(nn.Linear(48, 40), "proj")
    with torch.no_grad():  # B (and AdaLoRA's Λ) start at 0: make every factor count
        for p in lean.adapter_params().values():
            p.add_(0.1 * torch.randn(p.shape))
    plain = copy.deepcopy(lean)
    plain.ops = PlainOps
    return lean.train(), plain.train()


def _layer_step(layer, x, gy, autocast):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(5)
    with _autocast(autocast):
        y = layer(x)
    (y.float() * gy).sum().backward()
    return {"y": y, "x.grad": x.grad, **{n: p.grad for n, p in layer.adapter_params().items()}}


@pytest.mark.parametrize("autocast", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("method", list(LAYERS))
def test_lean_layer_equals_plain_layer(method, dropout, autocast):
    lean, plain = _layer_pair(method, dropout)
    assert lean.ops is LeanOps  # the default
    g = torch.Generator().manual_seed(1)
    x, gy = torch.randn(3, 7, 48, generator=g), torch.randn(3, 7, 40, generator=g)
    a, b = _layer_step(lean, x, gy, autocast), _layer_step(plain, x, gy, autocast)
    assert a.keys() == b.keys()
    for name in a:
        assert_near(a[name], b[name], autocast, f"{method} {name}")


def _census(lean: bool) -> dict:
    model = make_tiny_llama(hidden_size=64, intermediate_size=128)
    inject(model, get_method("lora", r=4, dropout=0.1), lean_layers=lean)
    model.train()
    with saved_tensor_census(model) as counts:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=torch.randint(3, 100, (2, 31))).logits.float().sum()
    return counts


def test_the_switch_reaches_every_layer_and_mlp():
    model = make_tiny_llama()
    inject(model, get_method("lora", r=4), lean_layers=False)
    mlps = [m for m in model.modules() if hasattr(m, "gate_proj")]
    layers = [layer for _, layer in adapter_layers(model)]
    assert len(layers) == 14 and all(layer.ops is PlainOps for layer in layers)
    assert mlps and not any("forward" in vars(m) for m in mlps)  # the model's own
    use_lean_layers(model, True)
    assert all(layer.ops is LeanOps for layer in layers)
    assert all("forward" in vars(m) for m in mlps)
    use_lean_layers(model, False)
    assert all(layer.ops is PlainOps for layer in layers)
    assert not any("forward" in vars(m) for m in mlps)
    # and it is what saves the memory: plain layers keep autocast's weight copies, a
    # dropout mask beside the input and SiLU's output
    lean, plain = _census(True), _census(False)
    assert lean.get("autocast weight copies", 0) == 0 < plain["autocast weight copies"]
    for kind in ("adapter", "mlp activation"):
        assert lean[kind] < plain[kind], kind


def _steps(method: str, lean: bool, autocast: bool, n: int = 3) -> list[float]:
    model = make_tiny_llama()
    options = {} if method == "full" else dict(dropout=0.1, **LAYERS[method])
    inject(model, get_method(method, **options), lean_layers=lean)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    ids = torch.randint(3, 100, (2, 13), generator=torch.Generator().manual_seed(2))
    torch.manual_seed(4)  # the dropout masks: the same draws for both
    out = []
    for _ in range(n):
        with _autocast(autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append(loss.item())
    return out


@pytest.mark.parametrize("autocast", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("method", [*LAYERS, "full"])
def test_training_steps_give_the_same_losses(method, autocast):
    """A few optimiser steps with dropout: the losses agree within the bound (full
    fine-tuning has only the SwiGLU product to switch: the same bits)."""
    lean, plain = _steps(method, True, autocast), _steps(method, False, autocast)
    assert lean[-1] < lean[0]  # it trains
    if method == "full":
        assert lean == plain
    else:
        assert lean == pytest.approx(plain, rel=LOSS_TOL[autocast]), (lean, plain)


def test_the_run_option_is_saved_and_switches_the_layers(tmp_path, tiny_model_dir):
    data = write_toy_dataset(tmp_path / "toy.json")
    runs = {}
    for flag in (True, False):
        out = tmp_path / str(flag)
        train(
            build_config(
                method="lora",
                model=tiny_model_dir,
                dataset=data,
                max_steps=2,
                batch_size=4,
                lr=5e-3,
                r=4,
                dropout=0.1,
                mixed_precision="bf16",
                exact_match_limit=0,
                max_length=64,
                seed=3,
                progress=False,
                save_every=0,
                output=str(out),
                lean_layers=flag,
            )
        )
        saved = yaml.safe_load(open(out / "config.yaml"))
        assert saved["train"]["lean_layers"] is flag
        runs[flag] = losses(out)
    assert runs[True].keys() == runs[False].keys() and runs[True]
    for step in runs[True]:
        assert runs[True][step] == pytest.approx(runs[False][step], rel=LOSS_TOL[True])
