"""compare --general-eval: the bundled general set, a score for every run and the base,
rows filled on a rerun without retraining, the forgetting table and verdict."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from peftlab.compare import forgetting
from peftlab.compare.harness import compare, read_rows
from peftlab.compare.report import write_report
from peftlab.compare.verdicts import findings
from peftlab.data.sources import BUNDLED_GENERAL, bundled_dir, load_splits
from test_compare import settings

from conftest import write_toy_dataset


def test_bundled_general_set_is_large_varied_and_not_the_training_data():
    s = load_splits(BUNDLED_GENERAL)
    assert not s.train and len(s.eval) >= 200 and all(r["exact"] for r in s.eval)
    recs = [json.loads(ln) for ln in (bundled_dir() / "general.jsonl").read_text().splitlines()]
    assert len(recs) == len(s.eval)
    tasks = Counter(r["category"] for r in recs)
    assert len(tasks) >= 10 and max(tasks.values()) <= 0.1 * len(recs)
    train = [
        json.loads(ln)
        for name in ("train.jsonl", "eval.jsonl")
        for ln in (bundled_dir() / name).read_text().splitlines()
    ]
    seen = {(r["instruction"], r["input"]) for r in train}
    assert not seen & {(r["instruction"], r["input"]) for r in recs}
    # answers hold for the questions (spot checks by an independent reading)
    for r in recs:
        word = re.search(r"'([a-z]+)'", r["instruction"])
        if r["category"] == "reverse":
            assert r["output"] == word.group(1)[::-1]
        elif r["category"] == "count_letters":
            assert int(r["output"]) == len(word.group(1))
        elif r["category"] == "sort_words":
            assert r["output"].split(", ") == sorted(r["input"].split(", "))
        elif r["category"] == "sequence":
            xs = [int(x) for x in r["input"].split(", ")]
            assert int(r["output"]) - xs[-1] == xs[1] - xs[0]


def test_general_file_matches_its_build_script(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "build_general_dataset.py"
    spec = importlib.util.spec_from_file_location("build_general_dataset", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(tmp_path / "general.jsonl")
    assert (tmp_path / "general.jsonl").read_bytes() == (
        bundled_dir() / "general.jsonl"
    ).read_bytes(), "general.jsonl differs from tools/build_general_dataset.py's output: rerun it"


def test_general_source_resolves_bundled_and_checks_files(tmp_path):
    assert forgetting.general_source("bundled") == BUNDLED_GENERAL
    assert forgetting.general_source(None) is None
    with pytest.raises(FileNotFoundError, match="general-eval"):
        forgetting.general_source(str(tmp_path / "missing.json"))


def test_every_run_and_the_base_get_a_general_score(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    general = write_toy_dataset(tmp_path / "general.json", n=12)
    cfg = {**settings(tmp_path, tiny_model_dir), "lora": {"r": 4, "alpha": 8}}
    rows = compare(cfg, ["lora"], out, extra_methods=["full"], general_eval=general)
    assert [r["name"] for r in rows] == ["base", "lora", "full"]
    for r in rows:
        assert r["status"] == "ok", r.get("error")
        g = r["general"]
        assert g is not None, (r["name"], r.get("general_error"))
        # every record of the file, not a held-out split
        assert len(g["record_nll"]) == 12 and g["perplexity"] > 1
        assert r["general_dataset"] == str((tmp_path / "general.json").resolve())
    base, lora, full = rows
    assert lora["general"]["record_nll"] != base["general"]["record_nll"]
    summary = write_report(out)
    table = summary["forgetting"]
    assert [row[0] for row in table] == ["base", "lora", "full"]
    assert table[0][3] == "reference" and "%" in table[1][3] and "%" in table[2][3]
    assert "Forgetting" in (out / "report.md").read_text()
    assert "Forgetting" in (out / "report.html").read_text()
    f = {x["key"]: x for x in summary["findings"]}["least_forgetting"]
    assert set(f["winners"]) <= {"lora", "full"} and "general-set" in f["text"]

    # a rerun with another general set evaluates again, trains nothing
    stamp = (out / "runs" / "lora" / "results.json").stat().st_mtime_ns
    other = write_toy_dataset(tmp_path / "other.json", n=9)
    rows = compare(cfg, ["lora"], out, extra_methods=["full"], general_eval=other)
    assert (out / "runs" / "lora" / "results.json").stat().st_mtime_ns == stamp
    assert all(len(r["general"]["record_nll"]) == 9 for r in rows)
    assert all(len(r["general"]["record_nll"]) == 9 for r in read_rows(out).values())


def _run(name, nll):
    return {
        "name": name,
        "method": name,
        "status": "ok",
        "after": {"perplexity": 5.0, "record_nll": [1.0] * 40, "record_tokens": [1] * 40},
        "general": {"perplexity": 2.0, "record_nll": nll, "record_tokens": [1] * 40},
    }


def test_least_forgetting_says_tie_or_winner_as_the_data_say():
    same = [0.5 + 0.01 * (i % 7) for i in range(40)]
    tie = {f["key"]: f for f in findings([_run("a", same), _run("b", same)])}
    assert tie["least_forgetting"]["winners"] == ["a", "b"]
    worse = [x + 0.3 for x in same]
    won = {f["key"]: f for f in findings([_run("a", same), _run("b", worse)])}
    assert won["least_forgetting"]["winners"] == ["a"]
