"""Nothing lost whatever the user types (issue 31): no writer replaces anything it
reads, whatever --overwrite says; temporaries of a killed writer are removed by the
next one; compare owns its directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from peftlab.cli import main
from peftlab.compare.harness import compare, read_rows

from conftest import write_toy_dataset


def _cli(argv, capsys) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    """One trained run (2 steps, a checkpoint) shared by the tests of this module."""
    root = tmp_path_factory.mktemp("lossless")
    data = write_toy_dataset(root / "toy.json", n=16)
    out = root / "run"
    rc = main(
        ["train", "--model", tiny_model_dir, "--dataset", data, "--output", str(out)]
        + "--max-steps 2 --batch-size 4 --r 2 --mixed-precision no --save-every 1".split()
        + "--exact-match-limit 0 --no-progress --max-length 48".split()
    )
    assert rc == 0
    return out


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_no_writer_replaces_what_it_reads(run_dir, tmp_path, capsys, monkeypatch):
    before = _snapshot(run_dir)
    link = tmp_path / "link"
    link.symlink_to(run_dir)
    cases = [
        ["export", "--adapter", run_dir, "--output", run_dir / "adapter_model.safetensors"],
        ["export", "--adapter", run_dir, "--output", link / "adapter_config.json"],
        ["export", "--adapter", link, "--output", run_dir / "checkpoints" / "x.gguf"],
        ["merge", "--adapter", run_dir, "--output", run_dir / "checkpoints"],
        ["merge", "--adapter", run_dir, "--output", link / "checkpoints" / "step-000001"],
        ["merge", "--adapter", run_dir, "--output", run_dir.parent],
        ["eval", "--adapter", run_dir, "--output", run_dir / "config.yaml"],
        ["eval", "--adapter", run_dir, "--output", run_dir / "metrics.jsonl"],
    ]
    for argv in cases:
        rc, err = _cli([*argv, "--overwrite"] if argv[0] != "eval" else argv, capsys)
        assert rc == 2, (argv, err)
        assert "which this command reads" in err or "the run being read" in err, err
        assert "never replaces an input" in err and "Traceback" not in err
    # --output . where . holds the run: refused as the run's container and as cwd
    monkeypatch.chdir(run_dir.parent)
    rc, err = _cli(["merge", "--adapter", run_dir, "--output", ".", "--overwrite"], capsys)
    assert rc == 2 and "the run being read" in err
    assert _snapshot(run_dir) == before  # not one byte of the run changed


def test_train_never_replaces_its_own_data_or_model(tmp_path, tiny_model_dir, capsys):
    data = write_toy_dataset(tmp_path / "mine" / "toy.json", n=8)
    for out in (tmp_path / "mine", tmp_path, Path(tiny_model_dir)):
        rc, err = _cli(
            ["train", "--model", tiny_model_dir, "--dataset", data, "--output", out, "--overwrite"],
            capsys,
        )
        assert rc == 2 and "which this command reads" in err, err
    assert Path(data).is_file() and (Path(tiny_model_dir) / "config.json").is_file()


def test_export_onto_a_directory_is_a_clear_error(run_dir, tmp_path, capsys):
    d = tmp_path / "somedir"
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    rc, err = _cli(["export", "--adapter", run_dir, "--output", d, "--overwrite"], capsys)
    assert rc == 2 and "is a directory; give the file to write" in err
    assert (d / "keep.txt").read_text() == "mine"


def test_a_killed_writers_temporaries_go_with_the_next_write(run_dir, tmp_path, capsys):
    """What kill -9 leaves (merge's model-sized staged directory, export's temp file) is
    removed by the next run writing to the same place; other files stay."""
    merged, gguf = tmp_path / "merged", tmp_path / "m.gguf"
    staged = tmp_path / ".merged.tmp-k1ll3d"
    staged.mkdir()
    (staged / "model.safetensors").write_bytes(b"\0" * 4096)
    (tmp_path / ".merged.old-123").mkdir()
    (tmp_path / ".m.gguf.x1y2.tmp").write_bytes(b"\0" * 4096)
    (tmp_path / "other.tmp").write_text("not ours")
    assert _cli(["merge", "--adapter", run_dir, "--output", merged], capsys)[0] == 0
    rc, err = _cli(
        ["export", "--adapter", run_dir, "--output", gguf, "--outtype", "f32", "--no-progress"],
        capsys,
    )
    assert rc == 0 and "removed 1 temporary file(s)" in err
    # README.md: the GGUF file's model card, written beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",
        "m.gguf",
        "merged",
        "other.tmp",
    ]
    assert (merged / "config.json").is_file() and gguf.stat().st_size > 0


# ------------------------------------------------------------- compare owns its directory


def test_compare_refuses_a_directory_that_is_not_a_comparison(tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "report.md").write_text("my own report")
    (theirs / "results.jsonl").write_text('{"name": "mine"}\n')
    base = ["compare", "--methods", "lora", "--no-base", "--max-steps", "1", "--output", theirs]
    rc, err = _cli(base, capsys)
    assert rc == 2 and "not a peftlab comparison" in err and "--overwrite" in err
    assert (theirs / "report.md").read_text() == "my own report"
    assert (theirs / "results.jsonl").read_text() == '{"name": "mine"}\n'
    # a training run is not a comparison either; nor may compare write into its data
    data = write_toy_dataset(tmp_path / "d" / "toy.json", n=8)
    rc, err = _cli([*base[:-1], tmp_path / "d", "--dataset", data, "--overwrite"], capsys)
    assert rc == 2 and "which this command reads" in err


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
def test_kill_9_of_compare_takes_its_child_along_and_a_rerun_resumes(tmp_path, tiny_model_dir):
    """compare killed with SIGKILL while its child trains: the child dies too (parent
    death signal) and releases the run; the rerun resumes that run from its checkpoint."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    cfg = tmp_path / "cmp.yaml"
    cfg.write_text(
        f"model: {tiny_model_dir}\ndataset: {write_toy_dataset(tmp_path / 'toy.json', n=16)}\n"
        "max_steps: 6\nbatch_size: 2\nmax_length: 64\nsave_every: 1\nkeep_checkpoints: 1\n"
        "exact_match_limit: 0\nprogress: false\nmixed_precision: 'no'\nplan_memory: false\n"
        "lora: {r: 2}\n"
    )
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "peftlab", "compare", "--config", str(cfg), "--methods", "lora"]
    cmd += ["--no-base", "--output", str(out)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    lock = out / "runs" / ".lora.peftlab-lock"
    deadline = time.time() + 120
    while not list(out.glob("runs/lora/checkpoints/step-*")) and time.time() < deadline:
        assert proc.poll() is None, "compare ended before its child wrote a checkpoint"
        time.sleep(0.05)
    child = json.loads(lock.read_text())["pid"]
    assert _pid_alive(child)
    proc.kill()
    proc.wait()
    deadline = time.time() + 30
    while _pid_alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(child)  # the child did not train on alone
    rows = compare(str(cfg), ["lora"], out, include_base=False, report=False)  # the rerun
    row = read_rows(out)["lora"]
    assert row == rows[0] and row["status"] == "ok", row.get("error")
    assert "resumed from" in (out / "runs" / "lora.train.log").read_text()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".tmp-*"))


