"""Plumbing shared by the bundled-dataset build scripts.

``build_dataset.py`` (Alpaca records from ``dataset_src/``) and
``build_chat_dataset.py`` (conversations from ``chat_src/``) work the same way:
collect the records of a source package (one module per category, each with a
``records(rng)`` function), validate them, make a fixed stratified train/eval
split, compute statistics and write two JSONL files and a card.  A script holds
its dataset's rules, statistics and card (see :class:`BuildScript`); this module
does the rest.  Standard library only.

Each script's command line::

    python tools/build_dataset.py                 # rebuild the shipped files
    python tools/build_dataset.py --check         # fail if they are out of date
    python tools/build_dataset.py --out-dir DIR   # write somewhere else

and likewise ``build_chat_dataset.py``.  The output is fully deterministic (fixed
seeds, no set/dict-order dependence), so re-running a script reproduces the
shipped files byte for byte.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DIR = ROOT / "src" / "peftlab" / "data" / "bundled"
TRAILING_PUNCT = ".,;:!?"

Records = list[dict]


class DatasetError(ValueError):
    """A record, the category mix or the split breaks one of the build's rules."""


def words(text: str) -> int:
    return len(text.split())


def normalize_answer(text: str) -> str:
    """How exact answers are compared: lower-cased, trailing punctuation/space stripped."""
    return text.strip().rstrip(TRAILING_PUNCT + " \t\n").lower()


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def share(records: Records, pred: Callable[[dict], object]) -> float:
    """The fraction of ``records`` for which ``pred`` is true."""
    return sum(bool(pred(r)) for r in records) / len(records)


def is_exact(r: dict) -> bool:
    return r["exact"]


def raise_problems(problems: list[str], head: str | None = None) -> None:
    """Raise :class:`DatasetError` listing ``problems`` (one per line under ``head``)."""
    if problems:
        raise DatasetError(
            "; ".join(problems) if head is None else f"{head}:\n  " + "\n  ".join(problems)
        )


def exact_answer_problems(answer: str, max_words: int, question: str, cue: re.Pattern) -> list[str]:
    """What is wrong with an exact answer: not one short line, trailing punctuation,
    or a ``question`` that does not state the answer form (``cue`` finds no match)."""
    problems = []
    if "\n" in answer or words(answer) > max_words:
        problems.append(f"exact answer is not short: {answer!r}")
    if answer[-1] in TRAILING_PUNCT:
        problems.append(f"exact answer ends in punctuation: {answer!r}")
    if not cue.search(question):
        problems.append(f"the question does not state the answer form: {question[-60:]!r}")
    return problems


def category_problems(
    records: Records, categories: Iterable[str], minimum: int, unit: str
) -> list[str]:
    """Categories with fewer than ``minimum`` records (counted in ``unit``)."""
    counts = Counter(r["category"] for r in records)
    return [f"category {c}: only {counts[c]} {unit}" for c in categories if counts[c] < minimum]


def split_problems(
    train: Records, evals: Records, categories: Iterable[str], key: Callable[[dict], object]
) -> list[str]:
    """Categories missing from either part, and records (by duplicate ``key``) in both."""
    problems = []
    for name, part in (("train", train), ("eval", evals)):
        missing = set(categories) - {r["category"] for r in part}
        if missing:
            problems.append(f"{name} lacks categories {sorted(missing)}")
    if {key(r) for r in train} & {key(r) for r in evals}:
        problems.append("train and eval overlap")
    return problems


def collect(source: str, seed: int) -> Records:
    """All records of the ``source`` package's ``CATEGORY_MODULES``, in source order,
    each module with its own seeded random generator."""
    records = []
    for name in importlib.import_module(source).CATEGORY_MODULES:
        module = importlib.import_module(f"{source}.{name}")
        records += module.records(random.Random(f"{seed}:{name}"))
    return records


