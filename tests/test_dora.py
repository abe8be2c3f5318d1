"""DoRA-specific checks (arXiv 2402.09353): the factored row norm, its detachment (§4.3)
against peft's gradients, no dense out×in tensor in forward/backward, merge round trips,
and a short real training run. The shared suite in test_methods.py covers the rest."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from peftlab import train
from peftlab.methods import LoRA, get_method, method_for_peft_config
from peftlab.methods import dora as dora_mod
from peftlab.methods.dora import DoRA, DoraLinear, dora_row_norm, row_sq_norms
from peftlab.model.inject import inject
from test_train import toy_config

from conftest import make_tiny_llama

peft = pytest.importorskip("peft")

OUT, IN, R = 40, 72, 4


def dense_norm(w0, a, b, s, dtype=torch.float32):
    """The reference: ‖W0 + s·B A‖_row from the dense out×in matrix."""
    w = w0.to(dtype) + s * (b.to(dtype) @ a.to(dtype))
    return torch.linalg.norm(w, dim=1)


def rand(*shape, seed, scale=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale).to(dtype)


def make_layer(bias=True, dropout=0.0, seed=0, r=R, alpha=8.0, out_f=OUT, in_f=IN):
    torch.manual_seed(seed)
    layer = DoraLinear(nn.Linear(in_f, out_f, bias=bias), r=r, scaling=alpha / r, dropout=dropout)
    with torch.no_grad():  # non-trivial adapter: B = 0 and m = ‖W0‖ would prove little
        layer.lora_B.weight.copy_(rand(out_f, r, seed=seed + 1, scale=0.3))
        layer.lora_magnitude_vector.mul_(1 + 0.2 * rand(out_f, seed=seed + 2))
    return layer


# -- the factored norm ---------------------------------------------------------------------
@pytest.mark.parametrize("adapter_scale", [0.01, 1.0, 30.0], ids=["small", "unit", "large"])
def test_factored_norm_equals_dense_formula(adapter_scale):
    w0 = rand(OUT, IN, seed=1)
    a = rand(R, IN, seed=2, scale=adapter_scale)
    b = rand(OUT, R, seed=3, scale=adapter_scale)
    got = dora_row_norm(w0, row_sq_norms(w0), a, b, scaling=2.0)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, dense_norm(w0, a, b, 2.0), rtol=1e-5, atol=0)
    # and against fp64, so the fp32 reference is not what we are agreeing with by chance
    ref64 = dense_norm(w0, a, b, 2.0, dtype=torch.float64).float()
    torch.testing.assert_close(got, ref64, rtol=1e-5, atol=0)


def test_factored_norm_bf16_weight_uses_fp32_row_blocks(monkeypatch):
    monkeypatch.setattr(dora_mod, "_FP32_BLOCK_ELEMS", 3 * IN)  # many blocks, a ragged last
    w0 = rand(OUT, IN, seed=1, dtype=torch.bfloat16)
    a, b = rand(R, IN, seed=2), rand(OUT, R, seed=3)
    got = dora_row_norm(w0, row_sq_norms(w0), a, b, scaling=0.5)
    torch.testing.assert_close(
        got, dense_norm(w0, a, b, 0.5, dtype=torch.float64).float(), rtol=1e-5, atol=0
    )


def test_cancelling_row_is_clamped_not_nan():
    w0, a, b = rand(OUT, IN, seed=1), rand(R, IN, seed=2), torch.zeros(OUT, R)
    # Row 0 of s·B A is exactly −W0[0] in exact arithmetic: the norm² cancels to ~0.
    a[0] = w0[0]
    b[0, 0] = -1.0
    got = dora_row_norm(w0, row_sq_norms(w0), a, b, scaling=1.0)
    assert torch.isfinite(got).all() and got[0] >= 0 and got[0] < 1e-2
    torch.testing.assert_close(got[1:], torch.linalg.norm(w0[1:], dim=1), rtol=1e-6, atol=0)


def test_weight_norm_follows_weight_changes():
    layer = make_layer()
    w = layer.base_layer.weight
    a, b, s = layer.lora_A.weight, layer.lora_B.weight, layer.scaling
    torch.testing.assert_close(layer.weight_norm(), dense_norm(w, a, b, s), rtol=1e-5, atol=0)
    with torch.no_grad():
        w.mul_(3.0)  # in place: the cached ‖W0‖² must not be reused
    torch.testing.assert_close(layer.weight_norm(), dense_norm(w, a, b, s), rtol=1e-5, atol=0)
    layer.double()  # dtype change
    assert layer.weight_norm().dtype == torch.float32
    torch.testing.assert_close(layer.weight_norm(), dense_norm(w.data, a, b, s), rtol=1e-5, atol=0)


def test_norm_stays_fp32_under_bf16_autocast():
    layer = make_layer()
    ref = layer.weight_norm()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer.weight_norm()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=0)


def test_small_magnitude_change_survives_bf16_autocast():
    # f = 1.003: in bf16, f itself rounds to 1.0 (spacing 2⁻⁷ near 1), so f − 1 must be
    # formed in fp32 before the cast, or a trained magnitude would vanish under autocast.
    layer = make_layer(bias=False)
    with torch.no_grad():
        layer.lora_B.weight.zero_()
        layer.lora_magnitude_vector.copy_(1.003 * torch.linalg.norm(layer.weight, dim=1))
    x = rand(64, IN, seed=4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        change = (layer(x) - layer.base_layer(x)).float()
        base = layer.base_layer(x).float()
    # A bf16 output cannot hold a 0.3% change elementwise; its least-squares slope can.
    slope = (change * base).sum() / (base * base).sum()
    assert slope.item() == pytest.approx(0.003, abs=3e-4)


def test_inference_mode_forward_does_not_poison_training():
    layer = make_layer()
    x = rand(3, IN, seed=9)
    with torch.inference_mode():
        layer(x)  # first call: ‖W0‖² computed here must not be cached as inference tensor
    layer(x).sum().backward()
    assert layer.lora_magnitude_vector.grad is not None


# -- against peft: values and gradients ----------------------------------------------------
class _Net(nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin


def peft_twin(ours: DoraLinear, dropout: float):
    """peft's DoRA on a copy of our base layer, with our adapter values copied in."""
    base = nn.Linear(IN, OUT, bias=ours.base_layer.bias is not None)
    base.load_state_dict(ours.base_layer.state_dict())
    cfg = peft.LoraConfig(
        r=R, lora_alpha=8, lora_dropout=dropout, use_dora=True, target_modules=["lin"]
    )
    theirs = peft.get_peft_model(_Net(base), cfg).base_model.model.lin
    with torch.no_grad():
        theirs.lora_A["default"].weight.copy_(ours.lora_A.weight)
        theirs.lora_B["default"].weight.copy_(ours.lora_B.weight)
        theirs.lora_magnitude_vector["default"].weight.copy_(ours.lora_magnitude_vector)
    return theirs


