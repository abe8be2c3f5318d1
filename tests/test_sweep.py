"""compare --sweep (the parameter-efficiency curve) and the equal-compute view."""

from __future__ import annotations

import pytest

from peftlab.compare.grid import parse_sweep, plan_runs
from peftlab.compare.harness import compare
from peftlab.compare.report import write_report
from test_compare import settings


def test_parse_sweep():
    assert parse_sweep("r=2,4,8") == ("r", [2, 4, 8])
    assert parse_sweep("lr=1e-4,3e-4") == ("lr", [1e-4, 3e-4])
    assert parse_sweep({"init-r": [4, 8]}) == ("init_r", [4, 8])
    assert parse_sweep(None) is None
    for bad in ("r", "=2,4", "r=", "r=2,2"):
        with pytest.raises(ValueError, match="sweep"):
            parse_sweep(bad)


def test_plan_runs_sweeps_methods_with_the_option_and_keeps_the_others():
    runs = plan_runs(["lora", "ia3"], None, ("r", [2, 4]))
    assert runs == [
        ("lora-r2", "lora", None, {"r": 2}),
        ("lora-r4", "lora", None, {"r": 4}),
        ("ia3", "ia3", None, {}),
    ]
    seeded = plan_runs(["lora"], [1, 2], ("r", [2]))
    assert [n for n, *_ in seeded] == ["lora-r2-s1", "lora-r2-s2"]
    # a training option is sweepable for every method
    assert [n for n, *_ in plan_runs(["ia3"], None, ("lr", [0.1]))] == ["ia3-lr0.1"]


def test_sweep_on_an_option_no_method_has_is_an_error(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="none of ia3 has an option 'r'"):
        compare(settings(tmp_path, tiny_model_dir), ["ia3"], tmp_path / "out", sweep="r=2")


def test_sweep_runs_each_value_resumes_and_charts(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    cfg = {**settings(tmp_path, tiny_model_dir, eval_every=1), "lora": {"alpha": 8}}
    rows = compare(cfg, ["lora"], out, sweep="r=2,4")
    assert [r["name"] for r in rows] == ["base", "lora-r2", "lora-r4"]
    assert [r["config"]["adapter"]["r"] for r in rows[1:]] == [2, 4]
    assert [r["sweep"] for r in rows[1:]] == [{"r": 2}, {"r": 4}]
    assert rows[1]["params"]["trainable"] < rows[2]["params"]["trainable"]
    for r in rows[1:]:
        # equal compute: eval points carry the training seconds and tokens so far
        steps, secs, toks = zip(*[(p[0], p[2], p[3]) for p in r["eval_curve"]])
        assert steps == (0, 1, 2) and secs[0] == 0 and toks[0] == 0
        assert list(secs) == sorted(secs) and secs[-1] > 0
        assert toks[-1] == r["train_tokens"]
    summary = write_report(out)
    files = {i["file"] for i in summary["images"]}
    assert {"report_efficiency.png", "report_compute.png"} <= files
    # a rerun with one more value trains only that one
    stamp = (out / "runs" / "lora-r2" / "results.json").stat().st_mtime_ns
    rows = compare(cfg, ["lora"], out, sweep="r=2,4,8")
    assert [r["name"] for r in rows] == ["base", "lora-r2", "lora-r4", "lora-r8"]
    assert (out / "runs" / "lora-r2" / "results.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("preset", ["compare-demo.yaml", "compare-study.yaml"])
def test_compare_presets_parse(preset):
    from pathlib import Path

    from peftlab.compare.forgetting import general_source
    from peftlab.compare.grid import parse_seeds, split_compare_config
    from peftlab.config import build_config, load_yaml

    data = load_yaml(Path(__file__).resolve().parents[1] / "configs" / preset)
    methods, per_method, common = split_compare_config(data)
    assert methods
    for m in methods:
        assert build_config(common, method=m, **per_method.get(m, {})).method == m
    assert general_source(data.get("general_eval")) in (None, "bundled-general")
    parse_seeds(data.get("seeds"), 42)
    parse_sweep(data.get("sweep"))
