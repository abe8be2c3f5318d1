"""The frozen base layer under autocast keeps no weight copy for backward (issue 16):
the same values and gradients as nn.Linear under autocast, fewer bytes saved."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_llama
from torch import nn

from peftlab.memory.measure import saved_tensor_census
from peftlab.methods import get_method
from peftlab.methods.frozen import frozen_linear
from peftlab.model.inject import inject


def lora_census(dropout: float) -> dict:
    """Bytes autograd saves by kind: a tiny Llama (2 layers, 2 x 31 tokens) with LoRA
    r=4 on every linear layer, one bf16-autocast training forward."""
    model = make_tiny_llama(hidden_size=64, intermediate_size=128)
    inject(model, get_method("lora", r=4, dropout=dropout, target_modules="all-linear"))
    model.train()
    ids = torch.randint(3, 100, (2, 31))
    with saved_tensor_census(model) as counts:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(input_ids=ids).logits.float().sum()
    return counts


@pytest.mark.parametrize("bias", [False, True])
def test_same_values_and_input_gradient_as_linear_under_autocast(bias):
    torch.manual_seed(0)
    layer = nn.Linear(48, 40, bias=bias).requires_grad_(False)
    x = torch.randn(2, 7, 48, requires_grad=True)
    g = torch.randn(2, 7, 40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = frozen_linear(layer, x)
        y_ref = layer(x)
    assert y.grad_fn is not None and "FrozenLinear" in type(y.grad_fn).__name__
    assert y.dtype == y_ref.dtype == torch.bfloat16
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    (gx,) = torch.autograd.grad((y.float() * g).sum(), x)
    (gx_ref,) = torch.autograd.grad((y_ref.float() * g).sum(), x)
    assert gx.dtype == torch.float32
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=0)


def test_plain_path_where_nothing_is_saved_or_weights_train():
    layer = nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "FrozenLinear" not in type(frozen_linear(layer, x).grad_fn).__name__
        layer.requires_grad_(False)
        assert frozen_linear(layer, x.detach()).grad_fn is None  # nothing to carry back
    assert frozen_linear(layer, x).dtype == torch.float32  # no autocast: the layer itself


def test_no_autocast_weight_copies_are_saved():
    counts = lora_census(dropout=0.0)
    # the first layer's q/k/v see the frozen embedding's output (no gradient to carry):
    # neither path saves a weight there; every other adapted projection used to save
    # its bf16 weight copy
    assert counts.get("autocast weight copies", 0) == 0, dict(counts)