# ------------------------------------------------------------------------------ signals


def test_sigterm_in_train_is_ctrl_c(run_dir, tmp_path, tiny_model_dir, capsys, monkeypatch):
    """SIGTERM after the first checkpoint: exit 143, the resume hint naming that
    checkpoint, the fp32 weights set aside restored and their temporary file gone."""
    import peftlab.training.loop as loop

    real = loop.save_checkpoint

    def then_sigterm(*a, **k):
        real(*a, **k)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(loop, "save_checkpoint", then_sigterm)
    out = tmp_path / "run"
    data = write_toy_dataset(tmp_path / "toy.json", n=16)
    argv = ["train", "--model", tiny_model_dir, "--dataset", data, "--output", out]
    argv += "--max-steps 3 --batch-size 4 --r 2 --mixed-precision bf16 --save-every 1".split()
    argv += "--exact-match-limit 0 --no-progress --max-length 64".split()
    rc, err = _cli(argv, capsys)
    assert rc == 143, err
    assert "frozen weights of" in err  # the stash was in use
    assert "interrupted (SIGTERM)" in err and "checkpoint of step 1 with --resume" in err
    assert not list(out.glob(".*.tmp")) and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # handlers restored


def test_sighup_in_export_leaves_nothing_half_written(run_dir, tmp_path, capsys, monkeypatch):
    import peftlab.formats.gguf as G

    real = G.write_gguf

    def then_sighup(path, *a, **k):
        Path(path).write_bytes(b"GGUF partial")
        os.kill(os.getpid(), signal.SIGHUP)
        return real(path, *a, **k)

    monkeypatch.setattr(G, "write_gguf", then_sighup)
    gguf = tmp_path / "m.gguf"
    rc, err = _cli(["export", "--adapter", run_dir, "--output", gguf, "--no-progress"], capsys)
    assert rc == 129 and "interrupted (SIGHUP)" in err
    assert list(tmp_path.iterdir()) == []  # no m.gguf, no .m.gguf.*.tmp, no lock


