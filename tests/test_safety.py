"""Never lose a user's files: output directories, one writer per output, one clear line
per broken file (no traceback), options checked before any model loads, resume totals,
a full disk mid-checkpoint, and kill -9 of a real training process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

import peftlab
from peftlab.cli import main
from peftlab.core.rundir import MARKER, LockedError, output_lock
from peftlab.training.checkpoint import list_checkpoints

from conftest import write_toy_dataset


def args(tmp_path, model_dir, out, *extra):
    data = write_toy_dataset(tmp_path / "toy.json")
    return [
        "train",
        "--model",
        model_dir,
        "--dataset",
        data,
        "--output",
        str(out),
        "--max-steps",
        "4",
        "--batch-size",
        "4",
        "--lr",
        "5e-3",
        "--r",
        "4",
        "--mixed-precision",
        "no",
        "--save-every",
        "2",
        "--exact-match-limit",
        "0",
        "--no-progress",
        "--max-length",
        "64",
        "--seed",
        "3",
        *extra,
    ]


def run_cli(argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


# ----------------------------------------------------------------- output directories


def test_train_refuses_an_earlier_run_and_someone_elses_directory(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    assert run_cli(args(tmp_path, tiny_model_dir, out), capsys)[0] == 0
    first_id = json.loads((out / MARKER).read_text())["run_id"]
    rc, err = run_cli(args(tmp_path, tiny_model_dir, out), capsys)
    assert rc == 2 and "holds an earlier peftlab run" in err and "--resume" in err
    assert "Traceback" not in err
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    rc, err = run_cli(args(tmp_path, tiny_model_dir, theirs), capsys)
    assert rc == 2 and "not a peftlab run" in err
    assert (theirs / "thesis.tex").read_text() == "years of work"
    # --overwrite: a new run id; the old run's files are gone only after a checkpoint
    assert run_cli(args(tmp_path, tiny_model_dir, out, "--overwrite"), capsys)[0] == 0
    assert json.loads((out / MARKER).read_text())["run_id"] != first_id
    assert not list(tmp_path.glob(".run.replaced-*"))


def test_pruning_and_resume_touch_only_this_runs_checkpoints(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    assert run_cli(args(tmp_path, tiny_model_dir, out, "--max-steps", "2"), capsys)[0] == 0
    run_id = json.loads((out / MARKER).read_text())["run_id"]
    # A foreign checkpoint (another run's id) with a higher step number.
    foreign = out / "checkpoints" / "step-000099"
    foreign.mkdir()
    (foreign / "trainer_state.json").write_text(json.dumps({"step": 99, "run_id": "other"}))
    rc, err = run_cli(
        args(tmp_path, tiny_model_dir, out, "--resume", "--keep-checkpoints", "1"), capsys
    )
    assert rc == 0 and "step-000002 (step 2)" in err  # resumed from its own, not step 99
    assert [p.name for p in list_checkpoints(out, run_id)] == ["step-000004"]
    assert (foreign / "trainer_state.json").is_file()  # never pruned


def test_merge_never_replaces_the_adapter_and_needs_overwrite(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    assert run_cli(args(tmp_path, tiny_model_dir, out), capsys)[0] == 0
    for target in (out, tmp_path):  # the run itself, a directory containing it
        rc, err = run_cli(
            ["merge", "--adapter", str(out), "--output", str(target), "--overwrite"], capsys
        )
        assert rc == 2 and "is (or contains) the run being read" in err
    assert (out / "adapter_model.safetensors").is_file()
    existing = tmp_path / "merged"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    rc, err = run_cli(["merge", "--adapter", str(out), "--output", str(existing)], capsys)
    assert rc == 2 and "exists; pass --overwrite" in err and (existing / "keep.txt").exists()
    assert (
        run_cli(["merge", "--adapter", str(out), "--output", str(existing), "--overwrite"], capsys)[
            0
        ]
        == 0
    )
    assert (existing / "config.json").is_file() and not (existing / "keep.txt").exists()


# ------------------------------------------------------------------------------ lock


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    with output_lock(out, "train"):
        with pytest.raises(LockedError, match=rf"pid {os.getpid()} on .*peftlab train"):
            with output_lock(out, "merge"):
                pass
    with output_lock(out, "train"):  # released: free again
        pass


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    code = (
        "import sys, time; sys.path.insert(0, 'src');"
        "from peftlab.core.rundir import output_lock\n"
        f"with output_lock({str(out)!r}, 'train'):\n    print('held', flush=True); "
        "time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout.readline().strip() == b"held"
    with pytest.raises(LockedError, match=f"pid {proc.pid}"):
        with output_lock(out, "train"):
            pass
    proc.kill()
    proc.wait()
    with output_lock(out, "train"):  # the kernel dropped the dead holder's lock
        pass


# ----------------------------------------------------------------------- broken files


def broken_cases(run: Path):
    w, c = run / "adapter_model.safetensors", run / "adapter_config.json"
    data = w.read_bytes()
    cfg = json.loads(c.read_text())
    return {
        "truncated weights": (lambda: w.write_bytes(data[: len(data) // 2]), w.name),
        "empty weights": (lambda: w.write_bytes(b""), w.name),
        "random weights": (lambda: w.write_bytes(os.urandom(300)), w.name),
        "config is a list": (lambda: c.write_text("[1, 2]"), c.name),
        "config lacks r": (
            lambda: c.write_text(json.dumps({k: v for k, v in cfg.items() if k != "r"})),
            c.name,
        ),
        "config not JSON": (lambda: c.write_text("{not json"), c.name),
        "weights are a directory": (lambda: (w.unlink(), w.mkdir()), w.name),
    }


@pytest.mark.parametrize(
    "case",
    [
        "truncated weights",
        "empty weights",
        "random weights",
        "config is a list",
        "config lacks r",
        "config not JSON",
        "weights are a directory",
    ],
)
def test_broken_adapter_file_is_one_line_naming_it(tmp_path, tiny_model_dir, capsys, case):
    out = tmp_path / "run"
    assert run_cli(args(tmp_path, tiny_model_dir, out, "--max-steps", "1"), capsys)[0] == 0
    (out / "config.yaml").unlink()  # load through adapter_config.json alone
    breaker, name = broken_cases(out)[case]
    breaker()
    for cmd in (
        ["eval", "--adapter", str(out), "--max-eval-records", "2", "--exact-match-limit", "0"],
        ["generate", "--adapter", str(out), "--prompt", "hi", "--max-new-tokens", "2"],
    ):
        rc, err = run_cli(cmd, capsys)
        lines = [ln for ln in err.splitlines() if ln.startswith("peftlab")]
        assert rc == 2 and "Traceback" not in err, err
        assert name in lines[-1] and "error:" in lines[-1]


def test_broken_checkpoint_state_is_named_on_resume(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    assert run_cli(args(tmp_path, tiny_model_dir, out, "--max-steps", "2"), capsys)[0] == 0
    last = list_checkpoints(out)[-1]
    (last / "optimizer.safetensors").write_bytes(b"\x00" * 10)
    rc, err = run_cli(args(tmp_path, tiny_model_dir, out, "--resume"), capsys)
    assert rc == 2 and "optimizer.safetensors: not a readable safetensors file" in err


@pytest.mark.parametrize(
    "content,why",
    [
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (b"", "no records"),
        (b'{"instruction": "a", "output": "b"}\n', "one record"),
    ],
)
def test_bad_dataset_files_say_what_is_wrong(tmp_path, tiny_model_dir, capsys, content, why):
    data = tmp_path / "d.jsonl"
    data.write_bytes(content)
    rc, err = run_cli(
        [
            "train",
            "--model",
            tiny_model_dir,
            "--dataset",
            str(data),
            "--output",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert rc == 2 and why in err and str(data) in err and "Traceback" not in err
    rc, err = run_cli(
        [
            "train",
            "--model",
            tiny_model_dir,
            "--dataset",
            str(tmp_path),
            "--output",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert rc == 2 and "is a directory" in err


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "flag,value,text",
    [
        ("--max-steps", "-5", "'max_steps' must be at least 1"),
        ("--epochs", "0", "'epochs' must be greater than 0"),
        ("--save-every", "-1", "'save_every' must be 0"),
        ("--eval-every", "-3", "'eval_every' must be 0"),
        ("--eval-fraction", "1.5", "'eval_fraction' must be between 0 and 1"),
        ("--batch-size", "0", "'batch_size' must be at least 1"),
    ],
)
def test_out_of_range_options_fail_before_any_model_loads(tmp_path, capsys, flag, value, text):
    # A model that does not exist: the option must fail first.
    rc, err = run_cli(
        [
            "train",
            "--model",
            str(tmp_path / "no-model"),
            flag,
            value,
            "--output",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert rc == 2 and text in err


def test_rank_larger_than_a_layer_is_refused_naming_it(tmp_path, tiny_model_dir, capsys):
    rc, err = run_cli(args(tmp_path, tiny_model_dir, tmp_path / "o", "--r", "100000"), capsys)
    assert rc == 2 and "r=100000 is larger than layer" in err and "use at most 32" in err


# ------------------------------------------------------------------ resume and faults


def test_results_after_resume_cover_the_whole_run(tmp_path, tiny_model_dir, monkeypatch):
    from test_train import train_interrupted_after

    common = dict(
        model=tiny_model_dir,
        dataset=write_toy_dataset(tmp_path / "toy.json"),
        max_steps=6,
        batch_size=4,
        lr=5e-3,
        r=4,
        mixed_precision="no",
        save_every=2,
        exact_match_limit=0,
        progress=False,
        max_length=64,
        eval_every=2,
    )
    whole = peftlab.train(output=str(tmp_path / "whole"), **common)
    cfg = peftlab.build_config(output=str(tmp_path / "run"), **common)
    train_interrupted_after(4, cfg, monkeypatch)
    (tmp_path / "run" / ".stray.tmp").write_bytes(b"")  # as a kill mid-write leaves
    cfg = peftlab.build_config(output=str(tmp_path / "run"), resume=True, **common)
    res = peftlab.train(cfg)
    assert res["resumes"] == 1 and whole["resumes"] == 0
    assert res["train_tokens"] == whole["train_tokens"]  # both parts, not the last alone
    assert res["train_seconds"] > 0
    lines = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4, 5, 6]
    evals = [r["step"] for r in lines if "eval_loss" in r]
    assert len(evals) == len(set(evals))
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_full_disk_while_checkpointing_keeps_the_last_good_one(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    import peftlab.training.checkpoint as ck

    out = tmp_path / "run"
    real = ck.save_file
    calls = {"n": 0}

    def full_disk(tensors, path, *a, **k):
        calls["n"] += 1
        if calls["n"] > 4:  # the second checkpoint's files
            raise OSError(28, "No space left on device", path)
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ck, "save_file", full_disk)
    rc, err = run_cli(args(tmp_path, tiny_model_dir, out), capsys)
    assert rc == 1 and "No space left on device" in err and "Traceback" not in err
    assert [p.name for p in list_checkpoints(out)] == ["step-000002"]
    assert not list((out / "checkpoints").glob(".tmp-*"))
    monkeypatch.setattr(ck, "save_file", real)
    assert run_cli(args(tmp_path, tiny_model_dir, out, "--resume"), capsys)[0] == 0


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_gives_the_same_adapter(tmp_path, tiny_model_dir):
    """A real training process killed with SIGKILL (after its first checkpoint, during
    later steps and writes), resumed until done: the adapter equals an uninterrupted
    run's."""
    root = Path(__file__).resolve().parents[1]
    base = [
        sys.executable,
        "-m",
        "peftlab",
        *args(tmp_path, tiny_model_dir, "OUT", "--max-steps", "60", "--dropout", "0"),
    ]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}

    def cmd(out, *extra):
        return [str(out) if a == "OUT" else a for a in base] + list(extra)

    ref = tmp_path / "ref"
    subprocess.run(cmd(ref), check=True, env=env, capture_output=True)
    run = tmp_path / "run"
    proc = subprocess.Popen(cmd(run), env=env, stderr=subprocess.DEVNULL)
    kills = 0

    def newest() -> int:
        found = list_checkpoints(run)
        return int(found[-1].name.split("-")[1]) if found else 0

    for delay in (0.0, 0.05, 0.2):
        seen = newest()
        deadline = time.time() + 120  # until this part writes a checkpoint of its own
        while newest() <= seen and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if (run / "results.json").exists():
            break
        proc = subprocess.Popen(cmd(run, "--resume"), env=env, stderr=subprocess.DEVNULL)
    proc.wait()
    if not (run / "results.json").exists():
        subprocess.run(cmd(run, "--resume"), check=True, env=env, capture_output=True)
    assert kills >= 2  # the run really was killed mid-way, more than once
    a = load_file(ref / "adapter_model.safetensors")
    b = load_file(run / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-6, k


@pytest.mark.parametrize("point", ["checkpoint:step-000004", "write:run/adapter_model.safetensors"])
def test_kill_9_inside_a_checkpoint_or_the_final_adapter_write(tmp_path, tiny_model_dir, point):
    """SIGKILL at a chosen point inside a write (PEFTLAB_FAULT): nothing half-written
    under a final name, and resume gives the uninterrupted run's adapter."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    base = [
        sys.executable,
        "-m",
        "peftlab",
        *args(tmp_path, tiny_model_dir, "OUT", "--max-steps", "6", "--dropout", "0"),
    ]

    def cmd(out, *extra):
        return [str(out) if a == "OUT" else a for a in base] + list(extra)

    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(cmd(ref), check=True, env=env, capture_output=True)
    died = subprocess.run(cmd(run), env={**env, "PEFTLAB_FAULT": point}, capture_output=True)
    assert died.returncode == -signal.SIGKILL
    assert [p.name for p in list_checkpoints(run)] == (
        ["step-000002"] if point.startswith("checkpoint") else ["step-000004", "step-000006"]
    )
    assert not (run / "adapter_model.safetensors").exists()
    subprocess.run(cmd(run, "--resume"), check=True, env=env, capture_output=True)
    assert not list(run.rglob("*.tmp")) and not list(run.glob("checkpoints/.tmp-*"))
    a = load_file(ref / "adapter_model.safetensors")
    b = load_file(run / "adapter_model.safetensors")
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-6, k
