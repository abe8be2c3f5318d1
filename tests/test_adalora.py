"""AdaLoRA: the rank allocator against peft's RankAllocator, the PEFT format with cut ranks,
and training end to end (metrics, saved adapter, exact resume)."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from peftlab import build_config, train
from peftlab.formats.peft import load_adapter_into, save_adapter
from peftlab.methods import get_method
from peftlab.methods.adalora import FACTORS, AdaLoraLinear
from peftlab.methods.adalora_alloc import Schedule, keep_masks
from peftlab.model.inject import adapter_layers, adapter_state, inject
from peftlab.training.checkpoint import list_checkpoints
from test_train import train_interrupted_after

from conftest import make_tiny_llama, write_toy_dataset

peft = pytest.importorskip("peft")
train_mod = importlib.import_module("peftlab.training.loop")

PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SCHED = dict(init_r=4, target_r=2, tinit=2, tfinal=3, deltaT=2)
TOTAL = 12


def peft_adalora(total=TOTAL, **kw):
    opts = {**SCHED, **kw}
    # task_type matters: without it peft returns a plain PeftModel whose forward skips
    # AdaLoraModel.forward, i.e. silently drops the orthogonality term.
    cfg = peft.AdaLoraConfig(
        task_type="CAUSAL_LM",
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=PROJ,
        total_step=total,
        orth_reg_weight=0.5,
        **opts,
    )
    return peft.get_peft_model(make_tiny_llama(), cfg)


def ours_like(theirs):
    """A peftlab AdaLoRA model with exactly the weights of peft model ``theirs``."""
    model = make_tiny_llama()
    method = get_method(
        "adalora", alpha=8, dropout=0.0, target_modules=PROJ, orth_reg_weight=0.5, **SCHED
    )
    inject(model, method)
    params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, layer in adapter_layers(model):
            for f in FACTORS:
                getattr(layer, f).copy_(params[f"base_model.model.{name}.{f}.default"])
    return model, method


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def batch(step):
    g = torch.Generator().manual_seed(100 + step)
    ids = torch.randint(3, 128, (2, 12), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_budget_schedule_matches_peft():
    alloc = peft_adalora().base_model.rankallocator
    c = alloc.peft_config
    for tinit, tfinal, total, delta in [(2, 3, 12, 2), (0, 0, 7, 1), (5, 10, 400, 3)]:
        c.tinit, c.tfinal, c.total_step, c.deltaT = tinit, tfinal, total, delta
        ours = Schedule(alloc.init_bgt, alloc.target_bgt, tinit, tfinal, total, delta)
        for step in range(1, total + 3):
            assert ours.budget(step) == alloc.budget_schedule(step), (tinit, total, step)


def test_keep_masks_drop_ties_like_peft_and_survive_k0():
    scores = {"a": torch.tensor([0.0, 0.0, 3.0]), "b": torch.tensor([0.0, 5.0])}
    # asked to drop 1 of 5, but three triplets tie at the threshold: all three go
    kept = keep_masks(scores, init_budget=5, budget=4)
    assert kept["a"].tolist() == [False, False, True] and kept["b"].tolist() == [False, True]
    # nothing to drop (peft's kthvalue(k=0) would fail): everything is kept
    assert all(m.all() for m in keep_masks(scores, 5, 5).values())


def test_schedule_without_budgeting_phase_names_numbers():
    model = make_tiny_llama()
    method = get_method("adalora", init_r=4, target_r=2, tinit=6, tfinal=4)
    inject(model, method)
    with pytest.raises(
        ValueError,
        match=r"tinit \(6\) \+ tfinal \(4\) = 10 .* total steps "
        r"\(10\).*Lower tinit",
    ):
        method.on_step_end(model, 1, SimpleNamespace(total_steps=10))


@pytest.mark.parametrize(
    "bad",
    [
        dict(target_r=13),
        dict(beta1=1.0),
        dict(deltaT=0),
        dict(init_r=0),
        dict(orth_reg_weight=-1.0),
        dict(alpha=0),
    ],
)
def test_bad_options_are_rejected(bad):
    with pytest.raises(ValueError, match="AdaLoRA"):
        get_method("adalora", **bad)


def test_orthogonality_term_equals_peft():
    theirs = peft_adalora()
    ours, method = ours_like(theirs)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # non-trivial P, Q, Λ in both
        for _name, layer in adapter_layers(ours):
            for f in FACTORS:
                getattr(layer, f).add_(torch.randn(getattr(layer, f).shape, generator=g) * 0.3)
        _copy_ours_into_peft(ours, theirs)
    inputs = batch(0)
    with torch.no_grad():
        theirs_loss = theirs(**inputs, labels=inputs["input_ids"]).loss
        ours_nll = ours(**inputs, labels=inputs["input_ids"]).loss
        ours_loss = ours_nll + method.extra_loss(ours)
    assert (ours_loss - ours_nll).abs() > 0.1
    assert ours_loss.item() == pytest.approx(theirs_loss.item(), abs=1e-5)


def _copy_ours_into_peft(ours, theirs, grads=False):
    params = dict(theirs.named_parameters())
    for name, layer in adapter_layers(ours):
        for f in FACTORS:
            src, dst = getattr(layer, f), params[f"base_model.model.{name}.{f}.default"]
            if grads:
                dst.grad = src.grad.clone()
            else:
                dst.data.copy_(src.data)


def _peft_patterns(theirs):
    pattern = theirs.peft_config["default"].rank_pattern or {}
    return {k.replace(".lora_E", "").replace(".default", ""): v for k, v in pattern.items()}


def test_allocator_keeps_the_same_ranks_as_peft(tmp_path):
    """Same weights, same gradients, same optimiser: after every step the masks, the
    importance averages and the weights agree exactly, and both cut the same ranks."""
    theirs = peft_adalora()
    ours, method = ours_like(theirs)
    plan = SimpleNamespace(total_steps=TOTAL)
    opt_o = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=2e-2)
    opt_t = torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=2e-2)
    allocator = theirs.base_model.rankallocator
    history = []
    for step in range(1, TOTAL + 1):
        inputs = batch(step)
        loss = ours(**inputs, labels=inputs["input_ids"]).loss + method.extra_loss(ours)
        loss.backward()
        _copy_ours_into_peft(ours, theirs, grads=True)
        opt_o.step()
        opt_t.step()
        theirs.base_model.update_and_allocate(step)
        metrics = method.on_step_end(ours, step, plan)
        for key, ema in method.importance.ipt.items():
            peft_key = key + ".default"
            assert torch.equal(ema, allocator.exp_avg_ipt[peft_key]), (step, key)
            assert torch.equal(method.importance.unc[key], allocator.exp_avg_unc[peft_key])
        params = dict(theirs.named_parameters())
        for name, layer in adapter_layers(ours):
            for f in FACTORS:
                theirs_p = params[f"base_model.model.{name}.{f}.default"]
                assert torch.equal(getattr(layer, f), theirs_p), (step, name, f)
        theirs_pattern = _peft_patterns(theirs)
        ours_pattern = {
            n: lay.rank_pattern()
            for n, lay in adapter_layers(ours)
            if lay.rank_pattern() is not None
        }
        assert ours_pattern == theirs_pattern, step
        if metrics:
            assert metrics["adalora_ranks"] == {n: sum(p) for n, p in theirs_pattern.items()}
            history.append(metrics)
        opt_o.zero_grad()
        opt_t.zero_grad()

    # allocations at steps 4, 6, 8 (every deltaT after tinit) and the final one at T - tfinal
    assert len(history) == 4
    init_budget, target_budget = 4 * 14, 2 * 14
    totals = [sum(m["adalora_ranks"].values()) for m in history]
    assert totals[-1] <= target_budget < init_budget and totals[0] > totals[-1]
    assert history[-1]["adalora_budget"] == target_budget
    assert len(set(history[-1]["adalora_ranks"].values())) > 1, "ranks differ by layer"
    _check_cross_loading(ours, theirs, tmp_path)


def _check_cross_loading(ours, theirs, tmp_path):
    """Both save the same cut adapter, and each loads the other's with the same logits."""
    ours.eval()
    theirs.eval()
    save_adapter(ours, tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    cfg_o = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    cfg_t = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    assert cfg_o["rank_pattern"] == cfg_t["rank_pattern"]
    assert cfg_o["total_step"] == TOTAL
    w_o = load_file(tmp_path / "ours" / "adapter_model.safetensors")
    w_t = load_file(tmp_path / "theirs" / "adapter_model.safetensors")
    assert w_o.keys() == w_t.keys()
    assert all(torch.equal(w_o[k], w_t[k]) for k in w_o)
    cut = [k for k in w_o if k.endswith("lora_A") and w_o[k].shape[0] < 4]
    assert cut, "the saved adapter must be cut to the kept ranks"

    inputs = batch(0)
    ref = logits(ours, inputs)
    assert (ref - logits(theirs, inputs)).abs().max() <= 1e-5
    peft_loaded = peft.PeftModel.from_pretrained(make_tiny_llama(), tmp_path / "ours").eval()
    assert (logits(peft_loaded, inputs) - ref).abs().max() <= 1e-5
    ours_loaded = make_tiny_llama()
    load_adapter_into(ours_loaded, tmp_path / "theirs")
    assert (logits(ours_loaded, inputs) - ref).abs().max() <= 1e-5
    # loaded at the kept ranks, and a re-save writes the same adapter again
    ranks = {n: lay.r for n, lay in adapter_layers(ours_loaded)}
    assert ranks == {k[: -len(".lora_E")]: sum(v) for k, v in cfg_t["rank_pattern"].items()}
    save_adapter(ours_loaded, tmp_path / "again")
    cfg_a = json.loads((tmp_path / "again" / "adapter_config.json").read_text())
    assert cfg_a["rank_pattern"] == cfg_t["rank_pattern"]
    w_a = load_file(tmp_path / "again" / "adapter_model.safetensors")
    assert all(torch.equal(w_a[k], w_t[k]) for k in w_t)


def test_layer_cut_to_rank_zero_round_trips(tmp_path):
    model = make_tiny_llama()
    inject(
        model,
        get_method(
            "adalora", init_r=3, target_r=1, dropout=0.0, target_modules=["q_proj", "v_proj"]
        ),
    )
    g = torch.Generator().manual_seed(2)
    layers = dict(adapter_layers(model))
    with torch.no_grad():
        for i, layer in enumerate(layers.values()):
            for p in layer.adapter_params().values():
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
            layer.kept = torch.tensor([[False] * 3, [True, False, True]][i % 2])
            layer.apply_mask()
    inputs = batch(0)
    ref = logits(model, inputs)
    save_adapter(model, tmp_path)
    w = load_file(tmp_path / "adapter_model.safetensors")
    assert w["base_model.model.model.layers.0.self_attn.q_proj.lora_A"].shape == (0, 32)
    ours = make_tiny_llama()
    load_adapter_into(ours, tmp_path)
    assert (logits(ours, inputs) - ref).abs().max() <= 1e-6
    theirs = peft.PeftModel.from_pretrained(make_tiny_llama(), tmp_path).eval()
    assert (logits(theirs, inputs) - ref).abs().max() <= 1e-5


def test_state_tensors_round_trip():
    theirs = peft_adalora()
    model, method = ours_like(theirs)
    plan = SimpleNamespace(total_steps=TOTAL)
    for step in range(1, 5):
        inputs = batch(step)
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        method.on_step_end(model, step, plan)
    state = method.state_tensors()
    assert any(k.startswith("kept.") for k in state) and "total_step" in state
    other = make_tiny_llama()
    method2 = get_method("adalora", alpha=8, dropout=0.0, target_modules=PROJ, **SCHED)
    inject(other, method2)
    method2.load_state_tensors(state)
    again = method2.state_tensors()
    assert again.keys() == state.keys()
    assert all(torch.equal(again[k], state[k]) for k in state)
    with pytest.raises(ValueError, match="names no AdaLoRA parameter"):
        method2.load_state_tensors({"ema_ipt.nope.lora_A": torch.zeros(1)})


# -- training end to end -----------------------------------------------------------------


def ada_config(tmp_path, model_dir, **kw):
    data = write_toy_dataset(tmp_path / "toy.json")
    base = dict(
        model=model_dir,
        dataset=data,
        output=str(tmp_path / "run"),
        method="adalora",
        max_steps=20,
        batch_size=4,
        lr=2e-2,
        init_r=4,
        target_r=2,
        tinit=3,
        tfinal=5,
        deltaT=2,
        alpha=8,
        dropout=0.0,
        mixed_precision="no",
        save_every=0,
        exact_match_limit=2,
        max_new_tokens=4,
        progress=False,
        max_length=64,
        seed=11,
    )
    base.update(kw)
    return build_config(**base)


def metric_lines(run):
    return [json.loads(x) for x in open(run / "metrics.jsonl")]


def test_training_shrinks_ranks_and_saves_cut_adapter(tmp_path, tiny_model_dir):
    train(ada_config(tmp_path, tiny_model_dir))
    run = tmp_path / "run"
    allocs = [r for r in metric_lines(run) if "adalora_budget" in r]
    # every deltaT steps after tinit until T - tfinal = 15, which is the final allocation
    assert [r["step"] for r in allocs] == [4, 6, 8, 10, 12, 14, 15]
    totals = [sum(r["adalora_ranks"].values()) for r in allocs]
    n_layers = 2 * len(PROJ)
    assert totals[0] > totals[-1] and totals[-1] <= 2 * n_layers < 4 * n_layers
    assert allocs[-1]["adalora_budget"] == 2 * n_layers

    cfg = json.loads((run / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "ADALORA" and cfg["total_step"] == 20
    assert len(cfg["rank_pattern"]) == n_layers
    final = {k[: -len(".lora_E")]: v for k, v in cfg["rank_pattern"].items()}
    assert {k: sum(v) for k, v in final.items()} == allocs[-1]["adalora_ranks"]
    w = load_file(run / "adapter_model.safetensors")
    for module, kept in final.items():
        assert w[f"base_model.model.{module}.lora_A"].shape[0] == sum(kept)
        assert w[f"base_model.model.{module}.lora_B"].shape[1] == sum(kept)

    from transformers import AutoModelForCausalLM

    import peftlab

    ours = peftlab.load_adapter(run, model=tiny_model_dir)
    inputs = batch(0)
    ref = logits(ours, inputs)
    theirs = peft.PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), run
    ).eval()
    assert (logits(theirs, inputs) - ref).abs().max() <= 1e-5
    # cutting lost nothing: the full-rank weights of the last checkpoint give the same model
    full = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    inject(full, get_method("adalora", init_r=4, target_r=2, dropout=0.0))
    params = load_file(list_checkpoints(run)[-1] / "adapter_params.safetensors")
    with torch.no_grad():
        for key, p in adapter_state(full).items():
            p.copy_(params[key])
    assert (logits(full, inputs) - ref).abs().max() <= 1e-5


def test_resume_gives_same_losses_ranks_and_weights(tmp_path, tiny_model_dir, monkeypatch):
    kw = dict(max_steps=12, tinit=2, tfinal=4, deltaT=2, save_every=5, dropout=0.1)
    train(ada_config(tmp_path / "a", tiny_model_dir, **kw))
    run_a, run_b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    # Step 5 is mid-budgeting: the importance averages and masks matter.
    train_interrupted_after(5, ada_config(tmp_path / "b", tiny_model_dir, **kw), monkeypatch)
    assert [p.name for p in list_checkpoints(run_b)] == ["step-000005"]
    train(ada_config(tmp_path / "b", tiny_model_dir, resume=True, **kw))

    a, b = metric_lines(run_a), metric_lines(run_b)
    loss_a = {r["step"]: r["loss"] for r in a if "loss" in r}
    loss_b = {r["step"]: r["loss"] for r in b if "loss" in r}
    assert sorted(loss_b) == list(range(1, 13))
    for step in range(6, 13):
        assert loss_b[step] == pytest.approx(loss_a[step], abs=1e-6), step
    ranks_a = [r for r in a if "adalora_ranks" in r]
    ranks_b = [r for r in b if "adalora_ranks" in r]
    assert [r["step"] for r in ranks_a] == [4, 6, 8] == [r["step"] for r in ranks_b]
    assert ranks_a[-1]["adalora_ranks"] == ranks_b[-1]["adalora_ranks"]
    cfg_a = json.loads((run_a / "adapter_config.json").read_text())
    cfg_b = json.loads((run_b / "adapter_config.json").read_text())
    assert cfg_a["rank_pattern"] == cfg_b["rank_pattern"]
    wa = load_file(run_a / "adapter_model.safetensors")
    wb = load_file(run_b / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa if wa[k].numel()) <= 1e-6


def test_adalora_layers_are_found_by_type():
    model = make_tiny_llama()
    inject(model, get_method("adalora", target_modules=["q_proj"]))
    assert all(isinstance(layer, AdaLoraLinear) for _, layer in adapter_layers(model))
