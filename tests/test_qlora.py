"""QLoRA: the frozen 4-bit Linear, the method, training, loading and merging.

The method-independent checks (identity, merge, save/load, parity with peft on the
dequantized base) run for QLoRA in the shared suite, tests/test_methods.py.
"""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from peftlab import load_adapter, merge, train
from peftlab.formats.peft import load_adapter_into, save_adapter
from peftlab.methods import get_method
from peftlab.model.inject import adapter_layers, count_parameters, inject
from peftlab.quant.linear4bit import Linear4bit, dequantize_linears
from peftlab.quant.nf4 import dequantize_nf4, quantize_nf4
from test_train import toy_config

from conftest import make_tiny_llama

setup_mod = importlib.import_module("peftlab.training.setup")


def dense_twin(layer: Linear4bit) -> nn.Linear:
    """An fp32 nn.Linear holding exactly the 4-bit layer's dequantized weight and bias."""
    return layer.to_linear(torch.float32)


# -- the 4-bit Linear ------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_linear4bit_forward_and_input_grad_equal_dense_twin(bias):
    torch.manual_seed(0)
    layer = Linear4bit.from_linear(nn.Linear(128, 64, bias=bias))
    twin = dense_twin(layer)
    x = torch.randn(2, 5, 128, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y2 = layer(x), twin(x2)
    assert torch.equal(y, y2)
    (y * torch.arange(64.0)).sum().backward()
    (y2 * torch.arange(64.0)).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6, rtol=0)
    assert layer.packed.grad is None and all(not p.requires_grad for p in layer.parameters())


