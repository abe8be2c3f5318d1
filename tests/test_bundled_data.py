"""Checks on the bundled instruction dataset (src/peftlab/data/bundled/).

Offline and fast: reads the shipped JSONL files, re-checks computed answers with the
generator's independent checker in tools/dataset_src/, and rebuilds the files into a
temporary directory to make sure they are exactly what tools/build_dataset.py makes.
"""

from __future__ import annotations

import re

import pytest

from helpers.dataset_checks import (
    assert_categories,
    assert_same_files,
    assert_short_answer,
    assert_unique_and_disjoint,
    is_prime,
    share,
    split_fixtures,
    tools_module,
)

KEYS = ["instruction", "input", "output", "category", "exact"]
CATEGORIES = {
    "rewrite",
    "classify",
    "extract",
    "summarize",
    "brainstorm",
    "explain",
    "open_qa",
    "math",
}

train, evals, every = split_fixtures("train.jsonl", "eval.jsonl")
check_record = tools_module("dataset_src.math_check").check_record


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _key(r: dict) -> tuple[str, str]:
    return _norm(r["instruction"]), _norm(r["input"])


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
    totals = assert_categories(train, evals, CATEGORIES, minimum=40, tolerance=0.02)
    assert totals["math"] / len(every) <= 0.25


def test_exact_and_input_shares(train, evals, every):
    for part in (every, train, evals):
        assert share(part, lambda r: r["exact"]) >= 0.40
    assert share(every, lambda r: r["input"]) >= 0.30


def test_exact_outputs_are_bare_answers(every):
    for r in (r for r in every if r["exact"]):
        assert_short_answer(r["output"], 6, r)


def test_no_duplicates_and_no_overlap(train, evals):
    assert_unique_and_disjoint(train, evals, _key)


def test_math_answers_recheck(every):
    maths = [r for r in every if r["category"] == "math"]
    assert maths
    for r in maths:
        check_record(r)  # raises ValueError on a wrong answer
    assert sum(r["exact"] for r in maths) / len(maths) > 0.8


def test_math_checker_catches_wrong_answers():
    good = {
        "instruction": "What is 12 times 13? Give only the number.",
        "input": "",
        "output": "156",
        "category": "math",
        "exact": True,
    }
    check_record(good)
    with pytest.raises(ValueError):
        check_record({**good, "output": "155"})
    worked = {
        "instruction": "Solve the problem and briefly show your work.",
        "input": "A shop sells pens for 3 dollars each. How much do 7 pens cost?",
        "output": "7 x 3 = 21, so the pens cost 21 dollars.",
        "category": "math",
        "exact": False,
    }
    check_record(worked)
    with pytest.raises(ValueError):
        check_record({**worked, "output": "7 x 3 = 24, so the pens cost 24 dollars."})


def test_computed_classify_labels(every):
    for r in every:
        if r["instruction"].startswith("Is this number even or odd?"):
            assert r["output"] == ("even" if int(r["input"]) % 2 == 0 else "odd"), r
        m = re.fullmatch(r"Is (\d+) a prime number\? Answer yes or no\.", r["instruction"])
        if m:
            assert r["output"] == ("yes" if is_prime(int(m.group(1))) else "no"), r


def test_exact_extractions_come_from_the_input(every):
    for r in every:
        if r["category"] == "extract" and r["exact"]:
            assert r["output"].lower() in r["input"].lower(), r


def test_files_match_build_script(tmp_path):
    script = tools_module("build_dataset")
    tools_module("dataset_common").build(script, tmp_path)
    assert_same_files(
        tmp_path, ("train.jsonl", "eval.jsonl", "README.md"), "tools/build_dataset.py"
    )
