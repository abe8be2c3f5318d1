"""``--report-to trackio`` and ``wandb``: read back by the libraries' own readers, offline
(Trackio's local SQLite store through its storage API; W&B's offline run file parsed
into W&B's own protobuf records): every step once and equal to ``metrics.jsonl``, the
config as parameters, the final figures, and the adapter as an artifact; an interrupted
and resumed run stays one tracked run."""

from __future__ import annotations

import struct

import pytest

from peftlab import train
from test_tracking import TINY, jsonl, train_steps
from test_train import toy_config, train_interrupted_after


def test_trackio_resume_keeps_one_run_with_each_step_once(tmp_path, tiny_model_dir, monkeypatch):
    """Trackio's store: the session's TRACKIO_DIR (conftest.py)."""
    pytest.importorskip("trackio")
    from trackio.sqlite_storage import SQLiteStorage

    project = f"peftlab-test-{tmp_path.name}"
    kw = dict(TINY, report_to="trackio", experiment=project, run_name="r1")
    train_interrupted_after(4, toy_config(tmp_path, tiny_model_dir, **kw), monkeypatch)
    assert max(r["step"] for r in SQLiteStorage.get_logs(project, "r1")) == 4
    train(toy_config(tmp_path, tiny_model_dir, resume=True, **kw))
    assert SQLiteStorage.get_runs(project) == ["r1"]
    logs = SQLiteStorage.get_logs(project, "r1")
    run_dir = tmp_path / "run"
    steps = train_steps(run_dir)
    assert sorted(steps) == list(range(1, TINY["max_steps"] + 1))
    for key, tag in (("loss", "train/loss"), ("grad_norm", "train/grad_norm")):
        got = [(r["step"], r[tag]) for r in logs if tag in r]
        assert [s for s, _ in got] == sorted(steps), f"{tag}: each step once"
        assert dict(got) == pytest.approx({s: r[key] for s, r in steps.items()}, rel=1e-6)
    evals = {r["step"]: r["perplexity"] for r in jsonl(run_dir) if "eval_loss" in r}
    got = {r["step"]: r["eval/perplexity"] for r in logs if "eval/perplexity" in r}
    assert got == pytest.approx(evals, rel=1e-6)
    assert any("final/peak_memory_bytes" in r for r in logs)
    config = SQLiteStorage.get_run_config(project, "r1")
    assert config["method"] == "lora" and config["train.lr"] == "0.005"


def wandb_records(run_file):
    """W&B's offline run file: a header, then a LevelDB-style log (32 KiB blocks of
    chunks: crc32, length, type) whose records are W&B's own ``Record`` protobufs."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = run_file.read_bytes()
    assert raw[:4] == b":W&B"
    pos, block, data, out = 7, 32768, b"", []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a chunk header
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", raw[pos + 4 : pos + 7])
        data += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            rec = pb.Record()
            rec.ParseFromString(data)
            out.append(rec)
            data = b""
        elif kind == 0:
            break
    return out


def test_wandb_offline_run_holds_the_steps_summary_and_config(
    tmp_path, tiny_model_dir, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # as conftest.py sets it
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    kw = dict(TINY, report_to="wandb", experiment="peftlab-test")
    train(toy_config(tmp_path, tiny_model_dir, **kw))
    run_dir = tmp_path / "run"
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")  # under the run directory
    records = wandb_records(run_file)
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): i.value_json for i in r.history.item}
            history.setdefault(int(items["_step"]), {}).update(items)
    steps = train_steps(run_dir)
    assert {s for s, h in history.items() if "train/loss" in h} == set(steps)
    for s, rec in steps.items():
        assert float(history[s]["train/loss"]) == pytest.approx(rec["loss"], rel=1e-6)
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(
                {i.key or "/".join(i.nested_key): i.value_json for i in r.summary.update}
            )
    results = __import__("json").loads((run_dir / "results.json").read_text())
    assert float(summary["final/peak_memory_bytes"]) == results["peak_memory_bytes"]
    assert float(summary["train/loss"]) == pytest.approx(steps[max(steps)]["loss"], rel=1e-6)
    config = next(r.run.config for r in records if r.WhichOneof("record_type") == "run")
    keys = {i.key for i in config.update}
    assert {"method", "train.lr"} <= keys
    kinds = {r.WhichOneof("record_type") for r in records}
    assert "artifact" in kinds  # the adapter, card and results
