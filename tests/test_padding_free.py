"""Padding-free batches (``--padding-free``): the records of a micro-batch in one row,
positions restarting at each record, attention kept within each record. For every method
the padded and the padding-free batch give the same summed loss and the same gradients
(fp32 on CPU); a training run with it trains as the padded run does."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from peftlab import build_config, train
from peftlab.cli import main
from peftlab.data.batching import IGNORE, Example, collate, flatten
from peftlab.methods import METHODS, get_method
from peftlab.model.inject import adapter_layers, inject
from peftlab.model.padding_free import VARLEN_SDPA, use_padding_free
from peftlab.training.loss import LossOptions, Targets, response_nll

from conftest import make_tiny_llama, write_toy_dataset

TOL = 1e-5
"""Loss: relative. Gradients: absolute, scaled by max(1, the padded gradient's largest
magnitude): fp32 sums taken in another order, nothing more."""


def examples() -> list[Example]:
    """Records of unequal lengths (so the padded batch has padding): response tails, a
    conversation-style mask, and one with no prompt at all (its first label is a target
    in the padded batch's labels, yet never predicted: position 0 has no token before)."""
    g = torch.Generator().manual_seed(5)

    def ids(n):
        return torch.randint(3, 128, (n,), generator=g).tolist()

    mask = [True, False, False, True, True, False, True, True, True, True, False]
    return [
        Example(ids(17), n_prompt=6),
        Example(ids(9), n_prompt=3),
        Example(ids(11), n_prompt=0, mask=mask),
        Example(ids(23), n_prompt=0),
        Example(ids(5), n_prompt=4),
    ]


def test_flatten_one_row_with_restarting_positions_and_the_same_targets():
    exs = examples()
    padded, flat = collate(exs, 0), flatten(exs, 0)
    lengths = [len(e.input_ids) for e in exs]
    assert flat["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in flat
    assert flat["input_ids"][0].tolist() == [t for e in exs for t in e.input_ids]
    assert flat["position_ids"][0].tolist() == [i for n in lengths for i in range(n)]
    assert flat["cu_seq_lens_q"].tolist() == [0, 17, 26, 37, 60, 65]
    assert flat["max_length_q"] == flat["max_length_k"] == 23
    # Each record's first label is ignored: never predicted from the record before it.
    starts = flat["cu_seq_lens_q"][:-1].long()
    assert (flat["labels"][0, starts] == IGNORE).all()
    assert padded["labels"][2, 0] != IGNORE  # collate labels it; no one predicts it
    a, b = Targets.of(padded["labels"]), Targets.of(flat["labels"])
    assert a.count == b.count == sum(e.n_loss for e in exs)
    assert torch.equal(a.ids, b.ids)  # same targets, same order


def _method(name: str):
    fields = {f.name for f in dataclasses.fields(METHODS[name].config_cls)}
    opts = {"dropout": 0.0} if "dropout" in fields else {}  # equal draws need no dropout
    return get_method(name, **opts)


def _loss_and_grads(model, batch, opts):
    model.zero_grad(set_to_none=True)
    nll, n = response_nll(model, batch, opts)
    nll.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    return nll.detach(), n, grads


def _assert_same(ref, got):
    (l0, n0, g0), (l1, n1, g1) = ref, got
    assert n0 == n1
    assert abs(l1.item() - l0.item()) <= TOL * abs(l0.item()), (l0.item(), l1.item())
    assert g0.keys() == g1.keys() and g0
    for k in g0:
        bound = TOL * max(1.0, g0[k].abs().max().item())
        assert (g1[k] - g0[k]).abs().max().item() <= bound, k
    assert any(g.abs().max() > 0 for g in g0.values())  # the gradients are not all zero


def _adapted(method):
    """The tiny Llama with ``method``'s adapter, in training mode, its values moved off
    the initial ones (a fresh adapter's zero factor stops the other's gradient)."""
    torch.manual_seed(0)
    model = make_tiny_llama()
    inject(model, method, base_model="tiny")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            for p in layer.adapter_params().values():
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model.train()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_same_loss_and_gradients_as_the_padded_batch(name):
    model = _adapted(_method(name))
    exs, opts = examples(), LossOptions(response_only_head=True, chunk=8)
    padded = _loss_and_grads(model, collate(exs, 0), opts)
    assert use_padding_free(model, torch.device("cpu")) == VARLEN_SDPA
    _assert_same(padded, _loss_and_grads(model, flatten(exs, 0), opts))
    # The padded batch through the padding-free model: transformers' SDPA, unchanged.
    _assert_same(padded, _loss_and_grads(model, collate(exs, 0), opts))


@pytest.mark.parametrize("checkpointing", [False, True])
def test_whole_model_head_path_matches_too(checkpointing):
    """Without the response-only head (the model's own forward and logits), and with
    gradient checkpointing (the recomputed forward sees the records' boundaries too)."""
    model = _adapted(get_method("lora", r=4, alpha=8, dropout=0.0))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    exs, opts = examples(), LossOptions(response_only_head=False, chunk=0)
    padded = _loss_and_grads(model, collate(exs, 0), opts)
    use_padding_free(model, torch.device("cpu"))
    _assert_same(padded, _loss_and_grads(model, flatten(exs, 0), opts))


def _toy(tmp_path, model_dir, **kw):
    base = dict(
        model=model_dir,
        dataset=write_toy_dataset(tmp_path / "toy.json"),
        output=str(tmp_path / "run"),
        max_steps=2,
        batch_size=6,
        token_budget=120,  # cut into pieces first; each piece flattened
        lr=5e-3,
        r=4,
        alpha=8,
        dropout=0.0,
        mixed_precision="no",
        exact_match_limit=2,
        max_new_tokens=4,
        max_eval_records=4,
        progress=False,
        max_length=64,
        seed=11,
    )
    return build_config(**{**base, **kw})


def _losses(run_dir):
    lines = [json.loads(x) for x in open(run_dir / "metrics.jsonl")]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


def test_cli_run_trains_as_the_padded_run_and_saves_the_setting(tmp_path, tiny_model_dir):
    padded = train(_toy(tmp_path / "padded", tiny_model_dir))
    cfg = _toy(tmp_path / "free", tiny_model_dir)
    run = tmp_path / "free" / "run"
    args = ["train", "--model", tiny_model_dir, "--dataset", cfg.data.dataset]
    args += ["--output", str(run), "--padding-free", "--max-steps", "2", "--batch-size", "6"]
    args += ["--token-budget", "120", "--lr", "5e-3", "--r", "4", "--alpha", "8"]
    args += ["--dropout", "0", "--mixed-precision", "no", "--exact-match-limit", "2"]
    args += ["--max-new-tokens", "4", "--max-eval-records", "4", "--no-progress"]
    args += ["--max-length", "64", "--seed", "11"]
    assert main(args) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["padding_free"] is True
    results = json.loads((run / "results.json").read_text())
    assert results["padding_free_attention"] == VARLEN_SDPA
    a, b = _losses(tmp_path / "padded" / "run"), _losses(run)
    assert sorted(a) == sorted(b) == [1, 2]
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=TOL), step
    assert results["after"]["eval_loss"] == pytest.approx(padded["after"]["eval_loss"], rel=1e-4)


def test_config_key_round_trips_and_defaults_off(tmp_path):
    assert build_config().train.padding_free is False
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  padding_free: true\n")
    assert build_config(config=str(path)).train.padding_free is True


def test_a_record_never_reads_the_one_before_it():
    """Changing the first record changes nothing in the second's outputs, and each
    record's outputs in the row are those of the record alone."""
    model = make_tiny_llama()
    use_padding_free(model, torch.device("cpu"))
    exs = examples()[:2]
    other = [Example([(t * 7) % 120 + 3 for t in exs[0].input_ids], 6), exs[1]]
    n0 = len(exs[0].input_ids)

    def hidden(batch):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            return model.model(**inputs, use_cache=False).last_hidden_state[0]

    a, b = hidden(flatten(exs, 0)), hidden(flatten(other, 0))
    assert (a[:n0] - b[:n0]).abs().max() > 1e-3  # the first record did change
    assert torch.allclose(a[n0:], b[n0:], atol=1e-6)
    alone = hidden(collate([exs[1]], 0))
    assert torch.allclose(a[n0:], alone, atol=1e-5)
