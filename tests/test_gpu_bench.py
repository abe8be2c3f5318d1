"""The prepared GPU benchmark (bench/gpu_bench.py): its arithmetic and table here, and
every case end to end in ``--tiny`` mode on the CPU (slow: each side of each case is its
own process)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import gpu_bench  # noqa: E402
import gpu_cases  # noqa: E402
import gpu_report  # noqa: E402

CORE = [f"{n}.{side}" for n in gpu_cases.CASES for side in ("peftlab", "peer")]
FIGURES = ("step_s", "step_s_min", "step_s_max", "loop_s", "tokens_per_s", "mfu", "peak_bytes")


def test_model_flops_is_palms_count():
    from transformers import MistralConfig

    c = MistralConfig(**gpu_cases.MISTRAL_7B)
    # Mistral-7B: 7.24e9 parameters, of which the input embedding is 32000 x 4096.
    n = 7_241_732_096 - 32000 * 4096 - 32 * 2 * 4096 - 4096  # less embedding and norms
    lengths = [1000, 24]
    attention = 12 * 32 * 4096 * (1000**2 + 24**2)
    assert gpu_cases.model_flops(c, lengths) == 6 * n * 1024 + attention


def test_cases_are_the_issues():
    c = gpu_cases.case("lora7b", tiny=False)
    assert (c.batch, c.max_length, c.method) == (4, 1024, "lora")
    assert gpu_cases.case("qlora7b", False).peer == {"bnb": True}
    assert gpu_cases.case("dora7b", False).peer == {"use_dora": True}
    e = gpu_cases.case("epoch", False)
    assert (e.epoch, e.batch, e.max_length, e.same_batches) == (True, 8, 512, False)
    assert gpu_cases.case("lora7b", tiny=True).max_length < c.max_length


def test_levers_follow_the_config_fields(monkeypatch):
    import dataclasses

    from peftlab.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for lever, field in gpu_cases.LEVERS.items():
        assert (gpu_cases.lever_value(field) is not None) == (field in names), lever
    assert gpu_cases.lever_value("no_such_option") is None


def test_core_cases_run_first_then_the_levers():
    names = gpu_bench.plan_names(None, {"compile": True}, liger_peer=True)
    assert names[: len(CORE)] == CORE
    assert names[len(CORE) :] == [
        "lora7b.peftlab+compile",
        "epoch.peftlab+compile",
        "lora7b.peer+liger",
        "epoch.peer+liger",
    ]
    assert gpu_bench.plan_names(["epoch"], {}, False) == ["epoch.peftlab", "epoch.peer"]
    tiny = gpu_bench.plan_names(None, {"compile": True}, False, tiny=True)
    assert tiny[len(CORE) :] == ["lora7b.peftlab+compile"]  # once: a CPU compiles slowly


def _figures(**extra) -> dict:
    base = dict(step_s=0.5, step_s_min=0.4, step_s_max=0.6, loop_s=10.0, tokens_per_s=8000.0)
    return {**base, "mfu": 0.1, "peak_bytes": 20 * 2**30, **extra}


def test_table_has_ratios_planner_and_reasons():
    results = {
        "meta": {"device": "NVIDIA H100 80GB HBM3", "date": "today", "data_source": "x.json"},
        "cases": {
            "lora7b.peftlab": _figures(predicted_bytes=22 * 2**30, settings={"token_budget": 0}),
            "lora7b.peer": _figures(step_s=1.0, peak_bytes=40 * 2**30),
            "lora7b.peftlab+compile": _figures(step_s=0.25),
            "qlora7b.peftlab": {"error": "RuntimeError: boom"},
            "qlora7b.peer": {"skipped": "bitsandbytes is not installed"},
        },
    }
    text = gpu_report.markdown(results)
    lora = next(ln for ln in text.splitlines() if ln.startswith("| 7B LoRA step |"))
    assert "**0.50**" in lora and "22.00 GiB (+10.0%)" in lora and "| 0.50 |" in lora
    assert "**0.25**" in text  # the lever's row against the same peer
    qlora = next(ln for ln in text.splitlines() if ln.startswith("| 7B QLoRA"))
    assert "failed: RuntimeError: boom" in qlora and "skipped: bitsandbytes" in qlora
    assert "token_budget 0" in text


ALL_CASES = os.environ.get("PEFTLAB_GPU_BENCH_ALL") == "1"
"""Every case in the end-to-end test (about 4 CPU-minutes); by default the QLoRA case alone
(peftlab beside peft + bitsandbytes' CPU NF4, the planner, the same batches) keeps the
suite short, and the arithmetic and table of every case are checked above."""


@pytest.mark.slow
def test_tiny_mode_runs_end_to_end(tmp_path):
    """Each side of each case in its own process, with tiny shapes on the CPU: every figure
    finite, the planner's prediction beside peftlab's peak, the table written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_bench.py"), "--tiny", "--out", str(out)]
    names = list(gpu_cases.CASES) if ALL_CASES else ["qlora7b"]
    p = subprocess.run(
        cmd + ["--work", str(tmp_path / "work"), "--only", ",".join(names)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    check_output(out, names)


def check_output(out: Path, names: list[str]) -> None:
    """What a ``--tiny`` run of the cases ``names`` must leave in ``out``."""
    results = json.loads((out / "results.json").read_text())
    cases = results["cases"]
    expected = [f"{n}.{side}" for n in names for side in ("peftlab", "peer")]
    assert set(expected) <= set(cases)
    for name in expected:
        r = cases[name]
        if name == "qlora7b.peer" and "skipped" in r:  # no bitsandbytes here
            assert "bitsandbytes" in r["skipped"]
            continue
        assert "error" not in r and "skipped" not in r, (name, r)
        for key in FIGURES:
            v = r[key]
            assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (name, key, v)
        if name.endswith("peftlab"):
            assert math.isfinite(r["predicted_bytes"]) and r["predicted_bytes"] > 0, name
        if name.startswith(("lora7b", "qlora7b", "dora7b")) and name.endswith("peftlab"):
            assert r["batches_match"] is True, name  # the peer trained these very batches
    first = names[0]
    peer, ours = cases[f"{first}.peer"], cases[f"{first}.peftlab"]
    assert peer["tokens"] == ours["tokens"]  # same batches, same token count
    table = (out / "gpu_bench.md").read_text()
    assert "planner (error)" in table
    for n in names:
        assert f"| {gpu_report.TITLES[n]} |" in table, (n, table)
