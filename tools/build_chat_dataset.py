#!/usr/bin/env python
"""Build peftlab's bundled chat dataset (OpenAI chat format).

The conversations come from ``tools/chat_src/`` (one module per category, with
the shared system prompts and their style rules in ``chat_src/_common.py``); the
build writes ``chat_train.jsonl``, ``chat_eval.jsonl`` and ``CHAT.md`` into
``src/peftlab/data/bundled/``.  This script holds the rules, statistics and card;
the build itself and the command line are in ``dataset_common.py``.  Standard
library only.

Usage: ``python tools/build_chat_dataset.py [--check] [--out-dir DIR]``
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import Counter
from pathlib import Path

import dataset_common
from chat_src._common import STYLE_RULES
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

SEED = 20250214
EVAL_SIZE = 60
CATEGORIES = ("small_talk", "facts", "math", "memory", "rewrite", "advice", "classify", "persona")
KEYS = ("messages", "category", "exact")
FILES = ("chat_train.jsonl", "chat_eval.jsonl", "CHAT.md")

# Hard limits and targets (the build fails if any is violated).
MAX_CONV_WORDS = 120
MAX_ASSISTANT_WORDS = 45
MAX_EXACT_ANSWER_WORDS = 5
MIN_TOTAL = 360
MIN_PER_CATEGORY = 30
MIN_EXACT_SHARE, MAX_EXACT_SHARE = 0.40, 0.60
MIN_MULTI_SHARE = 0.30  # conversations with at least two user turns
MIN_THREE_TURN = 20  # conversations with at least three user turns
MIN_SYSTEM_SHARE = 0.20
MIN_SYSTEM_PROMPTS = 8  # distinct system prompts
# An exact conversation's final user message has to say what form the answer takes.
EXACT_CUE = re.compile(
    r"\b(only|just the|one word|two words|answer with|reply with|"
    r"yes or no)\b",
    re.IGNORECASE,
)

# What dataset_common needs besides the above: the name its messages use and
# the package the records come from.
TITLE = "bundled chat dataset"
SOURCE = "chat_src"


def system_prompt(r: dict) -> str | None:
    m = r["messages"][0]
    return m["content"] if m["role"] == "system" else None


def user_turns(r: dict) -> list[str]:
    return [m["content"] for m in r["messages"] if m["role"] == "user"]


def assistant_turns(r: dict) -> list[str]:
    return [m["content"] for m in r["messages"] if m["role"] == "assistant"]


def conv_words(r: dict) -> int:
    return sum(words(m["content"]) for m in r["messages"])


def is_multi_turn(r: dict) -> bool:
    return len(user_turns(r)) >= 2


def has_system(r: dict) -> bool:
    return system_prompt(r) is not None


def key(r: dict) -> str:
    """Duplicate key: the user turns, concatenated, case- and whitespace-normalised."""
    return " ".join("\n".join(user_turns(r)).lower().split())


def _check_messages(msgs) -> list[str]:
    problems = []
    if not isinstance(msgs, list) or not msgs:
        return ["messages is not a non-empty list"]
    for m in msgs:
        if not isinstance(m, dict) or list(m) != ["role", "content"]:
            return [f"bad message {m!r}"]
        c = m["content"]
        if not isinstance(c, str) or not c or c != c.strip():
            problems.append(f"empty or unstripped content {c!r}")
        elif not c.isascii():
            problems.append(f"non-ASCII content {c!r}")
    roles = [m["role"] for m in msgs]
    body = roles[1:] if roles[0] == "system" else roles
    if not body or len(body) % 2 or body != ["user", "assistant"] * (len(body) // 2):
        problems.append(f"roles {roles} do not alternate user/assistant ending with assistant")
    return problems


def validate(records: list[dict]) -> None:
    problems = []
    seen: dict[str, int] = {}
    for i, r in enumerate(records):
        msgs = r.get("messages") if isinstance(r.get("messages"), list) else []
        first = next(
            (
                str(m.get("content"))
                for m in msgs
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            "",
        )
        where = f"conversation {i} ({r.get('category')}: {first[:50]!r})"
        if list(r) != [*KEYS, "origin"]:
            problems.append(f"{where}: keys {list(r)}")
            continue
        if r["category"] not in CATEGORIES:
            problems.append(f"{where}: unknown category")
        if not isinstance(r["exact"], bool):
            problems.append(f"{where}: exact is not a bool")
        msg_problems = _check_messages(r["messages"])
        if msg_problems:
            problems += [f"{where}: {p}" for p in msg_problems]
            continue
        if conv_words(r) > MAX_CONV_WORDS:
            problems.append(f"{where}: {conv_words(r)} words in total")
        for a in assistant_turns(r):
            if words(a) > MAX_ASSISTANT_WORDS:
                problems.append(f"{where}: assistant message of {words(a)} words")
        if r["exact"]:
            problems += [
                f"{where}: {p}"
                for p in exact_answer_problems(
                    assistant_turns(r)[-1], MAX_EXACT_ANSWER_WORDS, user_turns(r)[-1], EXACT_CUE
                )
            ]
        system = system_prompt(r)
        if system in STYLE_RULES:
            what, ok = STYLE_RULES[system]
            bad = [a for a in assistant_turns(r) if not ok(a)]
            if bad:
                problems.append(f"{where}: system prompt asks for {what}, reply {bad[0]!r}")
        k = key(r)
        if k in seen:
            problems.append(f"{where}: duplicate user turns of conversation {seen[k]}")
        seen[k] = i
    raise_problems(problems, "invalid conversations")


def _exact_share_ok(records: list[dict]) -> bool:
    return MIN_EXACT_SHARE <= share(records, is_exact) <= MAX_EXACT_SHARE


def check_mix(records: list[dict]) -> None:
    n = len(records)
    problems = category_problems(records, CATEGORIES, MIN_PER_CATEGORY, "conversations")
    if n < MIN_TOTAL:
        problems.append(f"only {n} conversations")
    if not _exact_share_ok(records):
        problems.append(f"exact share {share(records, is_exact):.3f}")
    if share(records, is_multi_turn) < MIN_MULTI_SHARE:
        problems.append("too few multi-turn conversations")
    if sum(len(user_turns(r)) >= 3 for r in records) < MIN_THREE_TURN:
        problems.append("too few conversations with three user turns")
    systems = [system_prompt(r) for r in records if system_prompt(r)]
    if len(systems) / n < MIN_SYSTEM_SHARE:
        problems.append("too few conversations with a system prompt")
    if len(set(systems)) < MIN_SYSTEM_PROMPTS:
        problems.append("too few distinct system prompts")
    raise_problems(problems)


def check_split(train: list[dict], evals: list[dict]) -> None:
    problems = split_problems(train, evals, CATEGORIES, key)
    if len(evals) != EVAL_SIZE:
        problems.append(f"eval has {len(evals)} conversations")
    for name, part in (("train", train), ("eval", evals)):
        if not _exact_share_ok(part):
            problems.append(f"{name}: exact share {share(part, is_exact):.3f}")
        if not any(map(is_multi_turn, part)) or not any(map(system_prompt, part)):
            problems.append(f"{name}: no multi-turn or no system-prompt conversations")
    raise_problems(problems)


def stats(train: list[dict], evals: list[dict]) -> dict:
    s = split_stats(train, evals, CATEGORIES, {"multi": is_multi_turn, "system": has_system})
    every = train + evals
    totals = [conv_words(r) for r in every]
    replies = [words(a) for r in every for a in assistant_turns(r)]
    turns = Counter(len(user_turns(r)) for r in every)
    return {
        **s,
        "multi_share": share(every, is_multi_turn),
        "user_turns": dict(sorted(turns.items())),
        "system_share": share(every, has_system),
        "system_prompts": len({system_prompt(r) for r in every} - {None}),
        "hand_share": share(every, lambda r: r["origin"] == "hand"),
        "median_conv_words": statistics.median(totals),
        "max_conv_words": max(totals),
        "median_reply_words": statistics.median(replies),
        "max_reply_words": max(replies),
        "messages": sum(len(r["messages"]) for r in every),
    }


def render_card(s: dict) -> str:
    """The CHAT.md card."""
    rows = "\n".join(
        f"| {c} | {v['train']} | {v['eval']} | {v['total']} | {v['exact']} | {v['multi']} "
        f"| {v['system']} | {v['hand']} |"
        for c, v in s["per_category"].items()
    )
    col = {
        k: sum(v[k] for v in s["per_category"].values())
        for k in ("exact", "multi", "system", "hand")
    }
    turns = ", ".join(
        f"{k} user turn{'s' if k > 1 else ''}: {v}" for k, v in s["user_turns"].items()
    )
    return f"""# Bundled chat dataset

