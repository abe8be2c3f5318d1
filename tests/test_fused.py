"""SwiGLU without SiLU's output kept for backward (the lean ``silu_mul``, applied by
model/fused.py): the same loss and gradients, bit for bit, as the MLP's own three ops, and
a third less saved by the MLP."""

from __future__ import annotations

import copy

import pytest
import torch

from peftlab.memory.measure import saved_tensor_census
from peftlab.methods import get_method
from peftlab.model.fused import fuse_swiglu, unfuse_swiglu
from peftlab.model.inject import inject

from conftest import make_tiny_llama


def _mlps(model):
    return [m for m in model.modules() if hasattr(m, "gate_proj")]


def _unfuse(model):
    assert unfuse_swiglu(model) == len(_mlps(model))  # their own forward again
    return model


def _loss_and_grads(model, ids, autocast):
    model.zero_grad(set_to_none=True)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.enable_grad()
    with ctx:
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_same_loss_and_gradients_as_the_three_ops(method, autocast):
    fused = make_tiny_llama()
    inject(
        fused,
        get_method(
            method,
            **(
                {"r": 4, "dropout": 0.0, "target_modules": "all-linear"} if method == "lora" else {}
            ),
        ),
    )
    assert len(_mlps(fused)) == 2 and all("forward" in vars(m) for m in _mlps(fused))
    plain = _unfuse(copy.deepcopy(fused))
    if method == "lora":  # B starts at 0: make the adapters count
        for model in (fused, plain):
            torch.manual_seed(1)
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    torch.nn.init.normal_(p, std=0.1)
    fused.train()
    plain.train()
    ids = torch.randint(3, 100, (2, 13), generator=torch.Generator().manual_seed(2))
    loss_f, grads_f = _loss_and_grads(fused, ids, autocast)
    loss_p, grads_p = _loss_and_grads(plain, ids, autocast)
    assert torch.equal(loss_f, loss_p)
    assert grads_f.keys() == grads_p.keys() and grads_f
    for n in grads_f:
        assert torch.equal(grads_f[n], grads_p[n]), n


def test_the_mlp_saves_a_third_less():
    model = make_tiny_llama(hidden_size=64, intermediate_size=256)
    inject(model, get_method("ia3"))
    model.train()
    ids = torch.randint(3, 100, (2, 31))

    def mlp_bytes(m):
        with saved_tensor_census(m) as counts:
            m(input_ids=ids).logits.sum()
        return counts["mlp activation"]

    fused = mlp_bytes(model)
    plain = mlp_bytes(_unfuse(model))
    assert fused == pytest.approx(plain * 2 / 3, rel=0.02), (fused, plain)


def test_other_mlps_and_hooked_ones_are_left_alone():
    model = make_tiny_llama(hidden_act="gelu")
    assert fuse_swiglu(model) == 0
    model = make_tiny_llama()
    _mlps(model)[0]._hf_hook = object()
    assert fuse_swiglu(model) == 1
