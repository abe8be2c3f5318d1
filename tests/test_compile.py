"""Regional compilation (``--compile``, ``model/compile.py``): no graph break inside a
decoder layer for any method, the same losses and gradients as eager, eager again
outside training, and the saved names unchanged.

Graph breaks are counted with ``torch._dynamo``'s own counters on the tiny random
Llama, forward and backward in training mode: for every method once in fp32 without
checkpointing (the ``aot_eager`` backend, which also traces the backward as the real
compiler does, and checks the numbers against eager) and once in bf16 autocast with
gradient checkpointing and dropout on (the ``eager`` backend: graph breaks happen while
Dynamo traces, before any backend runs). One small test runs the real compiler
(inductor). Each trace costs seconds, so the two cover the four combinations between
them rather than each method taking all four."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch._dynamo.utils import counters

from peftlab.methods import METHODS, get_method
from peftlab.model.compile import compile_layers, compiled_layers, is_compiled, uncompile_layers
from peftlab.model.inject import inject

from conftest import make_tiny_llama

ALL = sorted(METHODS)


def adapted(name: str, layers: int = 1, dropout: bool = True, **opts):
    model = make_tiny_llama(num_hidden_layers=layers)
    fields = {f.name for f in dataclasses.fields(METHODS[name].config_cls)}
    if not dropout and "dropout" in fields:
        opts = {"dropout": 0.0, **opts}
    inject(model, get_method(name, **opts), base_model="tiny")
    model.config.use_cache = False
    return model.train()


def step(model, precision: str, seed: int = 1) -> torch.Tensor:
    """One forward + backward of the LM loss; returns the loss."""
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(seed))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    out.loss.backward()
    return out.loss.detach()


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ALL)
def test_layer_traces_whole_and_equals_eager(name, fresh_dynamo):
    """fp32, no checkpointing: no graph break, and the loss and every trainable gradient
    of the compiled model (aot_eager: the graph and the backward the compiler would get)
    equal eager's within 1e-5."""
    eager, comp = adapted(name, dropout=False), adapted(name, dropout=False)
    compile_layers(comp, backend="aot_eager")
    assert torch.allclose(step(comp, "fp32"), step(eager, "fp32"), rtol=0, atol=1e-5)
    assert not counters["graph_break"], f"{name}: {list(counters['graph_break'])}"
    assert counters["stats"]["unique_graphs"] == 1  # the layer really was traced, once
    grads = {n: p.grad for n, p in comp.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    for n, p in eager.named_parameters():
        if p.requires_grad:
            assert torch.allclose(grads[n], p.grad, rtol=1e-4, atol=1e-5), n


@pytest.mark.parametrize("name", ALL)
def test_no_graph_break_checkpointed_bf16(name, fresh_dynamo):
    """bf16 autocast, gradient checkpointing traced inside the layer, dropout on (as
    trained): no graph break, forward and backward."""
    model = adapted(name)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert compile_layers(model, backend="eager") == 1
    assert torch.isfinite(step(model, "bf16"))
    assert not counters["graph_break"], f"{name}: {list(counters['graph_break'])}"
    assert counters["stats"]["unique_graphs"] == 1


def test_one_graph_serves_every_layer(fresh_dynamo):
    """Layers share their compiled forward (their parameters are the graph's inputs):
    compile time does not grow with depth, and no layer falls past Dynamo's recompile
    limit. Two graphs for three layers: the first layer's input (the frozen embedding's
    output) needs no gradient, every later one's does."""
    model = adapted("lora", layers=3)
    compile_layers(model, backend="eager")
    step(model, "fp32")
    assert counters["stats"]["unique_graphs"] == 2


def test_inductor_matches_eager(fresh_dynamo):
    """The real compiler (inductor: C++ kernels on the CPU) on one DoRA layer, the
    method with the most adapter math (row norms, magnitude), fp32: output within 1e-5
    and gradients within 1e-4 of eager (the same math, fused and reduced in another
    order). One adapter layer, not a decoder layer: compiling a whole layer's kernels
    takes minutes on a shared 2-core machine."""
    torch.manual_seed(0)
    method = get_method("dora", r=4, alpha=8, dropout=0.0)
    eager = method.wrap(torch.nn.Linear(32, 48), "q_proj").train()
    comp = method.wrap(torch.nn.Linear(32, 48), "q_proj").train()
    comp.load_state_dict(eager.state_dict())
    with torch.no_grad():
        for layer in (eager, comp):
            layer.lora_B.weight.copy_(torch.linspace(-0.2, 0.2, 48 * 4).view(48, 4))
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(2))
    outs = []
    for fn in (eager, torch.compile(comp)):
        y = fn(x)
        (y * torch.arange(48)).sum().backward()
        outs.append(y.detach())
    assert torch.allclose(outs[1], outs[0], rtol=0, atol=1e-5)
    for (n, p), q in zip(eager.named_parameters(), comp.parameters()):
        if p.requires_grad:
            assert torch.allclose(q.grad, p.grad, rtol=1e-4, atol=1e-4), n
    assert not counters["graph_break"]


