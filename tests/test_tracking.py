"""``--report-to``: runs tracked in TensorBoard and MLflow, read back by the libraries'
own readers (offline: event files, a local SQLite store), equal to ``metrics.jsonl``;
an interrupted and resumed run stays one tracked run with each step once; a failing
tracker costs nothing but a warning."""

from __future__ import annotations

import json

import pytest

from peftlab import train
from peftlab.tracking import Trackers, check_report_to, parse_report_to
from peftlab.tracking.base import Backend
from test_train import toy_config, train_interrupted_after

TINY = dict(max_steps=5, save_every=3, eval_every=2, exact_match_limit=1, max_new_tokens=2)


def jsonl(run_dir) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train_steps(run_dir) -> dict[int, dict]:
    return {r["step"]: r for r in jsonl(run_dir) if "loss" in r}


def test_report_to_names_and_missing_package(monkeypatch):
    assert parse_report_to("none") == [] and parse_report_to(None) == []
    assert parse_report_to("TensorBoard, mlflow") == ["tensorboard", "mlflow"]
    with pytest.raises(ValueError, match="unknown tracker 'comet'"):
        parse_report_to("mlflow,comet")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a)
    )
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'peftlab\[mlflow\]'"):
        check_report_to("tensorboard,mlflow")


def test_a_failing_tracker_is_a_warning(capsys):
    class Broken(Backend):
        name = "broken"

        def log_metrics(self, step, metrics):
            raise OSError("disk full")

    class Kept(Backend):
        name = "kept"
        seen: list = []

        def log_metrics(self, step, metrics):
            self.seen.append((step, metrics))

    t = Trackers([Broken(), Kept()])
    t.record({"step": 1, "loss": 2.0, "lr": 0.1, "note": "text"})
    t.record({"step": 2, "eval_loss": 1.5, "perplexity": 4.5})
    assert [b.name for b in t.backends] == ["kept"]
    assert Kept.seen == [
        (1, {"train/loss": 2.0, "train/learning_rate": 0.1}),
        (2, {"eval/loss": 1.5, "eval/perplexity": 4.5}),
    ]
    assert capsys.readouterr().err.count("tracker broken failed") == 1


def tb_scalars(log_dir) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    for tag in acc.Tags()["scalars"]:
        steps = [e.step for e in acc.Scalars(tag)]
        assert len(steps) == len(set(steps)), f"{tag}: a step logged twice: {steps}"
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def mlflow_run(db):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=10
    )
    return client, runs


def check_against_jsonl(run_dir, tb, client, run):
    """Every step's loss, learning rate and gradient norm in metrics.jsonl, once each,
    in TensorBoard and MLflow; and every evaluation's loss and perplexity."""
    steps = train_steps(run_dir)
    assert sorted(steps) == list(range(1, TINY["max_steps"] + 1))
    assert all(r["grad_norm"] > 0 for r in steps.values())
    evals = {r["step"]: r for r in jsonl(run_dir) if "eval_loss" in r}
    assert sorted(evals) == [0, 2, 4, 5]
    for key, tag in (
        ("loss", "train/loss"),
        ("lr", "train/learning_rate"),
        ("grad_norm", "train/grad_norm"),
    ):
        want = {s: r[key] for s, r in steps.items()}
        assert tb[tag] == pytest.approx(want, rel=1e-6), tag
        hist = client.get_metric_history(run.info.run_id, tag)
        assert sorted(m.step for m in hist) == sorted(want), f"{tag}: each step once"
        assert {m.step: m.value for m in hist} == pytest.approx(want, rel=1e-6), tag
    for key, tag in (("eval_loss", "eval/loss"), ("perplexity", "eval/perplexity")):
        want = {s: r[key] for s, r in evals.items()}
        assert tb[tag] == pytest.approx(want, rel=1e-6), tag
        hist = client.get_metric_history(run.info.run_id, tag)
        assert {m.step: m.value for m in hist} == pytest.approx(want, rel=1e-6), tag
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "eval/loss")) == [
        0,
        2,
        4,
        5,
    ]


def test_tensorboard_and_mlflow_resume_keeps_one_run(tmp_path, tiny_model_dir, monkeypatch):
    """Interrupted after step 4 (its checkpoint is step 3's, so step 4 is taken again),
    then resumed: one MLflow run, one TensorBoard log, each step once and equal to
    metrics.jsonl; the config as parameters; the adapter, card and results as artifacts."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    kw = dict(TINY, report_to="tensorboard,mlflow", experiment="peftlab-test")
    train_interrupted_after(4, toy_config(tmp_path, tiny_model_dir, **kw), monkeypatch)
    run_dir = tmp_path / "run"
    client, runs = mlflow_run(db)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert max(m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")) == 4
    train(toy_config(tmp_path, tiny_model_dir, resume=True, **kw))
    client, runs = mlflow_run(db)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert client.get_experiment(run.info.experiment_id).name == "peftlab-test"
    assert run.info.run_name == "run"
    assert run.data.params["train.lr"] == "0.005" and run.data.params["method"] == "lora"
    check_against_jsonl(run_dir, tb_scalars(run_dir / "tensorboard"), client, run)
    results = json.loads((run_dir / "results.json").read_text())
    assert run.data.metrics["final/peak_memory_bytes"] == results["peak_memory_bytes"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"adapter_model.safetensors", "README.md", "results.json"} <= artifacts
