"""The fast paths of issue 14 compute the same numbers as the plain ones.

- NF4 dequantization by byte-pair lookup equals the per-nibble definition, bit for bit,
  for every size, block size and dtype; bitsandbytes' kernel, when selected, too.
- The reusable dense-weight buffer of the 4-bit matmul changes nothing.
- Generation with cached inference weights (bf16 copies of frozen Linears, dense copies
  of 4-bit layers, DoRA's factor) gives the same logits and text as without.
- LoRA's fused ``addmm`` forward equals base + s·B A x, values and gradients.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peftlab.methods import get_method
from peftlab.model.inference import inference_weights
from peftlab.model.inject import adapter_layers, inject
from peftlab.quant import kernels
from peftlab.quant.linear4bit import Linear4bit
from peftlab.quant.nf4 import block_absmax, dequantize_nf4, nf4_levels, quantize_nf4

from conftest import make_tiny_llama


def reference_dequant(q, dtype):
    """The definition: level[code] · absmax[block] in fp32, rounded once."""
    codes = torch.stack([q.packed >> 4, q.packed & 15], 1).view(-1)[: q.numel].long()
    scale = block_absmax(q).repeat_interleave(q.blocksize)[: q.numel]
    return (nf4_levels()[codes] * scale).to(dtype).view(q.shape)


@pytest.mark.parametrize("shape", [(1,), (63,), (65,), (3, 37), (130, 257), (512, 300)])
@pytest.mark.parametrize("blocksize", [64, 128, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_pair_lookup_equals_the_definition(shape, blocksize, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    q = quantize_nf4(torch.randn(*shape, generator=g), blocksize=blocksize)
    assert torch.equal(dequantize_nf4(q, dtype), reference_dequant(q, dtype))


def test_pair_lookup_in_small_chunks(monkeypatch):
    from peftlab.quant import nf4

    q = quantize_nf4(torch.randn(100, 99))
    whole = dequantize_nf4(q, torch.float32)
    monkeypatch.setattr(nf4, "_DEQUANT_CHUNK", 128)  # many chunks, the last one short
    assert torch.equal(dequantize_nf4(q, torch.float32), whole)
    assert torch.equal(whole, reference_dequant(q, torch.float32))


def test_kernel_names_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="nf4 kernel must be one of"):
        kernels.check_kernel("fast")
    with pytest.raises(ValueError, match="nf4 kernel"):
        get_method("qlora", nf4_kernel="fast")
    cpu = torch.device("cpu")
    assert kernels.resolve_kernel("auto", cpu, 1000) == "torch"  # small: the pure one
    big = kernels.resolve_kernel("auto", cpu, kernels.AUTO_BNB_MIN)
    assert big == ("bitsandbytes" if kernels.bitsandbytes_installed() else "torch")
    monkeypatch.setenv(kernels.ENV_VAR, "torch")
    assert kernels.resolve_kernel("auto", cpu, kernels.AUTO_BNB_MIN) == "torch"
    monkeypatch.setenv(kernels.ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        kernels.resolve_kernel("auto", torch.device("cpu"))


def test_bitsandbytes_kernel_gives_the_same_bits():
    pytest.importorskip("bitsandbytes", reason="the optional kernel needs bitsandbytes")
    assert kernels.resolve_kernel("bitsandbytes", torch.device("cpu")) == "bitsandbytes"
    g = torch.Generator().manual_seed(3)
    for shape in [(256, 1024), (1000, 130), (7, 64)]:
        q = quantize_nf4(torch.randn(*shape, generator=g) * 0.02)
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            got = kernels.dequantize(q, dtype, "bitsandbytes")
            assert torch.equal(got, dequantize_nf4(q, dtype)), (shape, dtype)


def test_workspace_is_reused_and_the_4bit_matmul_unchanged():
    buf1 = kernels.workspace(torch.Size((64, 32)), torch.float32, torch.device("cpu"))
    buf2 = kernels.workspace(torch.Size((32, 16)), torch.float32, torch.device("cpu"))
    assert buf1.data_ptr() == buf2.data_ptr()
    torch.manual_seed(0)
    layers = [Linear4bit.from_linear(nn.Linear(96, 96)) for _ in range(3)]
    x = torch.randn(5, 96, requires_grad=True)
    y = layers[2](layers[1](layers[0](x)))  # all three share the buffer
    y.square().sum().backward()
    x2 = x.detach().clone().requires_grad_()
    dense = [layer.to_linear(torch.float32) for layer in layers]
    y2 = dense[2](dense[1](dense[0](x2)))
    y2.square().sum().backward()
    assert torch.equal(y, y2)
    assert torch.allclose(x.grad, x2.grad, rtol=1e-6, atol=1e-7)


def _trained(method, **options):
    model = make_tiny_llama()
    inject(model, get_method(method, **options))
    with torch.no_grad():  # a non-trivial adapter
        for _, layer in adapter_layers(model):
            for p in layer.adapter_params().values():
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize("method", ["lora", "qlora", "dora", "ia3", "adalora", "full"])
def test_generation_cache_changes_no_logit_or_token(method, tiny_inputs):
    model = _trained(method) if method != "full" else make_tiny_llama()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    ids = tiny_inputs["input_ids"]
    own = {id(m) for m in model.modules() if "forward" in vars(m)}  # fused SwiGLU MLPs
    with torch.no_grad(), autocast:
        plain_logits = model(**tiny_inputs).logits
        plain = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
        with inference_weights(model, torch.device("cpu")) as used:
            cached_logits = model(**tiny_inputs).logits
            cached = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert used > 0
    assert torch.equal(plain_logits, cached_logits)
    assert torch.equal(plain, cached)
    # everything is put back: no per-instance forward added, no dense copy left behind
    assert {id(m) for m in model.modules() if "forward" in vars(m)} == own
    assert all(m._dense is None for m in model.modules() if isinstance(m, Linear4bit))


def test_generation_cache_keeps_to_its_budget_and_off_means_off(tiny_inputs):
    model = _trained("qlora")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with inference_weights(model, torch.device("cpu"), budget=0) as used:
            assert used == 0
            assert not any(
                m._dense is not None for m in model.modules() if isinstance(m, Linear4bit)
            )
        one = next(m for m in model.modules() if isinstance(m, Linear4bit))
        budget = one.weight_numel * 2
        with inference_weights(model, torch.device("cpu"), budget=budget) as used:
            assert 0 < used <= budget


def test_cached_weights_are_not_used_while_training(tiny_inputs):
    model = _trained("qlora").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad(), inference_weights(model, torch.device("cpu")):
            pass
        loss = model(**tiny_inputs).logits.float().square().mean()
    loss.backward()  # through the packed path; the dense copies are gone
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_dora_factor_cache_follows_the_weights():
    model = _trained("dora")
    layer = next(layer for _, layer in adapter_layers(model))
    with torch.no_grad():
        f1 = layer.dora_factor()
        assert layer.dora_factor() is f1  # kept while nothing changes
        layer.lora_B.weight.add_(0.5)  # an optimiser step writes in place
        f2 = layer.dora_factor()
    fresh = layer.lora_magnitude_vector / layer.weight_norm()
    assert not torch.equal(f1, f2) and torch.equal(f2, fresh.detach())


@pytest.mark.parametrize("autocast", [False, True])
def test_lora_fused_forward_equals_base_plus_update(autocast, tiny_inputs):
    torch.manual_seed(0)
    base = nn.Linear(48, 40)
    layer = get_method("lora", r=4, alpha=8, dropout=0.0).wrap(base, "proj")
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    x = torch.randn(3, 7, 48)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    with ctx:
        fused = layer(x)
        split = layer.base_layer(x) + layer.update(x).to(fused.dtype)
    tol = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-6, atol=1e-6)
    assert fused.dtype == split.dtype and torch.allclose(fused.float(), split.float(), **tol)
    with ctx:
        layer(x).float().sum().backward()
    g_fused = layer.lora_B.weight.grad.clone()
    layer.zero_grad()
    with ctx:
        (layer.base_layer(x) + layer.update(x).to(fused.dtype)).float().sum().backward()
    assert torch.allclose(g_fused, layer.lora_B.weight.grad, **tol)


def test_checkpointing_hands_the_recomputed_weight_to_backward(monkeypatch, tiny_inputs):
    """Under gradient checkpointing each 4-bit weight is dequantized twice per step
    (forward, recompute), not three times, and the gradients are the same bits."""
    calls = []
    real = kernels.dequantize
    monkeypatch.setattr(kernels, "dequantize", lambda *a, **k: calls.append(1) or real(*a, **k))

    def grads(checkpointing):
        model = _trained("qlora").train()
        if checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        calls.clear()
        model(**tiny_inputs).logits.float().square().mean().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}, len(calls)

    plain, n_plain = grads(False)
    ckpt, n_ckpt = grads(True)
    n_layers = sum(isinstance(m, Linear4bit) for m in _trained("qlora").modules())
    assert n_ckpt < n_plain + n_layers  # without the hand-over: n_plain + n_layers
    assert plain.keys() == ckpt.keys()
    assert all(torch.equal(plain[k], ckpt[k]) for k in plain)
    from peftlab.quant import linear4bit

    assert not linear4bit._RECOMPUTED  # every kept weight was used and let go


def test_generation_cache_budget(monkeypatch):
    from peftlab.model import inference

    monkeypatch.setenv("PEFTLAB_GENERATION_CACHE", "12345")
    assert inference.cache_budget() == 12345
    monkeypatch.setenv("PEFTLAB_GENERATION_CACHE", "4G")
    with pytest.raises(ValueError, match="number of bytes"):
        inference.cache_budget()
    monkeypatch.delenv("PEFTLAB_GENERATION_CACHE")
    assert inference._free_bytes(torch.device("cpu")) > 0  # read from /proc/meminfo
    monkeypatch.setattr(inference, "_free_bytes", lambda device: 8 * 2**30)
    assert inference.cache_budget() == 2 * 2**30  # a quarter of what is free
    monkeypatch.setattr(inference, "_free_bytes", lambda device: 64 * 2**30)
    assert inference.cache_budget() == inference.DEFAULT_BUDGET
    monkeypatch.setattr(inference, "_free_bytes", lambda device: None)
    assert inference.cache_budget() == inference.DEFAULT_BUDGET
