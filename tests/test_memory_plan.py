"""The memory planner (issue 16): sizes, exact parameter counts from a meta skeleton, the
activation probe against a direct census, predictions against measured peaks, the
``plan`` command, and ``train --max-memory``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from peftlab.config import build_config
from peftlab.core.sizes import parse_size
from peftlab.memory.measure import saved_tensor_census
from peftlab.memory.planner import FIT_MARGIN, estimate_run, largest_piece
from peftlab.memory.probe import _census, _probe_model, layer_census
from peftlab.memory.shapes import model_config, shape_of
from peftlab.methods import METHODS, get_method
from peftlab.model.inject import count_parameters, inject
from peftlab.model.load import load_model

from conftest import write_toy_dataset

GiB = 1 << 30


def test_parse_size_units_and_errors():
    assert parse_size("24GB") == 24 * GiB == parse_size("24 GiB") == parse_size("24g")
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("3.5GiB") == int(3.5 * GiB)
    assert parse_size(1000) == 1000 == parse_size("1000")
    for bad in ("", "GB", "-1GB", "lots", "0"):
        with pytest.raises(ValueError, match="memory size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="memory size"):
        build_config(max_memory="big")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_skeleton_counts_match_the_real_model(method, tiny_model_dir):
    """Parameter counts and stored bytes from the meta skeleton equal the loaded model's
    with the same method injected."""
    config = model_config(tiny_model_dir)
    shape = shape_of(config, get_method(method), torch.float32)
    model = load_model(tiny_model_dir)
    inject(model, get_method(method))
    counts = count_parameters(model)
    assert shape.trainable == counts["trainable"]
    assert shape.total_params == counts["total"]
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    frozen += sum(
        b.numel() * b.element_size()
        for b in model.buffers()
        if b.dtype != torch.int64 or b.numel() > 1
    )
    assert shape.frozen_bytes == frozen
    assert (shape.layers, shape.hidden) == (config.num_hidden_layers, config.hidden_size)


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "qlora", "full", "loha", "lokr"])
def test_probe_extrapolates_the_census_exactly(method, tiny_model_dir):
    """The probe's const + rows·(a·S + b·S²) per kind, fitted at three lengths of one
    row, predicts the census of another batch shape (bf16 autocast, as on this CPU)."""
    config = model_config(tiny_model_dir)
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    census = layer_census(config, get_method(method), torch.float32, autocast)
    model = _probe_model(config, get_method(method), torch.float32, torch.device("cpu"))
    got = _census(model, 3, 41, autocast)
    predicted = census.per_layer(3, 41)
    for kind, value in predicted.items():
        assert value == pytest.approx(got.get(kind, 0), rel=0.02, abs=64), kind
    assert sum(predicted.values()) > 0


def test_census_counts_shared_storage_once_and_skips_weights():
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(4, 8, requires_grad=True)
    with saved_tensor_census(lin) as counts:
        y = torch.tanh(lin(x))
        (y * y).sum()
    total = sum(counts.values())
    # x (saved by the linear) and tanh's output (saved by tanh and by the square, once)
    assert total == 2 * 4 * 8 * 4, counts


def test_largest_piece_follows_the_token_budget():
    cfg = build_config(batch_size=8, max_length=512, token_budget=2048)
    assert vars(largest_piece(cfg, None)) == {"rows": 4, "seq": 512, "loss_tokens": 4 * 511}
    cfg = build_config(batch_size=8, max_length=512, token_budget=0)
    assert largest_piece(cfg, None).rows == 8


def test_estimate_parts_and_levers(tiny_model_dir):
    """Parts add up to the peak; checkpointing, a smaller budget and the lean allocator
    each lower the prediction; QLoRA's frozen weights are smaller than LoRA's."""
    base = dict(model=tiny_model_dir, max_length=128, batch_size=8, token_budget=0, device="cpu")
    est = estimate_run(build_config(**base), with_time=False)
    assert sum(est.parts.values()) == est.peak == max(est.phases.values())
    for change in ({"gradient_checkpointing": True}, {"token_budget": 256}, {"allocator": "lean"}):
        smaller = estimate_run(build_config(**{**base, **change}), with_time=False)
        assert smaller.phases["train"] < est.phases["train"], change
    q = estimate_run(build_config(**base, method="qlora"), with_time=False)
    assert q.parts["frozen weights"] < est.parts["frozen weights"]
    full = estimate_run(build_config(**base, method="full"), with_time=False)
    assert full.parts["gradients + AdamW state"] > 100 * est.parts["gradients + AdamW state"]


def _train_peak(tmp_path: Path, **opts) -> dict:
    """``peftlab train`` in a child process; its results.json."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "run"
    cfg = dict(
        max_steps=3,
        max_eval_records=16,
        exact_match_limit=4,
        max_new_tokens=8,
        save_every=0,
        progress=False,
        output=str(out),
        **opts,
    )
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "peftlab", "train", "--config", str(path), "--overwrite"],
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize(
    "opts",
    [{"method": "lora"}, {"method": "ia3", "gradient_checkpointing": True}],
    ids=["lora", "ia3-checkpointing"],
)
def test_prediction_is_near_the_measured_peak(opts, tmp_path):
    """Cheap cases of bench/memory_plan.py (which holds the ±15% table): the embedded
    model, three steps on the bundled data; the test's bound is looser (±25%)."""
    res = _train_peak(tmp_path, plan_memory=True, **opts)
    predicted = res["predicted_memory"]["peak_bytes"]
    measured = res["peak_memory_bytes"]
    assert predicted == pytest.approx(measured, rel=0.25), (predicted / GiB, measured / GiB)


