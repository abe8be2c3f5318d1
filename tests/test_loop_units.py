"""Units of the training loop: plan, schedule, token-weighted accumulation, response loss."""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from peftlab.config import TrainConfig
from peftlab.data.batching import Example, collate, target_count, token_pieces
from peftlab.methods import get_method
from peftlab.model.inject import inject
from peftlab.training.distributed import Dist
from peftlab.training.loss import LossOptions, response_nll
from peftlab.training.metrics import MetricsLog
from peftlab.training.plan import Plan, make_plan, warmup_cosine

from conftest import make_tiny_llama

train_mod = importlib.import_module("peftlab.training.loop")


def test_plan_counts_steps_and_partial_last_step():
    t = TrainConfig(batch_size=4, grad_accum=3, epochs=2)
    plan = make_plan(50, t)  # 13 micro-batches -> 5 steps per epoch
    assert (plan.micro_per_epoch, plan.steps_per_epoch, plan.total_steps) == (13, 5, 10)
    assert plan.micro_batches(4) == (0, slice(12, 13))  # last step of an epoch: 1 micro
    assert plan.micro_batches(5) == (1, slice(0, 3))
    assert make_plan(50, TrainConfig(batch_size=4, max_steps=7)).total_steps == 7


def test_warmup_then_cosine_to_zero():
    plan = Plan(1, 1, 100, 100, 100, 10)
    f = warmup_cosine(plan)
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


def _grads_after_step(batches, **step_args):
    model = make_tiny_llama()
    inject(model, get_method("lora", r=2, dropout=0.0))
    with torch.no_grad():
        for _n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    model.train()
    s = SimpleNamespace(
        device=torch.device("cpu"),
        loss_options=LossOptions(),
        autocast=lambda: __import__("contextlib").nullcontext,
    )
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss = train_mod._step(
        Accelerator(cpu=True), model, get_method("lora"), batches, s, scaler, **step_args
    )
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_accumulation_equals_one_big_batch():
    ex = _examples()
    one_loss, one = _grads_after_step([collate(ex, pad_id=0)])
    acc_loss, acc = _grads_after_step([collate(ex[:2], 0), collate(ex[2:5], 0), collate(ex[5:], 0)])
    assert acc_loss == pytest.approx(one_loss, abs=1e-6)
    for name in one:
        assert torch.allclose(one[name], acc[name], atol=1e-6), name


def test_token_pieces_respect_the_budget_and_keep_every_row_once():
    ex = _examples(8)  # lengths 5, 8, ..., 26
    assert token_pieces(ex, 0) == [ex] and token_pieces(ex, 8 * 26) == [ex]  # whole, in order
    for budget in (1, 20, 26, 40, 60, 100):
        pieces = token_pieces(ex, budget)
        rows = [e for p in pieces for e in p]
        assert sorted(map(id, rows)) == sorted(map(id, ex))
        for p in pieces:
            width = max(len(e.input_ids) for e in p)
            assert len(p) == 1 or len(p) * width <= budget, (budget, len(p), width)
    lengths = [[len(e.input_ids) for e in p] for p in token_pieces(ex, 60)]
    assert lengths == [[26, 23], [20, 17, 14], [11, 8, 5]]  # longest rows together


def test_n_loss_counts_what_collate_labels():
    ex = _examples(5) + [Example([4, 5, 6], n_prompt=0)]
    assert sum(e.n_loss for e in ex) == target_count(collate(ex, pad_id=0))


def test_pieces_of_a_batch_give_the_whole_batch_gradient():
    ex = _examples(8)
    pieces, n_targets, real = train_mod._step_batches(Dist(), [ex], pad_id=0, budget=48)
    assert len(pieces) > 2 and real == sum(len(e.input_ids) for e in ex)
    assert n_targets == target_count(collate(ex, 0))
    one_loss, one = _grads_after_step([collate(ex, pad_id=0)])
    cut_loss, cut = _grads_after_step(pieces)
    assert cut_loss == pytest.approx(one_loss, abs=1e-6)
    for name in one:
        assert torch.allclose(one[name], cut[name], atol=1e-6), name


