"""LoRA+ (B at lr·ratio): the optimiser's updates equal peft's create_loraplus_optimizer,
and the ratio survives a resume."""

from __future__ import annotations

import pytest
import torch

from peftlab.formats.peft import save_adapter
from peftlab.methods import get_method
from peftlab.model.inject import adapter_layers, inject

from conftest import make_tiny_llama

peft = pytest.importorskip("peft")
from peft.optimizers import create_loraplus_optimizer  # noqa: E402

LR, RATIO, WD = 1e-3, 16.0, 0.01


def _randomize(model, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            for p in layer.adapter_params().values():
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def _steps(model, opt, inputs, n=3):
    model.train()
    for _ in range(n):
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize(
    "method, opts",
    [
        ("lora", {}),
        ("dora", {"target_modules": ["q_proj", "v_proj"]}),
        ("pissa", {"save_as_lora": False}),
    ],
)
def test_updates_equal_peft_loraplus(method, opts, tiny_inputs, tmp_path):
    ours = make_tiny_llama()
    m = get_method(method, r=4, alpha=8, dropout=0.0, loraplus_lr_ratio=RATIO, **opts)
    inject(ours, m)
    _randomize(ours)  # B = 0 at init would hide a wrong B rate on the first step
    save_adapter(ours, tmp_path)
    # peft gets the same adapter on the same base (PiSSA's rank-r file: peft factors the
    # base again and gets the residual ours trains on).
    theirs = peft.PeftModel.from_pretrained(make_tiny_llama(), tmp_path, is_trainable=True)
    ours_opt = torch.optim.AdamW(m.param_groups(ours, LR, WD), lr=LR, weight_decay=WD)
    assert sorted(g["lr"] for g in ours_opt.param_groups) == [LR, LR * RATIO]
    peft_opt = create_loraplus_optimizer(
        theirs, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO, loraplus_weight_decay=WD
    )
    _steps(ours, ours_opt, tiny_inputs)
    _steps(theirs, peft_opt, tiny_inputs)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        diff = (ours(**tiny_inputs).logits - theirs(**tiny_inputs).logits).abs().max()
    assert diff <= 1e-5
    # The weights to the project's 1e-5: our LoRA sums on rows (one addmm into W0 x), peft
    # on the 3-D batch, and Adam's normalised steps carry that fp32 rounding (seen: up to
    # 2.4e-6 on weights of ~0.4 after 3 steps).
    peers = dict(theirs.base_model.model.named_modules())
    for name, layer in adapter_layers(ours):
        peer = peers[name]
        assert torch.allclose(layer.lora_A.weight, peer.lora_A["default"].weight, atol=1e-5)
        assert torch.allclose(layer.lora_B.weight, peer.lora_B["default"].weight, atol=1e-5)


def test_ratio_changes_b_only_and_rejects_bad_values():
    model = make_tiny_llama()
    m = get_method("dora", r=2, loraplus_lr_ratio=4)
    inject(model, m)
    groups = m.param_groups(model, LR, 0.0)
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in groups}
    _, layer = next(adapter_layers(model))
    assert id(layer.lora_A.weight) in by_lr[LR]
    assert {id(layer.lora_B.weight), id(layer.lora_magnitude_vector)} <= by_lr[4 * LR]
    plain = get_method("lora", r=2)
    assert len(plain.param_groups(model, LR, 0.0)) == 1
    with pytest.raises(ValueError, match="loraplus_lr_ratio must be > 0"):
        get_method("lora", loraplus_lr_ratio=0)


def test_pissa_with_loraplus_resumes_exactly(tmp_path, tiny_model_dir, monkeypatch):
    """The ratio is saved in config.yaml, and a run interrupted after a checkpoint and
    resumed ends with the same adapter as one that ran through (PiSSA re-factors the
    same base on resume)."""
    import yaml
    from safetensors.torch import load_file

    from peftlab import train
    from test_train import toy_config, train_interrupted_after

    kw = dict(method="pissa", loraplus_lr_ratio=8.0, max_steps=2, save_every=1, dropout=0.0)
    kw.update(exact_match_limit=0, max_eval_records=4)
    train(toy_config(tmp_path / "a", tiny_model_dir, **kw))
    saved = yaml.safe_load(open(tmp_path / "a" / "run" / "config.yaml"))
    assert saved["method"] == "pissa" and saved["adapter"]["loraplus_lr_ratio"] == 8.0
    train_interrupted_after(1, toy_config(tmp_path / "b", tiny_model_dir, **kw), monkeypatch)
    train(toy_config(tmp_path / "b", tiny_model_dir, resume=True, **kw))
    a = load_file(tmp_path / "a" / "run" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "run" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