def peft_grads(layer):
    return [
        layer.lora_A["default"].weight.grad,
        layer.lora_B["default"].weight.grad,
        layer.lora_magnitude_vector["default"].weight.grad,
    ]


def our_grads(layer):
    return [layer.lora_A.weight.grad, layer.lora_B.weight.grad, layer.lora_magnitude_vector.grad]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_outputs_and_gradients_equal_peft(bias, dropout):
    ours = make_layer(bias=bias, dropout=dropout)
    theirs = peft_twin(ours, dropout)
    ours.train(), theirs.train()
    x = rand(2, 5, IN, seed=7).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    probe = rand(2, 5, OUT, seed=8)
    torch.manual_seed(123)  # same dropout mask: each applies dropout once to x
    y_ours = ours(x)
    torch.manual_seed(123)
    y_theirs = theirs(x2)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    (y_ours * probe).sum().backward()
    (y_theirs * probe).sum().backward()
    for g_ours, g_theirs in zip(our_grads(ours) + [x.grad], peft_grads(theirs) + [x2.grad]):
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-5)


def test_bias_is_not_rescaled():
    layer = make_layer(bias=True).eval()
    x = rand(4, IN, seed=5)
    w, b = layer.base_layer.weight, layer.base_layer.bias
    f = layer.lora_magnitude_vector / dense_norm(
        w, layer.lora_A.weight, layer.lora_B.weight, layer.scaling
    )
    dense = w + layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
    expected = f * (x @ dense.T) + b  # paper Eq. 5, bias added after the magnitude
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_norm_is_detached_magnitude_grad_is_direction():
    layer = make_layer(bias=False)
    x = rand(6, IN, seed=4)
    layer(x).sum().backward()
    with torch.no_grad():
        v = layer.base_layer.weight + layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
        expected = (x @ v.T).sum(0) / torch.linalg.norm(v, dim=1)
    # with the norm constant, d/dm of m/‖V‖ ⊙ V x is V x / ‖V‖ and nothing else
    torch.testing.assert_close(layer.lora_magnitude_vector.grad, expected, rtol=1e-5, atol=1e-5)


