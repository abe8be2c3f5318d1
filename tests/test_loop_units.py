"""Units of the training loop: plan, schedule, token-weighted accumulation, response loss."""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from conftest import make_tiny_llama
from peftlab.config import TrainConfig
from peftlab.data.alpaca import Example, collate
from peftlab.inject import inject
from peftlab.loss import LossOptions, response_nll
from peftlab.methods import get_method

train_mod = importlib.import_module("peftlab.train")


def test_plan_counts_steps_and_partial_last_step():
    t = TrainConfig(batch_size=4, grad_accum=3, epochs=2)
    plan = train_mod.make_plan(50, t)  # 13 micro-batches -> 5 steps per epoch
    assert (plan.micro_per_epoch, plan.steps_per_epoch, plan.total_steps) == (13, 5, 10)
    assert plan.micro_batches(4) == (0, slice(12, 13))  # last step of an epoch: 1 micro
    assert plan.micro_batches(5) == (1, slice(0, 3))
    assert train_mod.make_plan(50, TrainConfig(batch_size=4, max_steps=7)).total_steps == 7


def test_warmup_then_cosine_to_zero():
    plan = train_mod.Plan(1, 1, 100, 100, 100, 10)
    f = train_mod.warmup_cosine(plan)
    ramp = [f(i) for i in range(10)]
    assert ramp == sorted(ramp) and ramp[0] > 0 and ramp[-1] < 1
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12)


def _examples(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 5 + 3 * i
        ids = torch.randint(3, 128, (length,), generator=g).tolist()
        out.append(Example(ids, n_prompt=2 + i % 3))
    return out


def _grads_after_step(batches):
    model = make_tiny_llama()
    inject(model, get_method("lora", r=2, dropout=0.0))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    model.train()
    s = SimpleNamespace(device=torch.device("cpu"), loss_options=LossOptions(),
                        autocast=lambda: __import__(
        "contextlib").nullcontext)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss = train_mod._step(Accelerator(cpu=True), model, get_method("lora"), batches, s, scaler)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_accumulation_equals_one_big_batch():
    ex = _examples()
    one_loss, one = _grads_after_step([collate(ex, pad_id=0)])
    acc_loss, acc = _grads_after_step([collate(ex[:2], 0), collate(ex[2:5], 0),
                                       collate(ex[5:], 0)])
    assert acc_loss == pytest.approx(one_loss, abs=1e-6)
    for name in one:
        assert torch.allclose(one[name], acc[name], atol=1e-6), name


def test_response_nll_equals_full_logits_loss():
    model = make_tiny_llama()
    batch = collate(_examples(), pad_id=0)
    nll, n = response_nll(model, batch)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                            batch["labels"][:, 1:].reshape(-1),
                                            ignore_index=-100, reduction="sum")
    assert n == int((batch["labels"][:, 1:] != -100).sum())
    assert float(nll) == pytest.approx(float(ref), rel=1e-5)
    assert math.isfinite(float(nll))


def test_metrics_log_survives_a_line_cut_short(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "eval_loss": 2.0}\n{"step": 1, "loss": 1.5}\n{"step": 2, "lo')
    log = train_mod.MetricsLog(path, resume_step=1)
    assert [r["step"] for r in log.records()] == [0, 1]
    assert log.first_eval() == {"eval_loss": 2.0}


def test_adapter_config_never_turns_remote_code_on(tmp_path):
    from peftlab.api import _config_for_adapter
    (tmp_path / "config.yaml").write_text(
        "method: lora\nmodel: {name: some/model, trust_remote_code: true}\n")
    cfg = _config_for_adapter(tmp_path)
    assert cfg.model.name == "some/model" and cfg.model.trust_remote_code is False
    assert _config_for_adapter(tmp_path, trust_remote_code=True).model.trust_remote_code


def test_replace_dir_swaps_in_the_new_directory_and_leaves_nothing_aside(tmp_path):
    from peftlab.peft_format import replace_dir
    final, new = tmp_path / "ckpt", tmp_path / ".tmp-ckpt"
    final.mkdir()
    (final / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    replace_dir(new, final)
    assert (final / "a").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_allocator_option_values_and_auto_choice():
    from peftlab.runtime import resolve_allocator, set_allocator
    with pytest.raises(ValueError, match="allocator"):
        set_allocator("fast")
    assert resolve_allocator("auto", memory_first=True) == "lean"
    assert resolve_allocator("auto", memory_first=False) == "default"
    assert set_allocator("default", memory_first=True) == "default"
    import sys
    if sys.platform.startswith("linux"):  # glibc: mallopt accepts the setting
        assert set_allocator("auto", memory_first=True) == "lean"
        assert set_allocator("trim") == "trim"
