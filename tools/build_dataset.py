#!/usr/bin/env python
"""Build peftlab's bundled instruction dataset (Alpaca format).

Collects the records defined in ``tools/dataset_src/`` (one module per category),
validates them, makes a fixed stratified train/eval split and writes::

    src/peftlab/data/bundled/train.jsonl
    src/peftlab/data/bundled/eval.jsonl
    src/peftlab/data/bundled/README.md

The output is fully deterministic (fixed seed, no set/dict-order dependence), so
re-running the script reproduces the shipped files byte for byte.

Usage::

    python tools/build_dataset.py                 # rebuild the shipped files
    python tools/build_dataset.py --check         # fail if they are out of date
    python tools/build_dataset.py --out-dir DIR   # write somewhere else
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
ROOT = TOOLS_DIR.parent
BUNDLED_DIR = ROOT / "src" / "peftlab" / "data" / "bundled"
if str(TOOLS_DIR) not in sys.path:
    sys.path.insert(0, str(TOOLS_DIR))

from dataset_src import CATEGORY_MODULES  # noqa: E402
from dataset_src.math_check import check_record  # noqa: E402

SEED = 20241130
EVAL_SIZE = 120
CATEGORIES = ("rewrite", "classify", "extract", "summarize", "brainstorm", "explain",
              "open_qa", "math")
KEYS = ("instruction", "input", "output", "category", "exact")
FILES = ("train.jsonl", "eval.jsonl", "README.md")

# Hard limits and targets (the build fails if any is violated).
MAX_TOTAL_WORDS = 150
MAX_OUTPUT_WORDS = 60
MAX_EXACT_OUTPUT_WORDS = 6
MIN_PER_CATEGORY = 40
MIN_TRAIN, MIN_EVAL = 600, 100
MIN_EXACT_SHARE = 0.40
MIN_INPUT_SHARE = 0.30
MAX_MATH_SHARE = 0.25
MIN_HAND_SHARE_NON_MATH = 0.50
# An exact record's instruction has to say what form the answer takes.
EXACT_CUE = re.compile(
    r"\b(only|one word|two words|answer with|answer yes or no|reply with|"
    r"one decimal place|as written)\b", re.IGNORECASE)
TRAILING_PUNCT = ".,;:!?"


class DatasetError(ValueError):
    pass


def words(text: str) -> int:
    return len(text.split())


def normalize_answer(text: str) -> str:
    """How exact answers are compared: lower-cased, trailing punctuation/space stripped."""
    return text.strip().rstrip(TRAILING_PUNCT + " \t\n").lower()


def _key(r: dict) -> tuple[str, str]:
    return (" ".join(r["instruction"].lower().split()), " ".join(r["input"].lower().split()))


def collect() -> list[dict]:
    """All records, in source order, with the internal ``origin`` field."""
    records = []
    for name in CATEGORY_MODULES:
        module = importlib.import_module(f"dataset_src.{name}")
        records += module.records(random.Random(f"{SEED}:{name}"))
    return records


def validate(records: list[dict]) -> None:
    problems = []
    seen = {}
    for i, r in enumerate(records):
        where = f"record {i} ({r.get('category')}: {r.get('instruction', '')[:50]!r})"
        if set(r) - {"origin"} != set(KEYS):
            problems.append(f"{where}: keys {sorted(r)}")
            continue
        for k in ("instruction", "input", "output", "category"):
            if not isinstance(r[k], str):
                problems.append(f"{where}: {k} is not a string")
        if not isinstance(r["exact"], bool):
            problems.append(f"{where}: exact is not a bool")
        if r["category"] not in CATEGORIES:
            problems.append(f"{where}: unknown category")
        for k in ("instruction", "input", "output"):
            if r[k] != r[k].strip():
                problems.append(f"{where}: {k} has surrounding whitespace")
        if not r["instruction"] or not r["output"]:
            problems.append(f"{where}: empty instruction or output")
        total = words(r["instruction"]) + words(r["input"]) + words(r["output"])
        if total > MAX_TOTAL_WORDS:
            problems.append(f"{where}: {total} words in total")
        if words(r["output"]) > MAX_OUTPUT_WORDS:
            problems.append(f"{where}: output has {words(r['output'])} words")
        if r["exact"]:
            out = r["output"]
            if "\n" in out or words(out) > MAX_EXACT_OUTPUT_WORDS:
                problems.append(f"{where}: exact output is not a short answer: {out!r}")
            if out[-1] in TRAILING_PUNCT:
                problems.append(f"{where}: exact output ends in punctuation: {out!r}")
            if not EXACT_CUE.search(r["instruction"]):
                problems.append(f"{where}: exact instruction does not state the answer form")
            if r["category"] == "extract" and out.lower() not in r["input"].lower():
                problems.append(f"{where}: extracted answer {out!r} is not in the input")
        key = _key(r)
        if key in seen:
            problems.append(f"{where}: duplicate (instruction, input) of record {seen[key]}")
        seen[key] = i
        if r["category"] == "math":
            try:
                check_record(r)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
    if problems:
        raise DatasetError("invalid records:\n  " + "\n  ".join(problems))


def check_mix(records: list[dict]) -> None:
    n = len(records)
    cats = Counter(r["category"] for r in records)
    problems = [f"category {c}: only {cats[c]} records" for c in CATEGORIES
                if cats[c] < MIN_PER_CATEGORY]
    if sum(r["exact"] for r in records) / n < MIN_EXACT_SHARE:
        problems.append("too few exact records")
    if sum(bool(r["input"]) for r in records) / n < MIN_INPUT_SHARE:
        problems.append("too few records use the input field")
    if cats["math"] / n > MAX_MATH_SHARE:
        problems.append("too many math records")
    non_math = [r for r in records if r["category"] != "math"]
    if sum(r["origin"] == "hand" for r in non_math) / len(non_math) < MIN_HAND_SHARE_NON_MATH:
        problems.append("too few hand-written non-math records")
    if problems:
        raise DatasetError("; ".join(problems))


def split(records: list[dict], eval_size: int = EVAL_SIZE) -> tuple[list[dict], list[dict]]:
    """Stratified split by (category, exact); both parts shuffled with a fixed seed."""
    rng = random.Random(f"{SEED}:split")
    groups: dict[tuple[str, bool], list[dict]] = {}
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
        train += rs[quota[g]:]
    rng.shuffle(train)
    rng.shuffle(evals)
    return train, evals


def check_split(train: list[dict], evals: list[dict]) -> None:
    problems = []
    if len(train) < MIN_TRAIN or len(evals) < MIN_EVAL:
        problems.append(f"split sizes {len(train)}/{len(evals)}")
    for name, part in (("train", train), ("eval", evals)):
        missing = set(CATEGORIES) - {r["category"] for r in part}
        if missing:
            problems.append(f"{name} lacks categories {sorted(missing)}")
        if sum(r["exact"] for r in part) / len(part) < MIN_EXACT_SHARE:
            problems.append(f"{name}: too few exact records")
    if {_key(r) for r in train} & {_key(r) for r in evals}:
        problems.append("train and eval overlap")
    if problems:
        raise DatasetError("; ".join(problems))


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps({k: r[k] for k in KEYS}, ensure_ascii=False) + "\n"
                   for r in records)


def stats(train: list[dict], evals: list[dict]) -> dict:
    every = train + evals
    per_cat = {}
    for c in CATEGORIES:
        rs = [r for r in every if r["category"] == c]
        per_cat[c] = {
            "train": sum(r["category"] == c for r in train),
            "eval": sum(r["category"] == c for r in evals),
            "total": len(rs),
            "exact": sum(r["exact"] for r in rs),
            "input": sum(bool(r["input"]) for r in rs),
            "hand": sum(r["origin"] == "hand" for r in rs),
        }
    totals = [words(r["instruction"]) + words(r["input"]) + words(r["output"]) for r in every]
    outs = [words(r["output"]) for r in every]
    non_math = [r for r in every if r["category"] != "math"]
    return {
        "per_category": per_cat,
        "train": len(train), "eval": len(evals), "total": len(every),
        "exact_share": sum(r["exact"] for r in every) / len(every),
        "exact_share_train": sum(r["exact"] for r in train) / len(train),
        "exact_share_eval": sum(r["exact"] for r in evals) / len(evals),
        "input_share": sum(bool(r["input"]) for r in every) / len(every),
        "math_share": per_cat["math"]["total"] / len(every),
        "hand_share_non_math": sum(r["origin"] == "hand" for r in non_math) / len(non_math),
        "median_total_words": statistics.median(totals),
        "max_total_words": max(totals),
        "share_total_le_80": sum(t <= 80 for t in totals) / len(totals),
        "share_output_le_40": sum(o <= 40 for o in outs) / len(outs),
        "max_output_words": max(outs),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_readme(s: dict) -> str:
    rows = "\n".join(
        f"| {c} | {v['train']} | {v['eval']} | {v['total']} | {v['exact']} | {v['input']} "
        f"| {v['hand']} |" for c, v in s["per_category"].items())
    exact_total = sum(v["exact"] for v in s["per_category"].values())
    input_total = sum(v["input"] for v in s["per_category"].values())
    hand_total = sum(v["hand"] for v in s["per_category"].values())
    return f"""# Bundled instruction dataset

