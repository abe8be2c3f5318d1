"""Checks shared by the bundled-dataset tests (test_bundled_data.py, test_bundled_chat.py).

They read the shipped files in src/peftlab/data/bundled/ and re-check them on their
own terms; from tools/ the tests import only what :func:`tools_module` gives them
(the build scripts, ``dataset_common`` and ``dataset_src.math_check``).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "src" / "peftlab" / "data" / "bundled"
TOOLS = ROOT / "tools"


def tools_module(name: str) -> ModuleType:
    """Import a module from tools/, with tools/ on ``sys.path`` as when a script runs."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(name)


def load(name: str) -> list[dict]:
    """The records of the shipped JSONL file ``name``."""
    return [json.loads(line) for line in (BUNDLED / name).read_text(encoding="utf-8").splitlines()]


def split_fixtures(train_file: str, eval_file: str):
    """Module-scoped fixtures ``train``, ``evals`` and ``every`` (both parts) over two
    shipped files; a test module assigns them to those names."""

    @pytest.fixture(scope="module")
    def train() -> list[dict]:
        return load(train_file)

    @pytest.fixture(scope="module")
    def evals() -> list[dict]:
        return load(eval_file)

    @pytest.fixture(scope="module")
    def every(train, evals) -> list[dict]:
        return train + evals

    return train, evals, every


def share(records: list[dict], pred: Callable[[dict], object]) -> float:
    return sum(bool(pred(r)) for r in records) / len(records)


def is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, n))


def assert_short_answer(answer: str, max_words: int, record: dict) -> None:
    """An exact answer: one stripped line of at most ``max_words`` words, no final punctuation."""
    assert "\n" not in answer and len(answer.split()) <= max_words, record
    assert answer == answer.strip() and answer[-1] not in ".,;:!?", record


def assert_categories(
    train: list[dict], evals: list[dict], categories: Iterable[str], minimum: int, tolerance: float
) -> Counter:
    """Every category has ``minimum`` records and is in both parts, with an eval share
    within ``tolerance`` of its overall share (the split is stratified); returns the
    per-category totals."""
    every, categories = train + evals, set(categories)
    totals = Counter(r["category"] for r in every)
    assert set(totals) == categories and min(totals.values()) >= minimum, totals
    assert {r["category"] for r in train} == categories
    assert {r["category"] for r in evals} == categories
    in_eval = Counter(r["category"] for r in evals)
    for cat, n in totals.items():
        assert abs(n / len(every) - in_eval[cat] / len(evals)) < tolerance, cat
    return totals


def assert_unique_and_disjoint(
    train: list[dict], evals: list[dict], key: Callable[[dict], object]
) -> None:
    """No duplicate ``key`` within either part, and no record in both."""
    train_keys, eval_keys = [key(r) for r in train], [key(r) for r in evals]
    assert len(set(train_keys)) == len(train_keys)
    assert len(set(eval_keys)) == len(eval_keys)
    assert not set(train_keys) & set(eval_keys)


def assert_same_files(out_dir: Path, files: Iterable[str], script: str) -> None:
    """The files a fresh build wrote into ``out_dir`` are the shipped ones, byte for byte."""
    for name in files:
        assert (out_dir / name).read_bytes() == (BUNDLED / name).read_bytes(), (
            f"{name} is out of date: run {script}"
        )