def test_max_memory_keeps_the_run_under_the_cap(tmp_path):
    """A cap below the default run's measured peak: the run picks other settings, says
    so in config.yaml, and its measured peak stays under the cap. fp32 on every CPU, so
    that the runs and the setting chosen are the same whether or not the CPU has fast bf16
    (bench/memory_plan.py covers the planner under bf16)."""
    default = _train_peak(tmp_path / "default", method="lora", mixed_precision="no")
    cap = int(default["peak_memory_bytes"] * 0.8)
    res = _train_peak(tmp_path / "capped", method="lora", mixed_precision="no", max_memory=str(cap))
    phases = {k: round(v / GiB, 3) for k, v in res["memory_phases"].items()}
    assert res["peak_memory_bytes"] < cap, (
        res["peak_memory_bytes"] / GiB,
        cap / GiB,
        phases,
        res["predicted_memory"],
    )
    saved = yaml.safe_load((tmp_path / "capped" / "run" / "config.yaml").read_text())
    t = saved["train"]
    assert (t["token_budget"], t["gradient_checkpointing"], t["allocator"]) != (2048, False, "auto")
    assert res["predicted_memory"]["peak_bytes"] <= cap * FIT_MARGIN  # the planner's margin


def test_max_memory_too_small_stops_before_training(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "peftlab",
            "train",
            "--output",
            str(out),
            "--max-memory",
            "300MiB",
            "--max-steps",
            "1",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert proc.returncode == 2
    assert "--max-memory 300MiB" in proc.stderr and "smallest predicted peak" in proc.stderr
    assert not out.exists()


def test_plan_command_json_and_fit(tmp_path, tiny_model_dir):
    data = write_toy_dataset(tmp_path / "toy.json")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "peftlab",
            "plan",
            "--model",
            tiny_model_dir,
            "--dataset",
            data,
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    est = res["methods"]["lora"]
    assert res["prediction"] is True and res["data"].endswith("toy.json")
    assert sum(est["parts"].values()) == est["peak_bytes"] > 0
    import peftlab  # the same plan from Python

    same = peftlab.plan(model=tiny_model_dir, dataset=data)
    assert same["methods"]["lora"]["parts"] == est["parts"] and "predicted peak" in same["text"]
    fit = peftlab.plan(model=tiny_model_dir, use_data=False, fit="1GiB", methods=["lora", "ia3"])
    assert set(fit["methods"]) == {"lora", "ia3"} and fit["fit"]["asked"] == "1GiB"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "peftlab",
            "plan",
            "--model",
            tiny_model_dir,
            "--no-data",
            "--fit",
            "1GiB",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    for method in ("lora", "qlora", "dora", "adalora", "ia3", "full"):
        assert f"| {method} |" in proc.stdout


def test_plan_for_a_known_model_without_its_files():
    """Mistral-7B's shape is known offline: LoRA on a bf16 base, checkpointing on."""
    cfg = build_config(
        model="mistralai/Mistral-7B-Instruct-v0.3",
        dtype="bfloat16",
        device="cuda",
        batch_size=1,
        max_length=512,
        gradient_checkpointing=True,
        exact_match_limit=0,
    )
    est = estimate_run(cfg, with_time=False)
    assert 13.4 * GiB < est.parts["frozen weights"] < 13.6 * GiB
    assert "runtime" not in est.parts  # a GPU's allocated memory does not count it
    assert est.peak < 20 * GiB


def test_report_shows_predicted_beside_measured():
    from peftlab.compare.report import table_row

    run = {
        "name": "lora",
        "method": "lora",
        "status": "ok",
        "peak_memory_bytes": 2 * GiB,
        "memory_kind": "rss",
        "predicted_memory_bytes": int(1.9 * GiB),
    }
    cell = table_row(run)["Peak memory"]
    assert cell.startswith("2 GiB (rss)") and "predicted 1.9 GiB" in cell, cell
    del run["predicted_memory_bytes"]
    assert "predicted" not in table_row(run)["Peak memory"]


def test_heap_guard_trims_then_maps_fresh(monkeypatch):
    """Between steps, a resident set that leaves less room than a step needs makes the
    CPU host return the heap's free pages, then switch to the lean setting."""
    import peftlab.host.seam as seam
    from peftlab.memory.cap import step_room

    calls, rss = [], [3 * GiB]
    monkeypatch.setattr(seam, "resident_bytes", lambda: rss[0])
    monkeypatch.setattr(seam, "trim_heap", lambda: calls.append("trim"))
    monkeypatch.setattr(
        seam, "set_allocator", lambda mode, memory_first=False: calls.append(mode) or mode
    )
    cfg = build_config(max_memory="4GiB")
    planned = {
        "parts": {
            "runtime": GiB,
            "frozen weights": GiB,
            "activations: x": GiB // 2,
            "output head and loss": GiB // 4,
        }
    }
    assert step_room(build_config(), planned) is None  # no cap, no room to keep
    cap, room = step_room(cfg, planned)
    assert (cap, room) == (4 * GiB, GiB // 2 + GiB // 4)
    host = seam.for_run(
        torch.device("cpu"), "default", cap=cap, room=room, log=lambda msg: calls.append("log")
    )
    host.start()
    assert calls == ["trim", "default"]
    calls.clear()
    host.after_step()  # 3 GiB + a 0.75 GiB step fits under 4 GiB: nothing done
    assert calls == []
    rss[0] = int(3.5 * GiB)
    host.after_step()
    assert calls == ["trim", "lean", "log"] and host.allocator == "lean"
    host.after_step()  # already lean: only the trim
    assert calls == ["trim", "lean", "log", "trim"]


def test_frozen_projections_in_the_compute_dtype_count_while_training(tiny_model_dir):
    """``compute_dtype_weights``: the training phase counts the 14 narrowed projections of
    the tiny Llama at 2 bytes, the evaluation after training (weights restored) at 4;
    fp32 runs: no change."""
    from transformers import AutoModelForCausalLM

    from peftlab.methods.frozen import castable_linears
    from peftlab.model.inject import inject

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    inject(model, get_method("lora"))
    narrow = sum(2 * m.weight.numel() for m in castable_linears(model, torch.bfloat16).values())
    assert narrow > 0
    base = dict(model=tiny_model_dir, max_length=128, batch_size=8, device="cpu")
    phases = {
        (precision, flag): estimate_run(
            build_config(**base, mixed_precision=precision, compute_dtype_weights=flag),
            with_time=False,
        ).phases
        for precision in ("bf16", "no")
        for flag in (True, False)
    }
    on, off = phases["bf16", True], phases["bf16", False]
    assert off["train"] - on["train"] == narrow
    assert on["eval"] == off["eval"]
    assert phases["no", True] == phases["no", False]