def test_linear4bit_autograd_keeps_only_the_packed_weight():
    layer = Linear4bit.from_linear(nn.Linear(256, 512))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = layer(torch.randn(4, 256, requires_grad=True))
    # What backward keeps is the packed codes and their statistics, nothing dense.
    assert sum(t.numel() * t.element_size() for t in saved) <= layer.quant_state().nbytes()
    assert not any(t.is_floating_point() and t.numel() >= 256 * 512 for t in saved)
    y.sum().backward()  # and backward still works (it dequantizes again)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_linear4bit_compute_dtypes(dtype):
    torch.manual_seed(0)
    layer = Linear4bit.from_linear(nn.Linear(64, 32), compute_dtype=dtype)
    x = torch.randn(3, 64)
    ref = nn.functional.linear(x.to(dtype), layer.dequantized_weight(dtype), layer.bias.to(dtype))
    y = layer(x)
    assert y.dtype == torch.float32  # outside autocast: the input's dtype
    assert torch.equal(y, ref.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # under autocast: as nn.Linear would


def test_linear4bit_to_dtype_keeps_nf4_statistics_fp32():
    layer = Linear4bit.from_linear(nn.Linear(64, 64))
    before = layer.dequantized_weight()
    layer.to(torch.bfloat16)
    assert layer.absmax_scale.dtype == torch.float32
    assert layer.absmax_offset.dtype == torch.float32
    assert layer.packed.dtype == torch.uint8 and layer.bias.dtype == torch.bfloat16
    assert torch.equal(layer.dequantized_weight(torch.float32), before)


def test_linear4bit_memory_is_an_eighth_of_fp32():
    layer = Linear4bit.from_linear(nn.Linear(4096, 1024, bias=False))
    fp32 = 4096 * 1024 * 4
    assert layer.nbytes() / fp32 == pytest.approx(4.127 / 32, abs=1e-3)
    assert layer.weight_numel == 4096 * 1024


def test_linear4bit_from_meta_skeleton():
    w = torch.randn(32, 64)
    layer = Linear4bit(64, 32, bias=False, device="meta")
    layer.load_weight(w)
    assert layer.packed.device.type == "cpu"
    assert torch.equal(layer.dequantized_weight(), dequantize_nf4(quantize_nf4(w)))
    with pytest.raises(ValueError, match=r"\(64, 64\) does not fit"):
        layer.load_weight(torch.randn(64, 64))


# -- the method ------------------------------------------------------------------------------
def test_prepare_quantizes_every_linear_but_the_output_head():
    model = make_tiny_llama()
    inject(model, get_method("qlora", target_modules=["q_proj"]))
    layers = model.model.layers
    for block in layers:
        for name in ("k_proj", "v_proj", "o_proj"):
            assert isinstance(getattr(block.self_attn, name), Linear4bit), name
        for name in ("gate_proj", "up_proj", "down_proj"):
            assert isinstance(getattr(block.mlp, name), Linear4bit), name
        assert isinstance(block.self_attn.q_proj.base_layer, Linear4bit)
    assert type(model.lm_head) is nn.Linear  # the head and embeddings stay
    assert type(model.model.embed_tokens) is nn.Embedding


def test_parameter_share_counts_4bit_weights_at_logical_size():
    model = make_tiny_llama()
    inject(model, get_method("qlora", r=4))
    full = sum(p.numel() for p in make_tiny_llama().parameters())
    adapter = sum(
        p.numel() for _, lay in adapter_layers(model) for p in lay.adapter_params().values()
    )
    counts = count_parameters(model)
    assert counts["trainable"] == adapter
    assert counts["total"] == full + adapter
    assert counts["share_pct"] == pytest.approx(100 * adapter / (full + adapter))


def test_merge_unmerge_restores_the_packed_base_bit_for_bit(tiny_inputs):
    model = make_tiny_llama(attention_bias=True)  # biased q/k/v/o, as in Qwen2
    inject(model, get_method("qlora", r=4, dropout=0.0))
    _, layer = next(adapter_layers(model))
    nn.init.normal_(layer.lora_B.weight)
    packed, state = layer.base_layer, dict(layer.base_layer.state_dict())
    assert packed.bias is not None
    params, keys = set(layer.adapter_params()), set(layer.state_dict())
    layer.merge()
    assert type(layer.base_layer) is nn.Linear  # W0 (dequantized) + ΔW, in fp32
    # While merged the packed layer is put aside, invisible to parameters and state.
    assert set(layer.adapter_params()) == params
    assert {k for k in layer.state_dict() if not k.startswith("base_layer.")} == {
        k for k in keys if not k.startswith("base_layer.")
    }
    layer.unmerge()
    assert layer.base_layer is packed
    assert all(torch.equal(v, packed.state_dict()[k]) for k, v in state.items())


def test_named_method_takes_only_options_the_adapter_file_lacks(tmp_path):
    model = make_tiny_llama()
    inject(model, get_method("qlora", r=4))
    save_adapter(model, tmp_path)
    with pytest.raises(ValueError, match="come from the adapter file"):
        load_adapter_into(make_tiny_llama(), tmp_path, method="qlora", method_options={"r": 8})
    with pytest.raises(ValueError, match="not a ia3 adapter"):
        load_adapter_into(make_tiny_llama(), tmp_path, method="ia3")


# -- training, loading, merging ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_qlora(tmp_path_factory, tiny_model_dir):
    """A few QLoRA steps through peftlab.train, with the session it trained kept."""
    tmp = tmp_path_factory.mktemp("qlora")
    seen = {}

    def spy(*args, **kw):
        s = real(*args, **kw)
        seen["session"] = s
        seen["before"] = {k: v.clone() for k, v in s.model.state_dict().items()}
        return s

    real = setup_mod.open_session
    mp = pytest.MonkeyPatch()
    mp.setattr(setup_mod, "open_session", spy)
    try:
        res = train(
            toy_config(
                tmp, tiny_model_dir, method="qlora", max_steps=4, dropout=0.0, save_every=0, lr=2e-2
            )
        )
    finally:
        mp.undo()
    return res, tmp / "run", seen["session"], seen["before"]


def test_training_changes_only_lora_weights(trained_qlora):
    res, _, s, before = trained_qlora
    after = s.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    lora = {k for k in after if ".lora_A." in k or ".lora_B." in k}
    assert changed == lora
    packed = [k for k in after if k.endswith(".base_layer.packed")]
    assert packed and all(torch.equal(before[k], after[k]) for k in packed)
    assert res["after"]["eval_loss"] < res["before"]["eval_loss"]
    assert res["params"]["total"] > res["params"]["trainable"] > 0
    assert res["merge_check"]["ok"]


def test_saved_qlora_adapter_loads_on_the_nf4_base(trained_qlora, tiny_inputs, tiny_model_dir):
    from peftlab.model.load import load_model

    _, run, s, _ = trained_qlora
    s.model.eval()
    with torch.no_grad():
        ref = s.model(**tiny_inputs).logits
        loaded = load_adapter(run)  # config.yaml says qlora: the NF4 base is rebuilt
        assert any(isinstance(m, Linear4bit) for m in loaded.modules())
        assert torch.equal(loaded(**tiny_inputs).logits, ref)
        # From the files alone it is a LoRA adapter: it loads as one on the fp32 base.
        plain = load_model(tiny_model_dir)
        assert load_adapter_into(plain, run).method.name == "lora"
        assert not any(isinstance(m, Linear4bit) for m in plain.modules())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_merge_dequantizes_adds_in_fp32_and_writes_a_plain_model(
    trained_qlora, tmp_path, tiny_inputs, dtype
):
    from peftlab.model.load import load_model

    _, run, s, _ = trained_qlora
    res = merge(run, tmp_path / "merged", dtype=dtype)
    assert res["max_logit_diff"] <= 1e-4
    merged = load_model(str(tmp_path / "merged"), dtype=dtype)
    assert not any(isinstance(m, Linear4bit) for m in merged.modules())
    assert merged.model.layers[0].self_attn.q_proj.weight.dtype == getattr(torch, dtype)
    s.model.eval()
    with torch.no_grad():
        diff = merged.float()(**tiny_inputs).logits - s.model(**tiny_inputs).logits
    diff = diff.abs().max()
    assert diff <= (1e-4 if dtype == "float32" else 5e-2)


def test_qdora_trains_with_gradient_checkpointing(tmp_path, tiny_model_dir):
    kw = dict(method="qlora", use_dora=True, max_steps=2, dropout=0.0, save_every=0)
    a = train(toy_config(tmp_path / "a", tiny_model_dir, **kw))
    b = train(toy_config(tmp_path / "b", tiny_model_dir, gradient_checkpointing=True, **kw))
    assert a["final_loss"] == pytest.approx(b["final_loss"], abs=1e-5)
    assert a["merge_check"]["ok"]


# -- interoperability with bitsandbytes + peft -------------------------------------------------
def test_peft_loads_our_qlora_adapter_onto_a_bitsandbytes_4bit_base(tmp_path, tiny_inputs):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes gives the 4-bit base to peft")
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    # bitsandbytes' CPU matmul needs rows of at least one 64-value block: hidden 64.
    wide = dict(hidden_size=64, intermediate_size=128)
    make_tiny_llama(**wide).save_pretrained(tmp_path / "base")
    ours = make_tiny_llama(**wide)
    inject(ours, get_method("qlora", r=4, alpha=8, dropout=0.0))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, layer in adapter_layers(ours):
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g))
    save_adapter(ours, tmp_path / "adapter")
    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    base = AutoModelForCausalLM.from_pretrained(
        tmp_path / "base", quantization_config=q, dtype=torch.float32, device_map="cpu"
    )
    # The same NF4 data: bitsandbytes' packed weight equals ours byte for byte.
    theirs_w = base.model.layers[0].self_attn.q_proj.weight
    ours_w = ours.model.layers[0].self_attn.q_proj.base_layer.packed
    assert torch.equal(theirs_w.data.view(-1), ours_w)
    # Train mode (dropout is 0): in eval mode on CPUs with AVX512-BF16, bitsandbytes
    # repacks the weight for a bf16 kernel, whose rounding (~1e-3) would hide ours.
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").train()
    with torch.no_grad():
        diff = (theirs(**tiny_inputs).logits - ours(**tiny_inputs).logits).abs().max()
    assert diff <= 1e-5


