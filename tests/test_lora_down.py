"""LoRA's first factor with dropout, its mask kept in the dropped input's sign bits
(issue 16's activation lever): same values and gradients as dropout then a Linear, and a
third of the bytes saved."""

from __future__ import annotations

import pytest
import torch

from peftlab.methods.lora_down import lora_down
from test_frozen import lora_census


def _reference(x, weight, p, dtype):
    """The mask drawn from the same generator state, applied, then the matmul, by
    autograd (in fp32 this is exactly ``F.dropout`` followed by ``F.linear``)."""
    xd = x.to(dtype)
    if p > 0:
        xd, _ = torch.native_dropout(xd, p, True)
    return xd @ weight.to(dtype).t()


@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_values_and_gradients_equal_dropout_then_linear(p, autocast, monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=g, requires_grad=True)
    w = torch.randn(4, 16, generator=g, requires_grad=True)
    gy = torch.randn(3, 5, 4, generator=g)
    dtype = torch.bfloat16 if autocast else torch.float32
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.enable_grad()
    torch.manual_seed(7)
    with ctx:
        y = lora_down(x, w, p)
    (y.float() * gy).sum().backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    torch.manual_seed(7)
    y_ref = _reference(x, w, p, dtype)
    (y_ref.float() * gy).sum().backward()
    assert y.dtype == dtype
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    # fp32: the same bits; bf16: the mask's scaling in the gradient may round once
    # differently (autograd's formula for it multiplies in another order)
    tol = dict(rtol=0, atol=0) if not autocast else dict(rtol=1.6e-2, atol=1e-2)
    torch.testing.assert_close(gx, x.grad, **tol)
    torch.testing.assert_close(
        gw, w.grad.to(gw.dtype), **(tol if autocast else dict(rtol=1e-6, atol=1e-6))
    )
    assert gw.dtype == torch.float32 and gx.dtype == torch.float32


def test_fp32_equals_functional_dropout_then_linear():
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(6, 16, generator=g), torch.randn(4, 16, generator=g)
    torch.manual_seed(11)
    y = lora_down(x, w, 0.2)
    torch.manual_seed(11)
    ref = torch.nn.functional.linear(torch.nn.functional.dropout(x, 0.2, True), w)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


def test_dropout_keeps_the_expected_share_and_changes_each_call():
    x = torch.ones(200, 100)
    w = torch.eye(100)
    a, b = lora_down(x, w, 0.25), lora_down(x, w, 0.25)
    kept = (a != 0).float().mean().item()
    assert 0.72 < kept < 0.78
    assert torch.allclose(a[a != 0], torch.full_like(a[a != 0], 1 / 0.75))
    assert not torch.equal(a, b)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_kept_zeros_keep_their_gradient(autocast):
    """The mask lives in the dropped input's sign bits: an input that is exactly +0.0
    or -0.0 and is kept must still pass its gradient, one that is dropped must not."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 64, generator=g)
    x[:, ::3] = 0.0
    x[:, 1::3] = -0.0
    x.requires_grad_(True)
    w = torch.randn(4, 64, generator=g, requires_grad=True)
    gy = torch.randn(8, 4, generator=g)
    dtype = torch.bfloat16 if autocast else torch.float32
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.enable_grad()
    torch.manual_seed(3)
    with ctx:
        y = lora_down(x, w, 0.4)
    (y.float() * gy).sum().backward()
    gx = x.grad.clone()
    x.grad = None
    torch.manual_seed(3)
    _, mask = torch.native_dropout(x.detach().to(dtype), 0.4, True)
    torch.manual_seed(3)
    (_reference(x, w, 0.4, dtype).float() * gy).sum().backward()
    zero = x.detach() == 0
    assert (gx[zero & mask] != 0).all() and (gx[zero & ~mask] == 0).all()
    tol = dict(rtol=0, atol=0) if not autocast else dict(rtol=1.6e-2, atol=1e-2)
    torch.testing.assert_close(gx, x.grad, **tol)


def test_adapters_save_the_dropped_input_only():
    """With every linear layer adapted, each adapter saves its dropped input in bf16 and
    nothing else (the mask is in its sign bits), not a mask in the input's dtype (fp32
    for q/k/v/gate/up) beside it."""
    counts = lora_census(dropout=0.1)
    tokens, layers = 2 * 31, 2
    per_token_layer = counts["adapter"] / tokens / layers
    # 2 bytes per input value per projection (6 of width 64, down of 128) and the r-sized
    # outputs: with a bool mask 3 bytes, before that 6 bytes for the fp32-input ones and
    # 4 for o and down (2,744 B).
    expected = 2 * (6 * 64 + 128) + 7 * 4 * 2
    # (+6% measured: tensors saved once per layer, such as the factors, spread over
    # only 62 tokens; a 1-byte mask beside the input would add 512 B)
    assert per_token_layer <= expected * 1.1, (per_token_layer, expected)


def test_adalora_update_equals_dropout_then_its_factors():
    """AdaLoRA's P Λ Q dropout(x) takes the same path: in fp32 the same bits as
    ``F.dropout`` then the three factors, and the same gradients for P, Λ and Q."""
    from peftlab.methods.adalora import RANKNUM_EPS, AdaLoraLinear

    torch.manual_seed(0)
    layer = AdaLoraLinear(torch.nn.Linear(16, 8), 4, 4, 8.0, 0.3)
    torch.nn.init.normal_(layer.lora_E)  # Λ starts at 0: make every factor count
    layer.train()
    x = torch.randn(3, 5, 16)
    torch.manual_seed(5)
    y = layer.update(x)
    y.square().sum().backward()
    grads = [p.grad.clone() for p in (layer.lora_A, layer.lora_E, layer.lora_B)]
    for p in (layer.lora_A, layer.lora_E, layer.lora_B):
        p.grad = None
    torch.manual_seed(5)
    xd = torch.nn.functional.dropout(x, 0.3, True)
    ref = (
        (xd @ (layer.lora_A * layer.lora_E).T @ layer.lora_B.T)
        * 8.0
        / (layer.ranknum + RANKNUM_EPS)
    )
    ref.square().sum().backward()
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    for g, p in zip(grads, (layer.lora_A, layer.lora_E, layer.lora_B)):
        torch.testing.assert_close(g, p.grad, rtol=1e-6, atol=1e-6)
    layer.eval()  # no dropout: x itself
    torch.testing.assert_close(
        layer.update(x),
        (x @ (layer.lora_A * layer.lora_E).T @ layer.lora_B.T)
        * 8.0
        / (layer.ranknum + RANKNUM_EPS),
        rtol=1e-6,
        atol=1e-6,
    )