def test_eager_outside_training_and_names_unchanged(fresh_dynamo, tiny_inputs):
    """Evaluation and no-grad calls run the layer's own forward (nothing traced), the
    state dict's names are the eager model's, and leaving the context restores the
    layers."""
    model = adapted("lora")
    names = list(model.state_dict())
    with compiled_layers(model, True) as n:
        assert n == 1 and all(is_compiled(layer) for layer in model.model.layers)
        assert list(model.state_dict()) == names
        model.eval()
        with torch.no_grad():
            model(**tiny_inputs)
        model.train()
        with torch.no_grad():
            model(**tiny_inputs)
        assert not counters["stats"]["unique_graphs"]  # nothing compiled yet
    assert not any(is_compiled(layer) for layer in model.model.layers)
    assert "forward" not in vars(model.model.layers[0])
    assert uncompile_layers(model) == 0


def test_a_training_run_with_compile_equals_eager(tmp_path, tiny_model_dir, monkeypatch):
    """The loop with ``compile``: the same losses as without (aot_eager here: inductor's
    C++ build takes minutes on the shared CPU), the layers eager again after training
    (evaluation, merge check and saving ran), the adapter's names unchanged, and the
    option saved in config.yaml."""
    import json

    import yaml

    from peftlab import build_config, train
    from peftlab.model import compile as seam

    from conftest import write_toy_dataset

    monkeypatch.setattr(seam, "BACKEND", "aot_eager")
    data = write_toy_dataset(tmp_path / "toy.json")
    runs = {}
    for flag in (False, True):
        out = tmp_path / f"run-{flag}"
        cfg = build_config(
            model=tiny_model_dir,
            dataset=data,
            output=str(out),
            max_steps=3,
            batch_size=4,
            r=2,
            dropout=0.0,
            mixed_precision="no",
            exact_match_limit=0,
            progress=False,
            max_length=48,
            compile=flag,
            token_budget=0,
        )
        runs[flag] = train(cfg)
        steps = [json.loads(x) for x in open(out / "metrics.jsonl")]
        runs[flag, "loss"] = [r["loss"] for r in steps if "loss" in r and "lr" in r]
        assert yaml.safe_load((out / "config.yaml").read_text())["train"]["compile"] is flag
    assert runs[True, "loss"] == pytest.approx(runs[False, "loss"], abs=1e-5)
    assert runs[True]["after"]["eval_loss"] == pytest.approx(
        runs[False]["after"]["eval_loss"], abs=1e-5
    )
    from safetensors.torch import load_file

    a = load_file(tmp_path / "run-False" / "adapter_model.safetensors")
    b = load_file(tmp_path / "run-True" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert not counters["graph_break"]


def test_a_model_without_decoder_layers_is_refused():
    with pytest.raises(ValueError, match="no decoder layers"):
        compile_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_compile_option_is_a_config_key_and_a_flag():
    from peftlab.cli import build_parser
    from peftlab.config import build_config

    assert build_config(compile=True).train.compile is True
    assert build_config({"train": {"compile": True}}).train.compile is True
    args = build_parser().parse_args(["train", "--compile"])
    assert args.compile is True