# ------------------------------------------------------------- numbers checked at entry


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr", "inf"], "lr' must be a finite number"),
        (["--lr", "nan"], "lr' must be a finite number"),
        (["--lr", "1e9"], "'lr' must be greater than 0 and at most 10"),
        (["--alpha", "nan"], "'alpha' must be a finite number"),
        (["--set", "train.batch_size=1e9"], "'batch_size' must be at least 1 and at most 65536"),
        (["--max-length", "1000000000"], "'max_length' must be at least 2 and at most 1048576"),
        (["--set", "train.max_steps=1e999"], "max_steps' must be a finite int"),
        (["--max-memory", "1e999GiB"], "memory size '1e999GiB'"),
    ],
)
def test_numbers_are_checked_where_they_enter(tmp_path, tiny_model_dir, capsys, extra, message):
    argv = ["train", "--model", tiny_model_dir, "--output", tmp_path / "o", *extra]
    rc, err = _cli(argv, capsys)
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_plan_fit_of_an_impossible_size_is_a_clear_error(capsys):
    rc, err = _cli(["plan", "--fit", "1e999GiB"], capsys)
    assert rc == 2 and "memory size '1e999GiB'" in err and "Overflow" not in err


def _copy_run(run_dir: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("checkpoints", "eval.json"))
    return dest


def test_nan_in_an_adapter_is_refused_and_nothing_is_written(run_dir, tmp_path, capsys):
    """lora_alpha NaN in adapter_config.json: refused when read; NaN weights: the
    evaluation's perplexity is not finite, which fails instead of writing eval.json."""
    from safetensors.torch import load_file, save_file

    bad_cfg = _copy_run(run_dir, tmp_path / "alpha")
    cfg_path = bad_cfg / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["lora_alpha"] = float("nan")
    cfg_path.write_text(json.dumps(cfg))  # json writes NaN, as the probe's file had it
    rc, err = _cli(["eval", "--adapter", bad_cfg], capsys)
    assert rc == 2 and "'alpha' must be a finite number" in err, err
    bad_w = _copy_run(run_dir, tmp_path / "weights")
    w = load_file(bad_w / "adapter_model.safetensors")
    first = sorted(w)[0]
    w[first] = torch.full_like(w[first], float("nan"))
    save_file(w, bad_w / "adapter_model.safetensors")
    rc, err = _cli(["eval", "--adapter", bad_w], capsys)
    assert rc == 1 and "evaluation gave a loss of nan" in err, err
    assert not (bad_w / "eval.json").exists() and not (bad_cfg / "eval.json").exists()


def test_a_diverging_loss_warns_once_with_step_and_lr(capsys):
    from types import SimpleNamespace

    from peftlab.training.loop import _check_finite

    run = SimpleNamespace()
    low: list[float] = []
    for step, loss in enumerate([3.0, 2.0, 2.5, 9.0, 12.0]):
        _check_finite(loss, step, run, 0.5, low)
    err = capsys.readouterr().err
    assert err.count("warning: the training loss grew") == 1
    assert "to 9 at step 4" in err and "learning rate 0.5" in err and "lowest, 2)" in err