A small instruction-tuning dataset in Alpaca format that ships with peftlab so the
fine-tuning demo runs offline. It is sized for a 135M chat model trained for a few
minutes on a CPU, so records are short:

- instruction, input and output together: median {s['median_total_words']:g} words, longest {s['max_total_words']}; {_pct(s['share_total_le_80'])} of records have at most 80 words;
- outputs: {_pct(s['share_output_le_40'])} have at most 40 words, longest {s['max_output_words']}.

**License:** written for this project and released under the Apache-2.0 license,
like the rest of peftlab. It is not derived from Stanford Alpaca or any other
dataset.

## Files

- `train.jsonl` - {s['train']} records
- `eval.jsonl` - {s['eval']} records

One JSON object per line, with exactly these keys:

| key | type | meaning |
|---|---|---|
| `instruction` | str, non-empty | the task |
| `input` | str, may be `""` | optional context for the task |
| `output` | str, non-empty | the reference answer |
| `category` | str | one of `rewrite`, `classify`, `extract`, `summarize`, `brainstorm`, `explain`, `open_qa`, `math` |
| `exact` | bool | `true` when the output is a single short answer (a number, label, name, date or short phrase) that can be checked by string comparison after lower-casing and stripping trailing punctuation and whitespace; the instruction states the expected form (for example "Give only the number.") |

