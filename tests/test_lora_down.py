"""LoRA's first factor with dropout, saving only its input (issue 16's activation lever):
same values and gradients as dropout then a Linear, the mask drawn again identically in
backward, and the projections that read one input saving it once."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_llama

from peftlab.memory.measure import saved_tensor_census
from peftlab.methods import get_method
from peftlab.methods.lora_down import _mask, lora_down
from peftlab.model.inject import inject


def _reference(x, weight, p, seed, dtype):
    """Dropout with the same mask, then the matmul, by autograd."""
    xd = x.to(dtype)
    if p > 0:
        xd = xd * _mask(x, p, seed, dtype)
    return xd @ weight.to(dtype).t()


@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_values_and_gradients_equal_dropout_then_linear(p, autocast, monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=g, requires_grad=True)
    w = torch.randn(4, 16, generator=g, requires_grad=True)
    gy = torch.randn(3, 5, 4, generator=g)
    dtype = torch.bfloat16 if autocast else torch.float32
    torch.manual_seed(7)
    seed = int(torch.randint(1 << 62, (1,)).item()) if p > 0 else 0
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.enable_grad()
    torch.manual_seed(7)
    with ctx:
        y = lora_down(x, w, p)
    (y.float() * gy).sum().backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    y_ref = _reference(x, w, p, seed, dtype)
    (y_ref.float() * gy).sum().backward()
    assert y.dtype == dtype
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(gx, x.grad, rtol=0, atol=0)
    torch.testing.assert_close(gw, w.grad.to(gw.dtype), rtol=1e-6, atol=1e-6)
    assert gw.dtype == torch.float32 and gx.dtype == torch.float32


def test_dropout_keeps_the_expected_share_and_changes_each_call():
    x = torch.ones(200, 100)
    w = torch.eye(100)
    a, b = lora_down(x, w, 0.25), lora_down(x, w, 0.25)
    kept = (a != 0).float().mean().item()
    assert 0.72 < kept < 0.78
    assert torch.allclose(a[a != 0], torch.full_like(a[a != 0], 1 / 0.75))
    assert not torch.equal(a, b)


def test_projections_reading_one_input_save_it_once():
    """q, k and v read the same normed input: with every linear layer adapted, the
    adapters save that input once, not a mask, a dropped copy and a cast per projection."""
    model = make_tiny_llama(hidden_size=64, intermediate_size=128)
    inject(model, get_method("lora", r=4, dropout=0.1, target_modules="all-linear"))
    model.train()
    ids = torch.randint(3, 100, (2, 31))
    with saved_tensor_census(model) as counts:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=ids).logits.float().sum()
    tokens, layers = 2 * 31, 2
    per_token_layer = counts["adapter"] / tokens / layers
    # inputs of q/k/v and of gate/up (fp32, once each), of o and of down (bf16), and
    # the r-sized outputs: before this, each of the 7 projections kept three copies.
    expected = 4 * 64 * 2 + 2 * 64 + 2 * 128 + 7 * 4 * 2
    assert per_token_layer <= expected * 1.05, (per_token_layer, expected)