# ----------------------------------------------------------------- untrusted templates


@pytest.mark.parametrize(
    "template, limit, message",
    [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            ("RENDER_SECONDS", 0.3),
            "took more than 0.3 s",
        ),
        ("{% for m in messages %}{{ 'x' * 100 }}{% endfor %}", ("RENDER_CHARS", 50), "wrote 200"),
    ],
)
def test_a_hostile_chat_template_fails_naming_it(
    tmp_path, tiny_model_dir, capsys, monkeypatch, template, limit, message
):
    import peftlab.data.chat as chat

    monkeypatch.setattr(chat, *limit)
    path = tmp_path / "evil.jinja"
    path.write_text(template)
    data = write_toy_dataset(tmp_path / "toy.json", n=8)
    argv = ["train", "--model", tiny_model_dir, "--dataset", data, "--output", tmp_path / "o"]
    argv += ["--chat-template", path, "--prompt-format", "chat", "--max-steps", "1"]
    t0 = time.time()
    rc, err = _cli(argv, capsys)
    assert rc == 2 and f"chat template '{path}'" in err and message in err, err
    assert time.time() - t0 < 30 and "Traceback" not in err


# ------------------------------------------------------------------ records, validated


def _chat_file(path: Path, bad_at: int, bad: dict) -> str:
    good = [
        {
            "messages": [
                {"role": "user", "content": f"Say {w}."},
                {"role": "assistant", "content": w},
            ]
        }
        for w in ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "orbit"] * 2
    ]
    good.insert(bad_at, bad)
    path.write_text(json.dumps(good))
    return str(path)


def test_two_assistant_turns_are_refused_at_validation_with_the_files_index(
    tmp_path, tiny_model_dir, capsys
):
    two = {
        "messages": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    }
    data = _chat_file(tmp_path / "chat.json", 12, two)
    argv = ["train", "--model", tiny_model_dir, "--dataset", data, "--output", tmp_path / "o"]
    argv += ["--chat-template", "chatml", "--max-steps", "1", "--max-length", "64"]
    rc, err = _cli(argv, capsys)
    assert rc == 2 and "chat.json: record 12: turn 0: an assistant turn must answer" in err, err
    argv += ["--skip-bad-records", "--batch-size", "2", "--no-progress", "--exact-match-limit", "0"]
    rc, err = _cli(argv, capsys)
    assert rc == 0 and "skipping" in err and "record 12" in err, err


def test_a_record_the_template_refuses_names_the_files_index_and_can_be_skipped(
    tmp_path, tiny_model_dir, capsys
):
    """The template's own refusal (raise_exception) found before training, named by the
    record's index in the file (not in its split), and skipped with --skip-bad-records."""
    strict = tmp_path / "strict.jinja"
    strict.write_text(
        "{% for m in messages %}{% if 'forbidden' in m['content'] %}"
        "{{ raise_exception('no forbidden words') }}{% endif %}"
        "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "forbidden"}]
    data = _chat_file(tmp_path / "chat.json", 13, {"messages": turns})
    argv = ["train", "--model", tiny_model_dir, "--dataset", data, "--output", tmp_path / "o"]
    argv += ["--chat-template", strict, "--max-steps", "1", "--max-length", "64"]
    rc, err = _cli(argv, capsys)
    assert rc == 2 and "chat.json" in err and "record 13: turn 1" in err, err
    assert "no forbidden words" in err and "--skip-bad-records" in err
    assert not (tmp_path / "o" / "checkpoints").exists()  # before any training step
    argv += ["--skip-bad-records", "--batch-size", "2", "--no-progress", "--exact-match-limit", "0"]
    rc, err = _cli(argv, capsys)
    assert rc == 0 and "skipped 1 record(s) the chat template refuses" in err, err


def test_deeply_nested_json_is_a_clear_error(tmp_path, capsys):
    for name in ("deep.json", "deep.jsonl"):
        path = tmp_path / name
        path.write_text("[" * 100000 + "]" * 100000)
        rc, err = _cli(["train", "--dataset", path, "--output", tmp_path / "o"], capsys)
        assert rc == 2 and "nested too deeply" in err and "Recursion" not in err, err
