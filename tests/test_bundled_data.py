"""Checks on the bundled instruction dataset (src/peftlab/data/bundled/).

Offline and fast: reads the shipped JSONL files, re-checks computed answers with the
generator's independent checker in tools/dataset_src/, and rebuilds the files into a
temporary directory to make sure they are exactly what tools/build_dataset.py makes.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "src" / "peftlab" / "data" / "bundled"
BUILD_SCRIPT = ROOT / "tools" / "build_dataset.py"

KEYS = ["instruction", "input", "output", "category", "exact"]
CATEGORIES = {"rewrite", "classify", "extract", "summarize", "brainstorm", "explain",
              "open_qa", "math"}


def _load(name: str) -> list[dict]:
    lines = (BUNDLED / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _key(r: dict) -> tuple[str, str]:
    return _norm(r["instruction"]), _norm(r["input"])


@pytest.fixture(scope="module")
def build_mod():
    spec = importlib.util.spec_from_file_location("peftlab_tools_build_dataset", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # also puts tools/ on sys.path for dataset_src
    return module


@pytest.fixture(scope="module")
def train() -> list[dict]:
    return _load("train.jsonl")


@pytest.fixture(scope="module")
def evals() -> list[dict]:
    return _load("eval.jsonl")


@pytest.fixture(scope="module")
def every(train, evals) -> list[dict]:
    return train + evals


def test_counts(train, evals):
    assert len(train) >= 600
    assert len(evals) >= 100


def test_keys_types_and_non_empty(every):
    for r in every:
        assert list(r) == KEYS, r
        assert all(isinstance(r[k], str) for k in ("instruction", "input", "output", "category"))
        assert isinstance(r["exact"], bool)
        assert r["instruction"].strip() and r["output"].strip(), r
        assert r["category"] in CATEGORIES, r


def test_lengths(every):
    for r in every:
        total = sum(len(r[k].split()) for k in ("instruction", "input", "output"))
        assert total <= 150, r
    short = sum(len(r["output"].split()) <= 40 for r in every)
    assert short / len(every) >= 0.9


def test_category_coverage_and_stratification(train, evals, every):
    totals = Counter(r["category"] for r in every)
    assert set(totals) == CATEGORIES
    assert min(totals.values()) >= 40
    assert {r["category"] for r in train} == CATEGORIES
    assert {r["category"] for r in evals} == CATEGORIES
    eval_counts = Counter(r["category"] for r in evals)
    for cat, n in totals.items():
        share_all, share_eval = n / len(every), eval_counts[cat] / len(evals)
        assert abs(share_all - share_eval) < 0.02, cat
    assert totals["math"] / len(every) <= 0.25


def test_exact_and_input_shares(train, evals, every):
    for part in (every, train, evals):
        assert sum(r["exact"] for r in part) / len(part) >= 0.40
    assert sum(bool(r["input"]) for r in every) / len(every) >= 0.30


def test_exact_outputs_are_bare_answers(every):
    for r in (r for r in every if r["exact"]):
        out = r["output"]
        assert "\n" not in out and len(out.split()) <= 6, r
        assert out == out.strip() and out[-1] not in ".,;:!?", r


def test_no_duplicates_and_no_overlap(train, evals):
    train_keys = [_key(r) for r in train]
    eval_keys = [_key(r) for r in evals]
    assert len(set(train_keys)) == len(train_keys)
    assert len(set(eval_keys)) == len(eval_keys)
    assert not set(train_keys) & set(eval_keys)


def test_math_answers_recheck(build_mod, every):
    from dataset_src.math_check import check_record

    maths = [r for r in every if r["category"] == "math"]
    assert maths
    for r in maths:
        check_record(r)  # raises ValueError on a wrong answer
    assert sum(r["exact"] for r in maths) / len(maths) > 0.8


def test_math_checker_catches_wrong_answers(build_mod):
    from dataset_src.math_check import check_record

    good = {"instruction": "What is 12 times 13? Give only the number.", "input": "",
            "output": "156", "category": "math", "exact": True}
    check_record(good)
    with pytest.raises(ValueError):
        check_record({**good, "output": "155"})
    worked = {"instruction": "Solve the problem and briefly show your work.",
              "input": "A shop sells pens for 3 dollars each. How much do 7 pens cost?",
              "output": "7 x 3 = 21, so the pens cost 21 dollars.",
              "category": "math", "exact": False}
    check_record(worked)
    with pytest.raises(ValueError):
        check_record({**worked, "output": "7 x 3 = 24, so the pens cost 24 dollars."})


def test_computed_classify_labels(every):
    for r in every:
        if r["instruction"].startswith("Is this number even or odd?"):
            assert r["output"] == ("even" if int(r["input"]) % 2 == 0 else "odd"), r
        m = re.fullmatch(r"Is (\d+) a prime number\? Answer yes or no\.", r["instruction"])
        if m:
            n = int(m.group(1))
            prime = n > 1 and all(n % d for d in range(2, n))
            assert r["output"] == ("yes" if prime else "no"), r


def test_exact_extractions_come_from_the_input(every):
    for r in every:
        if r["category"] == "extract" and r["exact"]:
            assert r["output"].lower() in r["input"].lower(), r


def test_files_match_build_script(build_mod, tmp_path):
    build_mod.build(tmp_path)
    for name in ("train.jsonl", "eval.jsonl", "README.md"):
        assert (tmp_path / name).read_bytes() == (BUNDLED / name).read_bytes(), (
            f"{name} is out of date: run tools/build_dataset.py")