def test_dequantized_base_is_what_peft_parity_uses(tiny_inputs):
    """The shared suite compares QLoRA with peft LoRA on the dequantized base; that base
    must reproduce the 4-bit model's outputs exactly."""
    model = make_tiny_llama()
    get_method("qlora").prepare_model(model)
    plain = make_tiny_llama()
    get_method("qlora").prepare_model(plain)
    dequantize_linears(plain)
    with torch.no_grad():
        assert torch.equal(model(**tiny_inputs).logits, plain(**tiny_inputs).logits)


@pytest.mark.parametrize(
    "kw",
    [
        dict(dtype="bfloat16"),
        dict(mixed_precision="bf16"),
        dict(compute_dtype="bfloat16", use_dora=True),
    ],
    ids=["bf16-base", "bf16-autocast", "qdora-bf16-compute"],
)
def test_qlora_trains_in_bf16(tmp_path, tiny_model_dir, kw):
    res = train(
        toy_config(tmp_path, tiny_model_dir, method="qlora", max_steps=2, save_every=0, **kw)
    )
    assert math.isfinite(res["final_loss"]) and math.isfinite(res["after"]["eval_loss"])


def test_lora_adapter_loads_onto_an_already_quantized_model(tmp_path, tiny_inputs):
    """A 4-bit model from load_quantized takes a LoRA adapter without naming QLoRA."""
    from peftlab.quant import load_quantized

    make_tiny_llama().save_pretrained(tmp_path / "base")
    ours = make_tiny_llama()
    inject(ours, get_method("qlora", r=4, dropout=0.0))
    with torch.no_grad():
        for _, layer in adapter_layers(ours):
            layer.lora_B.weight.normal_()
    save_adapter(ours, tmp_path / "adapter")
    model = load_quantized(tmp_path / "base")
    assert load_adapter_into(model, tmp_path / "adapter").method.name == "lora"
    with torch.no_grad():
        assert torch.equal(model(**tiny_inputs).logits, ours(**tiny_inputs).logits)


def test_cpu_path_never_imports_bitsandbytes():
    code = (
        "import sys, torch; sys.path.insert(0, 'tests')\n"
        "from conftest import make_tiny_llama\n"
        "from peftlab.model.inject import inject\n"
        "from peftlab.methods import get_method\n"
        "m = make_tiny_llama(); inject(m, get_method('qlora', use_dora=True))\n"
        "m(input_ids=torch.tensor([[3, 4, 5]])).logits.sum().backward()\n"
        "print(any(k.split('.')[0] == 'bitsandbytes' for k in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert out.stdout.split()[-1] == "False"
