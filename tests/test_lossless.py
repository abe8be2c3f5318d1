"""Nothing lost whatever the user types (issue 31): no writer replaces anything it
reads, whatever --overwrite says; temporaries of a killed writer are removed by the
next one; compare owns its directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from peftlab.cli import main

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "merged", "other.tmp"]
    assert (merged / "config.json").is_file() and gguf.stat().st_size > 0
