#!/usr/bin/env python
"""Build peftlab's bundled instruction dataset (Alpaca format).

Writes ``train.jsonl``, ``eval.jsonl`` and ``README.md`` into
``src/peftlab/data/bundled/`` from the records in ``tools/dataset_src/`` (one
module per category; ``dataset_src/math_check.py`` re-checks every math answer).
The dataset's rules, statistics and README are here; ``dataset_common.py`` runs
the build (validation, fixed stratified split, writing) and the command line.

Usage: ``python tools/build_dataset.py [--check] [--out-dir DIR]``
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

import dataset_common
from dataset_common import (
    category_problems,
    exact_answer_problems,
    is_exact,
    pct,
    raise_problems,
    share,
    split_problems,
    split_stats,
    words,
)
from dataset_src.math_check import check_record

SEED = 20241130
EVAL_SIZE = 120
CATEGORIES = (
    "rewrite",
    "classify",
    "extract",
    "summarize",
    "brainstorm",
    "explain",
    "open_qa",
    "math",
)
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
    r"one decimal place|as written)\b",
    re.IGNORECASE,
)

# What dataset_common needs besides the above: the name its messages use and
# the package the records come from.
TITLE = "bundled dataset"
SOURCE = "dataset_src"


def _key(r: dict) -> tuple[str, str]:
    return (" ".join(r["instruction"].lower().split()), " ".join(r["input"].lower().split()))


def _total_words(r: dict) -> int:
    return words(r["instruction"]) + words(r["input"]) + words(r["output"])


def _is_hand(r: dict) -> bool:
    return r["origin"] == "hand"


def _non_math(records: list[dict]) -> list[dict]:
    return [r for r in records if r["category"] != "math"]


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
        if _total_words(r) > MAX_TOTAL_WORDS:
            problems.append(f"{where}: {_total_words(r)} words in total")
        if words(r["output"]) > MAX_OUTPUT_WORDS:
            problems.append(f"{where}: output has {words(r['output'])} words")
        if r["exact"]:
            out = r["output"]
            problems += [
                f"{where}: {p}"
                for p in exact_answer_problems(
                    out, MAX_EXACT_OUTPUT_WORDS, r["instruction"], EXACT_CUE
                )
            ]
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
    raise_problems(problems, "invalid records")


def check_mix(records: list[dict]) -> None:
    problems = category_problems(records, CATEGORIES, MIN_PER_CATEGORY, "records")
    if share(records, is_exact) < MIN_EXACT_SHARE:
        problems.append("too few exact records")
    if share(records, lambda r: r["input"]) < MIN_INPUT_SHARE:
        problems.append("too few records use the input field")
    if share(records, lambda r: r["category"] == "math") > MAX_MATH_SHARE:
        problems.append("too many math records")
    if share(_non_math(records), _is_hand) < MIN_HAND_SHARE_NON_MATH:
        problems.append("too few hand-written non-math records")
    raise_problems(problems)


def check_split(train: list[dict], evals: list[dict]) -> None:
    problems = split_problems(train, evals, CATEGORIES, _key)
    if len(train) < MIN_TRAIN or len(evals) < MIN_EVAL:
        problems.append(f"split sizes {len(train)}/{len(evals)}")
    for name, part in (("train", train), ("eval", evals)):
        if share(part, is_exact) < MIN_EXACT_SHARE:
            problems.append(f"{name}: too few exact records")
    raise_problems(problems)


def stats(train: list[dict], evals: list[dict]) -> dict:
    s = split_stats(train, evals, CATEGORIES, {"input": lambda r: r["input"]})
    every = train + evals
    totals = [_total_words(r) for r in every]
    outs = [words(r["output"]) for r in every]
    return {
        **s,
        "input_share": share(every, lambda r: r["input"]),
        "math_share": s["per_category"]["math"]["total"] / len(every),
        "hand_share_non_math": share(_non_math(every), _is_hand),
        "median_total_words": statistics.median(totals),
        "max_total_words": max(totals),
        "share_total_le_80": sum(t <= 80 for t in totals) / len(totals),
        "share_output_le_40": sum(o <= 40 for o in outs) / len(outs),
        "max_output_words": max(outs),
    }


def render_card(s: dict) -> str:
    """The README.md."""
    rows = "\n".join(
        f"| {c} | {v['train']} | {v['eval']} | {v['total']} | {v['exact']} | {v['input']} "
        f"| {v['hand']} |"
        for c, v in s["per_category"].items()
    )
    exact_total = sum(v["exact"] for v in s["per_category"].values())
    input_total = sum(v["input"] for v in s["per_category"].values())
    hand_total = sum(v["hand"] for v in s["per_category"].values())
    return f"""# Bundled instruction dataset

A small instruction-tuning dataset in Alpaca format that ships with peftlab so the
fine-tuning demo runs offline. It is sized for a 135M chat model trained for a few
minutes on a CPU, so records are short:

- instruction, input and output together: median {s["median_total_words"]:g} words, longest {s["max_total_words"]}; {pct(s["share_total_le_80"])} of records have at most 80 words;
- outputs: {pct(s["share_output_le_40"])} have at most 40 words, longest {s["max_output_words"]}.

**License:** written for this project and released under the Apache-2.0 license,
like the rest of peftlab. It is not derived from Stanford Alpaca or any other
dataset.

## Files

- `train.jsonl` - {s["train"]} records
- `eval.jsonl` - {s["eval"]} records

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
  ({pct(s["hand_share_non_math"])} of them, the "hand-written" column below); the
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
| **all** | {s["train"]} | {s["eval"]} | {s["total"]} | {exact_total} | {input_total} | {hand_total} |

- Exact share: {pct(s["exact_share"])} overall, {pct(s["exact_share_train"])} of train, {pct(s["exact_share_eval"])} of eval.
- Records that use the `input` field: {pct(s["input_share"])}.
- Math share: {pct(s["math_share"])}.
"""


def report(s: dict, out_dir: Path) -> None:
    print(f"wrote {s['train']} train + {s['eval']} eval records to {out_dir}")
    print(
        f"{'category':<11} {'train':>5} {'eval':>5} {'total':>5} {'exact':>5} {'input':>5} {'hand':>5}"
    )
    for c, v in s["per_category"].items():
        print(
            f"{c:<11} {v['train']:>5} {v['eval']:>5} {v['total']:>5} {v['exact']:>5} "
            f"{v['input']:>5} {v['hand']:>5}"
        )
    print(
        f"exact share {pct(s['exact_share'])} (train {pct(s['exact_share_train'])}, "
        f"eval {pct(s['exact_share_eval'])}); input share {pct(s['input_share'])}; "
        f"math share {pct(s['math_share'])}; hand-written non-math "
        f"{pct(s['hand_share_non_math'])}"
    )
    print(
        f"words per record: median {s['median_total_words']:g}, max {s['max_total_words']}, "
        f"<=80: {pct(s['share_total_le_80'])}; outputs <=40 words: "
        f"{pct(s['share_output_le_40'])}, max {s['max_output_words']}"
    )


if __name__ == "__main__":
    sys.exit(dataset_common.main(sys.modules[__name__]))