def split(records: Records, eval_size: int, seed: int) -> tuple[Records, Records]:
    """Stratified split by (category, exact); both parts shuffled with a fixed seed."""
    rng = random.Random(f"{seed}:split")
    groups: dict[tuple[str, bool], Records] = {}
    for r in records:  # insertion order == source order: deterministic
        groups.setdefault((r["category"], r["exact"]), []).append(r)
    n = len(records)
    quota = {g: eval_size * len(rs) // n for g, rs in groups.items()}
    by_remainder = sorted(groups, key=lambda g: (-(eval_size * len(groups[g]) % n), g))
    for g in by_remainder[: eval_size - sum(quota.values())]:
        quota[g] += 1
    train, evals = [], []
    for g, rs in groups.items():
        rs = rs[:]
        rng.shuffle(rs)
        evals += rs[: quota[g]]
        train += rs[quota[g] :]
    rng.shuffle(train)
    rng.shuffle(evals)
    return train, evals


def split_stats(
    train: Records,
    evals: Records,
    categories: Iterable[str],
    counts: dict[str, Callable[[dict], object]],
) -> dict:
    """The statistics both cards share.

    Per category: train, eval, total and exact counts, one count per ``counts``
    predicate, and the hand-written count; overall: the sizes and exact shares.
    """
    every = train + evals
    per_cat = {}
    for c in categories:
        rs = [r for r in every if r["category"] == c]
        per_cat[c] = {
            "train": sum(r["category"] == c for r in train),
            "eval": sum(r["category"] == c for r in evals),
            "total": len(rs),
            "exact": sum(r["exact"] for r in rs),
            **{name: sum(bool(pred(r)) for r in rs) for name, pred in counts.items()},
            "hand": sum(r["origin"] == "hand" for r in rs),
        }
    return {
        "per_category": per_cat,
        "train": len(train),
        "eval": len(evals),
        "total": len(every),
        "exact_share": share(every, is_exact),
        "exact_share_train": share(train, is_exact),
        "exact_share_eval": share(evals, is_exact),
    }


def to_jsonl(records: Records, keys: Iterable[str]) -> str:
    """One JSON object per line with exactly ``keys``, in that order."""
    return "".join(json.dumps({k: r[k] for k in keys}, ensure_ascii=False) + "\n" for r in records)


class BuildScript(Protocol):
    """What a build script module defines for :func:`build` and :func:`main`.

    The ``validate``/``check_*`` functions raise :class:`DatasetError`.
    """

    TITLE: str  # "bundled dataset", for messages
    SOURCE: str  # the source package (with CATEGORY_MODULES)
    SEED: int
    EVAL_SIZE: int
    KEYS: tuple[str, ...]  # the keys written, in order
    FILES: tuple[str, str, str]  # train JSONL, eval JSONL, card

    def validate(self, records: Records) -> None: ...
    def check_mix(self, records: Records) -> None: ...
    def check_split(self, train: Records, evals: Records) -> None: ...
    def stats(self, train: Records, evals: Records) -> dict: ...
    def render_card(self, s: dict) -> str: ...
    def report(self, s: dict, out_dir: Path) -> None: ...  # printed after a build


def build(script: BuildScript, out_dir: Path | str | None = None) -> dict:
    """Build, validate and write ``script``'s dataset files into ``out_dir``; return the stats."""
    out_dir = Path(out_dir) if out_dir is not None else BUNDLED_DIR
    records = collect(script.SOURCE, script.SEED)
    script.validate(records)
    script.check_mix(records)
    train, evals = split(records, script.EVAL_SIZE, script.SEED)
    script.check_split(train, evals)
    s = script.stats(train, evals)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = (to_jsonl(train, script.KEYS), to_jsonl(evals, script.KEYS), script.render_card(s))
    for name, text in zip(script.FILES, texts, strict=True):
        (out_dir / name).write_text(text, encoding="utf-8", newline="\n")
    return s


def stale(script: BuildScript, out_dir: Path) -> list[str]:
    """The files in ``out_dir`` that are missing or differ from a fresh build."""
    with tempfile.TemporaryDirectory() as tmp:
        build(script, tmp)
        return [
            f
            for f in script.FILES
            if not (out_dir / f).exists()
            or (out_dir / f).read_bytes() != (Path(tmp) / f).read_bytes()
        ]


def main(script: BuildScript, argv: list[str] | None = None) -> int:
    """The build scripts' command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=script.__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=BUNDLED_DIR)
    parser.add_argument(
        "--check",
        action="store_true",
        help="build into a temporary directory and compare with --out-dir",
    )
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale(script, args.out_dir)
        if out_of_date:
            run = f"tools/{Path(script.__file__).name}"
            print(f"out of date: {', '.join(out_of_date)} (run {run})")
            return 1
        print(f"{script.TITLE} is up to date")
        return 0
    script.report(build(script, args.out_dir), args.out_dir)
    return 0