# -- no dense out×in tensor ----------------------------------------------------------------
class _BigTensorSpy(TorchDispatchMode):
    """Records every op result with at least ``limit`` elements that has its own storage
    (a view such as ``W0.t()`` inside F.linear allocates nothing and is not counted)."""

    def __init__(self, limit, exempt):
        super().__init__()
        self.limit = limit
        self.exempt = {t.untyped_storage().data_ptr() for t in exempt}
        self.hits = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if (
                isinstance(t, torch.Tensor)
                and t.numel() >= self.limit
                and t.untyped_storage().data_ptr() not in self.exempt
            ):
                self.hits.append((str(func), tuple(t.shape)))
        return out


def _spy_forward_backward(layer, weight):
    x = rand(2, 3, IN, seed=6)  # 6 tokens: every activation is far smaller than out×in
    with _BigTensorSpy(OUT * IN, exempt=[weight]) as spy:
        layer(x).sum().backward()
    return spy.hits


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_forward_and_backward_form_no_out_by_in_tensor(dropout):
    layer = make_layer(bias=True, dropout=dropout).train()
    assert _spy_forward_backward(layer, layer.base_layer.weight) == []


def test_dense_spy_catches_peft_dense_norm():
    # The spy is not vacuous: peft's DoRA forms B·A (and W0 + sBA) densely and is caught.
    ours = make_layer(bias=True)
    theirs = peft_twin(ours, 0.0)
    hits = _spy_forward_backward(theirs, theirs.base_layer.weight)
    assert any(shape in {(OUT, IN), (IN, OUT)} for _, shape in hits), hits


# -- merging -------------------------------------------------------------------------------
def test_merge_unmerge_round_trip_and_delta_weight():
    layer = make_layer(bias=True).eval()
    w0 = layer.base_layer.weight.detach().clone()
    x = rand(5, IN, seed=3)
    ref = layer(x)
    delta = layer.delta_weight()
    layer.merge()
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.base_layer.weight - w0, delta, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer.delta_weight(), delta, rtol=0, atol=1e-6)
    with torch.no_grad():
        layer.lora_magnitude_vector.mul_(0.5)  # e.g. weight decay while merged
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, w0, rtol=0, atol=1e-6)


def test_zero_magnitude_row_survives_merge_round_trip():
    layer = make_layer().eval()
    with torch.no_grad():
        layer.lora_magnitude_vector[3] = 0.0  # merge zeroes row 3: not divisible back
    w0 = layer.base_layer.weight.detach().clone()
    layer.merge()
    assert torch.all(layer.base_layer.weight[3] == 0)
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, w0, rtol=0, atol=1e-6)


# -- config, registry, training ------------------------------------------------------------
def test_peft_config_selects_dora_not_lora():
    model = make_tiny_llama()
    method = get_method("dora", r=4, alpha=8)
    cfg = method.to_peft_config(["q_proj"], {})
    assert cfg["peft_type"] == "LORA" and cfg["use_dora"] is True
    assert isinstance(method_for_peft_config(cfg), DoRA)
    assert not LoRA.accepts_peft_config(cfg)
    assert type(method_for_peft_config({**cfg, "use_dora": False})) is LoRA
    inject(model, method)
    assert all(
        isinstance(m, DoraLinear)
        for n, m in model.named_modules()
        if n.endswith(("q_proj", "down_proj"))
    )


def test_training_a_few_steps_with_the_real_loop(tmp_path, tiny_model_dir):
    res = train(
        toy_config(
            tmp_path,
            tiny_model_dir,
            method="dora",
            max_steps=30,
            lr=5e-2,
            dropout=0.1,
            save_every=0,
        )
    )
    assert res["after"]["eval_loss"] < res["before"]["eval_loss"] - 0.1
    run = tmp_path / "run"
    cfg = json.loads((run / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["use_dora"] is True
    w = load_file(run / "adapter_model.safetensors")
    mags = [k for k in w if k.endswith(".lora_magnitude_vector")]
    assert mags and all(torch.isfinite(t).all() for t in w.values())
    # the magnitudes trained: they moved away from their start ‖W0‖_row
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    moved = 0.0
    for k in mags:
        path = k.removeprefix("base_model.model.").removesuffix(".lora_magnitude_vector")
        w0 = base.get_submodule(path).weight.detach()
        moved = max(moved, (w[k] - torch.linalg.norm(w0, dim=1)).abs().max().item())
    assert moved > 1e-3