A small conversation dataset in OpenAI chat format that ships with peftlab so the
chat fine-tuning demo runs offline. It is sized for a 135M-parameter chat model
trained for a few minutes on a CPU, so conversations are short.

**License:** written for this project and released under the Apache-2.0 license,
like the rest of peftlab. It is not derived from any other dataset.

## Files

- `chat_train.jsonl` - {s["train"]} conversations
- `chat_eval.jsonl` - {s["eval"]} conversations

One JSON object per line, with exactly these keys, in this order:

| key | type | meaning |
|---|---|---|
| `messages` | list of `{{"role", "content"}}` | an optional leading `system` message, then strictly alternating `user` / `assistant` messages, starting with `user` and ending with `assistant`; every `content` is a non-empty, stripped ASCII string |
| `category` | str | one of {", ".join(f"`{c}`" for c in CATEGORIES)} |
| `exact` | bool | `true` when the final assistant message is a single short answer (a number, label, name, word or short phrase of at most {MAX_EXACT_ANSWER_WORDS} words, without trailing punctuation) that can be checked by string comparison after lower-casing and stripping trailing punctuation and whitespace; the final user message then states the expected form (for example "Give only the number." or "Answer with one word.") |

Many exact conversations need the earlier turns: the user gives a name, a number
or a shopping list and asks for it later, arithmetic continues from the previous
answer ("Now convert that to seconds."), or a follow-up refers back ("And its
capital?"). System prompts change the answers: a persona or a shop assistant
whose name, hours and prices appear only in the system prompt, capital letters,
exactly three words, one short sentence, bare numbers, numbered lists.

## How it was built

`python tools/build_chat_dataset.py` assembles the conversations from
`tools/chat_src/` (one module per category), validates them and writes these
files; it is deterministic (seed {SEED}), and `python tools/build_chat_dataset.py
--check` verifies that the shipped files are up to date.

- Small talk, advice, rewrites, personas and sentiment texts are written by hand
  ({pct(s["hand_share"])} of all conversations, the "hand-written" column below).
- Facts come from small tables written in `tools/chat_src/facts.py` (capitals,
  main languages, continents, chemical symbols and atomic numbers, planet order,
  book authors, opposites, plurals and past tenses); memory conversations fill
  templates from small tables and put an unrelated exchange between the fact and
  the question; even/odd and prime labels are computed in Python.
- Math conversations are generated from templates with random numbers, and every
  answer is computed in Python. `tests/test_bundled_chat.py` parses every math user
  turn again with an independent parser, recomputes each answer and checks every
  `a op b = c` step shown in a reply.
- The build rejects duplicate conversations (same user turns, ignoring case and
  whitespace), conversations over {MAX_CONV_WORDS} words, assistant messages over
  {MAX_ASSISTANT_WORDS} words, exact answers that are not short or end in
  punctuation, exact conversations whose final user message does not state the
  answer form, and replies that break the style their system prompt asks for
  (for example capital letters or exactly three words).
- The train/eval split is stratified by category and by `exact`, so every
  category appears in both files in similar proportion; no conversation is in
  both.

## Counts

| category | train | eval | total | exact | multi-turn | system prompt | hand-written |
|---|---|---|---|---|---|---|---|
{rows}
| **all** | {s["train"]} | {s["eval"]} | {s["total"]} | {col["exact"]} | {col["multi"]} | {col["system"]} | {col["hand"]} |

- Exact share: {pct(s["exact_share"])} overall, {pct(s["exact_share_train"])} of train, {pct(s["exact_share_eval"])} of eval.
- Multi-turn share (at least two user turns): {pct(s["multi_share"])} ({turns}).
- System-prompt share: {pct(s["system_share"])}, with {s["system_prompts"]} distinct system prompts.
- Words per conversation (all messages, system prompt included): median {s["median_conv_words"]:g}, longest {s["max_conv_words"]}.
- Words per assistant message: median {s["median_reply_words"]:g}, longest {s["max_reply_words"]}.
- Messages in all: {s["messages"]}.
"""


def report(s: dict, out_dir: Path) -> None:
    print(f"wrote {s['train']} train + {s['eval']} eval conversations to {out_dir}\n")
    print(render_card(s).split("## Counts\n\n", 1)[1].rstrip())  # the card's counts section


if __name__ == "__main__":
    sys.exit(dataset_common.main(sys.modules[__name__]))