def test_every_process_runs_as_many_pieces_with_stand_ins_adding_nothing():
    ex = _examples(3)  # lengths 5, 8 (rank 0: two pieces) and 11 (rank 1: one)
    runs = [
        train_mod._step_batches(Dist(rank=r, world=2), [ex], pad_id=0, budget=10) for r in (0, 1)
    ]
    assert len(runs[0][0]) == len(runs[1][0]) == 2
    assert bool((runs[1][0][1]["labels"] == -100).all())  # rank 1's stand-in
    assert (
        runs[0][1:]
        == runs[1][1:]
        == (target_count(collate(ex, 0)), sum(len(e.input_ids) for e in ex))
    )
    labelled = [sum(target_count(b) for b in mine) for mine, _, _ in runs]
    assert sum(labelled) == runs[0][1]  # stand-ins carry no target


def test_token_weighting_scales_the_gradient_by_the_step_s_share_of_targets():
    ex = _examples(4)
    n = target_count(collate(ex, 0))
    mean_loss, mean = _grads_after_step([collate(ex, 0)])
    tok_loss, tok = _grads_after_step([collate(ex, 0)], n_targets=n, per_token=2.5 * n)
    assert tok_loss == pytest.approx(mean_loss, abs=1e-6)  # the log shows the step's mean
    for name in mean:
        assert torch.allclose(tok[name] * 2.5, mean[name], atol=1e-6), name


def test_loss_weighting_auto_follows_length_grouping():
    from peftlab.config import resolve_weighting

    assert resolve_weighting(TrainConfig()) == "token"
    assert resolve_weighting(TrainConfig(group_by_length=False)) == "step"
    assert resolve_weighting(TrainConfig(group_by_length=False, loss_weighting="token")) == "token"
    with pytest.raises(ValueError, match="loss_weighting"):
        TrainConfig(loss_weighting="tokens")


@pytest.mark.parametrize("name", ["token_budget", "loss_chunk"])
def test_negative_token_options_are_refused_up_front(name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**{name: -1})


def test_response_nll_equals_full_logits_loss():
    model = make_tiny_llama()
    batch = collate(_examples(), pad_id=0)
    nll, n = response_nll(model, batch)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ref = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        batch["labels"][:, 1:].reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    assert n == int((batch["labels"][:, 1:] != -100).sum())
    assert float(nll) == pytest.approx(float(ref), rel=1e-5)
    assert math.isfinite(float(nll))


def test_metrics_log_survives_a_line_cut_short(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "eval_loss": 2.0}\n{"step": 1, "loss": 1.5}\n{"step": 2, "lo')
    log = MetricsLog(path, resume_step=1)
    assert [r["step"] for r in log.records()] == [0, 1]
    assert log.first_eval() == {"eval_loss": 2.0}


def test_adapter_config_never_turns_remote_code_on(tmp_path):
    from peftlab.api import config_for_adapter

    (tmp_path / "config.yaml").write_text(
        "method: lora\nmodel: {name: some/model, trust_remote_code: true}\n"
    )
    cfg = config_for_adapter(tmp_path)
    assert cfg.model.name == "some/model" and cfg.model.trust_remote_code is False
    assert config_for_adapter(tmp_path, trust_remote_code=True).model.trust_remote_code


def test_replace_dir_swaps_in_the_new_directory_and_leaves_nothing_aside(tmp_path):
    from peftlab.core.atomic import replace_dir

    final, new = tmp_path / "ckpt", tmp_path / ".tmp-ckpt"
    final.mkdir()
    (final / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    replace_dir(new, final)
    assert (final / "a").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_allocator_option_values_and_auto_choice():
    from peftlab.host.heap import resolve_allocator, set_allocator

    with pytest.raises(ValueError, match="allocator"):
        set_allocator("fast")
    assert resolve_allocator("auto", memory_first=True, on_mimalloc=False) == "lean"
    assert resolve_allocator("auto", memory_first=False, on_mimalloc=False) == "default"
    # on mimalloc lean only faults pages in again (BENCHMARKS.md): default for QLoRA too
    assert resolve_allocator("auto", memory_first=True, on_mimalloc=True) == "default"
    assert resolve_allocator("lean", memory_first=True, on_mimalloc=True) == "lean"
    assert set_allocator("default", memory_first=True) == "default"
    import sys

    if sys.platform.startswith("linux"):  # glibc: mallopt accepts the setting
        assert set_allocator("auto", memory_first=True) == "lean"
        assert set_allocator("trim") == "trim"
