"""peftlab compare: rows for every method and the base model, skip, resume, failures."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from peftlab.compare.harness import compare, read_rows
from peftlab.compare.report import write_report

from conftest import write_toy_dataset


def settings(tmp_path, model_dir, **extra):
    return {
        "model": model_dir,
        "dataset": write_toy_dataset(tmp_path / "toy.json"),
        "max_steps": 2,
        "batch_size": 4,
        "max_length": 64,
        "save_every": 1,
        "exact_match_limit": 2,
        "max_new_tokens": 4,
        "progress": False,
        "mixed_precision": "no",
        "lr": 5e-3,
        **extra,
    }


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_model_dir):
    """Two methods and the base, tracked in MLflow (a local SQLite store, its experiment
    made here so that artifacts land under the test's directory), Trackio (the session's
    store, conftest.py) and W&B (offline, files in each run's directory)."""
    tmp = tmp_path_factory.mktemp("compare")
    out = tmp / "out"
    cfg = {**settings(tmp, tiny_model_dir), "lora": {"r": 4, "alpha": 8}}
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.tracking.MlflowClient(uri).create_experiment("out", str(tmp / "artifacts"))
    cfg["report_to"] = "mlflow,trackio,wandb" if _has("trackio", "wandb") else "mlflow"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        rows = compare(cfg, ["lora", "ia3"], out)
        yield out, cfg, rows


def test_compare_tracks_one_run_per_method_in_one_experiment(compared):
    from mlflow.tracking import MlflowClient

    out, _, rows = compared
    client = MlflowClient()
    exp = client.get_experiment_by_name("out")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert sorted(runs) == ["ia3", "lora", "out"]
    parent = runs.pop("out")  # the comparison: the report, and the methods' runs under it
    assert parent.data.tags["peftlab.kind"] == "comparison"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "report.html", "results.jsonl"} <= artifacts
    for name, run in runs.items():
        row = next(r for r in rows if r["name"] == name)
        assert run.info.status == "FINISHED" and run.data.params["method"] == name
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        history = client.get_metric_history(run.info.run_id, "eval/perplexity")
        final = max(history, key=lambda m: m.step).value  # the evaluation after training
        assert final == pytest.approx(row["after"]["perplexity"], rel=1e-9)


def _has(*packages) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in packages)


def test_compare_tracks_each_method_in_trackio_and_wandb(compared):
    """Trackio: one run per method in the comparison's project, and the comparison's own
    run holding the report; W&B (offline): a run per method in its run directory."""
    if not _has("trackio", "wandb"):
        pytest.skip("trackio and wandb not installed (pip install 'peftlab[trackio,wandb]')")
    from trackio.sqlite_storage import SQLiteStorage

    out, _, rows = compared
    assert sorted(SQLiteStorage.get_runs("out")) == ["ia3", "lora", "out-comparison"]
    for row in rows[1:]:
        logs = SQLiteStorage.get_logs("out", row["name"])
        final = [r["eval/perplexity"] for r in logs if "eval/perplexity" in r][-1]
        assert final == pytest.approx(row["after"]["perplexity"], rel=1e-9)
        assert len(list((out / "runs" / row["name"]).glob("wandb/offline-run-*/*.wandb"))) == 1


def test_rows_for_base_and_each_method_with_every_column(compared):
    out, _, rows = compared
    assert [r["name"] for r in rows] == ["base", "lora", "ia3"]
    for r in rows:
        assert r["status"] == "ok", r.get("error")
        for key in (
            "params",
            "before",
            "after",
            "peak_memory_bytes",
            "wall_seconds",
            "config",
            "env",
            "finished_at",
        ):
            assert r.get(key) is not None, (r["name"], key)
        assert r["after"]["perplexity"] > 1 and r["after"]["eval_tokens"] > 0
    for r in rows[1:]:
        assert r["params"]["trainable"] > 0 and r["adapter_bytes"] > 0
        assert r["tokens_per_s"] > 0 and len(r["loss_curve"]) == 2
        assert r["merge_check"]["max_logit_diff"] is not None
        assert r["config"]["method"] == r["name"]
    assert rows[1]["config"]["adapter"]["r"] == 4  # per-method options reached the run
    # every run saw the same data and budget
    assert len({json.dumps(r["config"]["data"], sort_keys=True) for r in rows}) == 1
    assert rows[0]["params"]["trainable"] == 0
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    text = write_report(out)["text"]
    assert all(name in text for name in ("base", "lora", "ia3"))


def test_rerun_skips_finished_runs(compared):
    out, cfg, _ = compared
    lines_before = (out / "results.jsonl").read_text().splitlines()
    stamp = (out / "runs" / "lora" / "results.json").stat().st_mtime_ns
    compare(cfg, ["lora", "ia3"], out)
    assert (out / "results.jsonl").read_text().splitlines() == lines_before
    assert (out / "runs" / "lora" / "results.json").stat().st_mtime_ns == stamp


def test_interrupted_run_resumes_from_its_checkpoint(compared, tmp_path):
    out, cfg, _ = compared
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    # Simulate an interruption after the step-1 checkpoint: no row, no final results.
    lines = [
        ln
        for ln in (copy / "results.jsonl").read_text().splitlines()
        if json.loads(ln)["name"] != "lora"
    ]
    (copy / "results.jsonl").write_text("".join(ln + "\n" for ln in lines))
    run = copy / "runs" / "lora"
    (run / "results.json").unlink()
    shutil.rmtree(run / "checkpoints" / "step-000002")
    compare(cfg, ["lora", "ia3"], copy)
    assert "resumed from" in (run.parent / f"{run.name}.train.log").read_text()
    row = read_rows(copy)["lora"]
    assert row["status"] == "ok" and [s for s, _ in row["loss_curve"]] == [1, 2]


def test_failing_method_is_recorded_and_others_still_run(tmp_path, tiny_model_dir):
    cfg = {**settings(tmp_path, tiny_model_dir), "lora": {"target_modules": ["q_prj"]}}
    rows = {
        r["name"]: r for r in compare(cfg, ["lora", "ia3"], tmp_path / "out", include_base=False)
    }
    assert rows["lora"]["status"] == "failed" and "q_prj" in rows["lora"]["error"]
    assert rows["ia3"]["status"] == "ok"
    assert "failed" in (tmp_path / "out" / "report.md").read_text().lower()