## How it was built

`python tools/build_dataset.py` assembles the records from `tools/dataset_src/`
(one module per category), validates them and writes these files; it is
deterministic (seed {SEED}), and `python tools/build_dataset.py --check` verifies
that the shipped files are up to date.

- Non-math records are mostly written individually by hand
  ({_pct(s['hand_share_non_math'])} of them, the "hand-written" column below); the
  rest come from small fact tables or templates (capitals, chemical symbols, book
  authors, irregular word forms, animal and matter labels, even/odd and prime
  labels computed in Python, and short generated texts for extraction).
- Math records are generated from templates with random numbers, and every answer
  is computed in Python. An independent checker (`tools/dataset_src/math_check.py`)
  parses each question back and recomputes its answer; the build and the tests
  run it on every math record. Decimal answers only appear where the instruction
  states the rounding.
- The build rejects duplicate `(instruction, input)` pairs (case- and
  whitespace-insensitive), over-long records, exact answers that are not short
  or that end in punctuation, exact instructions that do not state the answer
  form, and extracted answers that do not occur in the input.
- `tests/test_bundled_data.py` re-checks the shipped files and that they are
  byte-for-byte what the build script produces.
- The train/eval split is stratified by category and by `exact`, so every
  category appears in both files in similar proportion; no record is in both.

## Counts

| category | train | eval | total | exact | uses input | hand-written |
|---|---|---|---|---|---|---|
{rows}
| **all** | {s['train']} | {s['eval']} | {s['total']} | {exact_total} | {input_total} | {hand_total} |

- Exact share: {_pct(s['exact_share'])} overall, {_pct(s['exact_share_train'])} of train, {_pct(s['exact_share_eval'])} of eval.
- Records that use the `input` field: {_pct(s['input_share'])}.
- Math share: {_pct(s['math_share'])}.
"""


def build(out_dir: Path | str | None = None) -> dict:
    """Build, validate and write the dataset files into ``out_dir``; return the stats."""
    out_dir = Path(out_dir) if out_dir is not None else BUNDLED_DIR
    records = collect()
    validate(records)
    check_mix(records)
    train, evals = split(records)
    check_split(train, evals)
    s = stats(train, evals)
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {"train.jsonl": to_jsonl(train), "eval.jsonl": to_jsonl(evals),
                "README.md": render_readme(s)}
    for name, text in contents.items():
        (out_dir / name).write_text(text, encoding="utf-8", newline="\n")
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--check", action="store_true",
                        help="build into a temporary directory and compare with --out-dir")
    args = parser.parse_args(argv)
    if args.check:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            build(tmp)
            stale = [f for f in FILES if not (args.out_dir / f).exists()
                     or (args.out_dir / f).read_bytes() != (Path(tmp) / f).read_bytes()]
        if stale:
            print(f"out of date: {', '.join(stale)} (run tools/build_dataset.py)")
            return 1
        print("bundled dataset is up to date")
        return 0
    s = build(args.out_dir)
    print(f"wrote {s['train']} train + {s['eval']} eval records to {args.out_dir}")
    print(f"{'category':<11} {'train':>5} {'eval':>5} {'total':>5} {'exact':>5} {'input':>5} {'hand':>5}")
    for c, v in s["per_category"].items():
        print(f"{c:<11} {v['train']:>5} {v['eval']:>5} {v['total']:>5} {v['exact']:>5} "
              f"{v['input']:>5} {v['hand']:>5}")
    print(f"exact share {_pct(s['exact_share'])} (train {_pct(s['exact_share_train'])}, "
          f"eval {_pct(s['exact_share_eval'])}); input share {_pct(s['input_share'])}; "
          f"math share {_pct(s['math_share'])}; hand-written non-math "
          f"{_pct(s['hand_share_non_math'])}")
    print(f"words per record: median {s['median_total_words']:g}, max {s['max_total_words']}, "
          f"<=80: {_pct(s['share_total_le_80'])}; outputs <=40 words: "
          f"{_pct(s['share_output_le_40'])}, max {s['max_output_words']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
