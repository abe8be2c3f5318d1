"""The frozen base layer under autocast keeps no weight copy for backward (issue 16):
the same values and gradients as nn.Linear under autocast, fewer bytes saved."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peftlab.memory.measure import saved_tensor_census
from peftlab.methods import get_method
from peftlab.methods.frozen import frozen_linear
from peftlab.model.inject import inject

from conftest import make_tiny_llama


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


def through_frozen_linear(y: torch.Tensor) -> bool:
    """Whether ``y`` is FrozenLinear's output (its rows viewed in the input's shape)."""
    fn = y.grad_fn
    return fn is not None and any(
        "FrozenLinear" in type(f).__name__ for f in [fn, *(g for g, _ in fn.next_functions if g)]
    )


@pytest.mark.parametrize("bias", [False, True])
def test_same_values_and_input_gradient_as_linear_under_autocast(bias):
    torch.manual_seed(0)
    layer = nn.Linear(48, 40, bias=bias).requires_grad_(False)
    x = torch.randn(2, 7, 48, requires_grad=True)
    g = torch.randn(2, 7, 40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = frozen_linear(layer, x)
        y_ref = layer(x)
    assert through_frozen_linear(y)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    (gx,) = torch.autograd.grad((y.float() * g).sum(), x)
    (gx_ref,) = torch.autograd.grad((y_ref.float() * g).sum(), x)
    assert gx.dtype == torch.float32
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=0)


def test_a_biased_base_output_can_be_summed_into_in_place():
    """The lean sum writes into the base output. F.linear returns a 3-D output with a
    bias as a view of its 2-D one, which autograd forbids writing in place when the view
    is made inside a custom Function (Qwen2's q, k, v have biases)."""
    layer = nn.Linear(48, 40).requires_grad_(False)
    x = torch.randn(2, 7, 48, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = frozen_linear(layer, x)
        assert through_frozen_linear(y)
        y.reshape(-1, 40).addmm_(torch.ones(14, 1, dtype=y.dtype), torch.ones(1, 40, dtype=y.dtype))
    y.float().sum().backward()
    assert x.grad is not None


def test_plain_path_where_nothing_is_saved_or_weights_train():
    layer = nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not through_frozen_linear(frozen_linear(layer, x))
        layer.requires_grad_(False)
        assert frozen_linear(layer, x.detach()).grad_fn is None  # nothing to carry back
    assert frozen_linear(layer, x).dtype == torch.float32  # no autocast: the layer itself


def test_no_autocast_weight_copies_are_saved():
    counts = lora_census(dropout=0.0)
    # the first layer's q/k/v see the frozen embedding's output (no gradient to carry):
    # neither path saves a weight there; every other adapted projection used to save
    # its bf16 weight copy
    assert counts.get("autocast weight copies", 0) == 0, dict(counts)
