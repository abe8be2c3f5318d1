"""The optimised loss (response-only head, chunked cross-entropy) equals the plain
full-logits loss, in value and in every gradient (issue 6's correctness guard)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from peftlab.data.batching import Example, collate
from peftlab.methods import get_method
from peftlab.model.inject import inject
from peftlab.training.loss import ChunkedHeadNLL, LossOptions, response_nll

from conftest import make_tiny_llama


def _batch(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    ex = []
    for i in range(n):
        ids = torch.randint(3, 128, (6 + 4 * i,), generator=g).tolist()
        ex.append(Example(ids, n_prompt=1 + 2 * i))
    return collate(ex, pad_id=2)


def _model():
    model = make_tiny_llama()
    inject(model, get_method("lora", r=4, dropout=0.0))
    with torch.no_grad():  # non-zero B so the adapter's gradients are all non-trivial
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    return model


def _plain_loss(model, batch):
    """The textbook loss: every position through the model's own head, full logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        batch["labels"][:, 1:].reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )


def _loss_and_grads(model, fn):
    model.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    return float(loss.detach()), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad
    }


@pytest.mark.parametrize(
    "opts",
    [
        LossOptions(True, 0),
        LossOptions(True, 1),
        LossOptions(True, 7),
        LossOptions(True, 4096),
        LossOptions(False, 0),
    ],
)
def test_optimised_loss_equals_full_logits_loss_fp32(opts):
    model, batch = _model(), _batch()
    ref, ref_g = _loss_and_grads(model, lambda: _plain_loss(model, batch))
    got, got_g = _loss_and_grads(model, lambda: response_nll(model, batch, opts)[0])
    assert got == pytest.approx(ref, rel=1e-5)
    assert ref_g.keys() == got_g.keys() and ref_g
    for name in ref_g:
        scale = ref_g[name].abs().max()
        assert scale > 0, name
        assert (got_g[name] - ref_g[name]).abs().max() <= 1e-5 * scale + 1e-7, name


def test_chunked_head_gives_the_weight_gradient_of_a_trainable_head():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(23, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=True)
    t = torch.randint(0, 50, (23,), generator=g)
    ref = F.cross_entropy(h @ w.t(), t, reduction="sum")
    gh, gw = torch.autograd.grad(ref, (h, w))
    got = ChunkedHeadNLL.apply(h, w, t, 5, torch.float32)
    ch, cw = torch.autograd.grad(got, (h, w))
    assert float(got) == pytest.approx(float(ref), rel=1e-6)
    assert torch.allclose(ch, gh, atol=1e-5) and torch.allclose(cw, gw, atol=1e-5)


def test_chunked_loss_under_bf16_autocast_matches_the_unchunked_head():
    """Same bf16 head matmul, fp32 softmax: chunking changes nothing but summation order."""
    model, batch = _model(), _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, a_g = _loss_and_grads(model, lambda: response_nll(model, batch, LossOptions(True, 0))[0])
        b, b_g = _loss_and_grads(model, lambda: response_nll(model, batch, LossOptions(True, 5))[0])
    assert b == pytest.approx(a, rel=1e-4)
    for name in a_g:
        assert (b_g[name] - a_g[name]).abs().max() <= 2e-2 * a_g[name].abs().max(), name


def test_chunked_head_keeps_no_logits_for_backward():
    """Autograd saves the hidden states and one float per position, not the logits."""
    model, batch = _model(), _batch()
    vocab = model.config.vocab_size
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        response_nll(model, batch, LossOptions(True, 8))
    assert shapes and not any(
        s and s[-1] == vocab and len(s) == 2 and s[0] > 1
        for s in shapes
        if s != (vocab, model.config.hidden_size)
    )
    shapes.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        response_nll(model, batch, LossOptions(True, 0))
    assert any(
        len(s) == 2 and s[-1] == vocab and s != (vocab, model.config.hidden_size) for s in shapes
    )  # the plain path does keep them: the check can fail


def test_a_negative_chunk_is_a_clear_error():
    with pytest.raises(ValueError, match="loss_chunk"):
        LossOptions(chunk=-1)
