"""Checks on the bundled chat dataset (src/peftlab/data/bundled/chat_*.jsonl, CHAT.md).

Offline and fast: reads the shipped JSONL files, re-validates their format and
mix, recomputes every math answer with a parser written here (independent of the
generator in tools/chat_src/; arithmetic expressions are evaluated by
tools/dataset_src/math_check.py), recomputes the computed labels, and rebuilds the
files in a subprocess to make sure they are exactly what
tools/build_chat_dataset.py makes.
"""

from __future__ import annotations

import operator
import re
import shutil
import subprocess
import sys
from collections import Counter
from fractions import Fraction

import pytest

from helpers.dataset_checks import (
    BUNDLED,
    TOOLS,
    assert_categories,
    assert_same_files,
    assert_short_answer,
    assert_unique_and_disjoint,
    is_prime,
    share,
    split_fixtures,
    tools_module,
)

BUILD_SCRIPT = TOOLS / "build_chat_dataset.py"
FILES = ("chat_train.jsonl", "chat_eval.jsonl", "CHAT.md")

KEYS = ["messages", "category", "exact"]
CATEGORIES = {"small_talk", "facts", "math", "memory", "rewrite", "advice", "classify", "persona"}
CUE = re.compile(
    r"\b(only|just the|one word|two words|answer with|reply with|yes or no)\b", re.IGNORECASE
)

train, evals, every = split_fixtures("chat_train.jsonl", "chat_eval.jsonl")
evaluate = tools_module("dataset_src.math_check").evaluate


def _users(r: dict) -> list[str]:
    return [m["content"] for m in r["messages"] if m["role"] == "user"]


def _replies(r: dict) -> list[str]:
    return [m["content"] for m in r["messages"] if m["role"] == "assistant"]


def _pairs(r: dict) -> list[tuple[str, str]]:
    return list(zip(_users(r), _replies(r), strict=True))


def _system(r: dict) -> str | None:
    return r["messages"][0]["content"] if r["messages"][0]["role"] == "system" else None


def _key(r: dict) -> str:
    return " ".join("\n".join(_users(r)).lower().split())


def _words(r: dict) -> int:
    return sum(len(m["content"].split()) for m in r["messages"])


def test_counts(train, evals):
    assert len(train) + len(evals) >= 360
    assert 55 <= len(evals) <= 65


def test_schema(every):
    for r in every:
        assert list(r) == KEYS, r
        assert isinstance(r["exact"], bool) and r["category"] in CATEGORIES, r
        msgs = r["messages"]
        assert isinstance(msgs, list) and msgs, r
        for m in msgs:
            assert list(m) == ["role", "content"], r
            c = m["content"]
            assert isinstance(c, str) and c and c == c.strip() and c.isascii(), r
        roles = [m["role"] for m in msgs]
        body = roles[1:] if roles[0] == "system" else roles
        assert len(body) >= 2 and body == ["user", "assistant"] * (len(body) // 2), roles


def test_lengths(every):
    for r in every:
        assert _words(r) <= 120, r
        assert all(len(a.split()) <= 45 for a in _replies(r)), r


def test_shares(train, evals, every):
    assert share(every, lambda r: len(_users(r)) >= 2) >= 0.30
    assert sum(len(_users(r)) >= 3 for r in every) >= 20
    assert share(every, _system) >= 0.20
    assert len({_system(r) for r in every} - {None}) >= 6
    for part in (every, train, evals):
        assert 0.40 <= share(part, lambda r: r["exact"]) <= 0.60


def test_stratification(train, evals):
    assert_categories(train, evals, CATEGORIES, minimum=30, tolerance=0.025)


def test_exact_answers_are_short_and_cued(every):
    for r in (r for r in every if r["exact"]):
        assert_short_answer(_replies(r)[-1], 5, r)
        assert CUE.search(_users(r)[-1]), r


def test_no_duplicates_and_no_overlap(train, evals):
    assert_unique_and_disjoint(train, evals, _key)


# ------------------------------------------------------------------ math re-check
# Sizes in a base unit per dimension (not the generator's factor table).
UNITS = {
    "seconds": ("time", 1),
    "minutes": ("time", 60),
    "hours": ("time", 3600),
    "days": ("time", 86400),
    "weeks": ("time", 604800),
    "millimeters": ("length", 1),
    "centimeters": ("length", 10),
    "meters": ("length", 1000),
    "kilometers": ("length", 1000000),
    "inches": ("imperial", 1),
    "feet": ("imperial", 12),
    "yards": ("imperial", 36),
    "grams": ("mass", 1),
    "kilograms": ("mass", 1000),
    "milliliters": ("volume", 1),
    "liters": ("volume", 1000),
    "months": ("calendar", 1),
    "years": ("calendar", 12),
}
NUMBER_CUES = (
    "Give only the number.",
    "Answer with just the number.",
    "Reply with the number only.",
)
WORK = "Show your work."
WORD_OPS = {
    "plus": operator.add,
    "minus": operator.sub,
    "times": operator.mul,
    "divided by": operator.truediv,
}
STEP = re.compile(r"(\d+(?: [x+\-/] \d+)+) = (\d+)")


def _evaluate(expr: str) -> Fraction:
    """``expr`` as written in the dataset (``x`` for times), evaluated exactly."""
    return evaluate(expr.replace("x", "*"))


def _convert(amount: Fraction, src: str, dst: str) -> Fraction:
    (dim_a, size_a), (dim_b, size_b) = UNITS[src], UNITS[dst]
    if dim_a != dim_b:
        raise ValueError(f"cannot convert {src} to {dst}")
    return amount * size_a / size_b


def _step(question: str, state: dict) -> Fraction:
    """The value a math user turn asks for; ``state`` carries the running context
    (the previous answer, the counted items, the current unit)."""
    v, F = state.get("value"), Fraction

    def have(n, items):
        state["items"] = items
        return F(int(n))

    def more(n, items):
        return v + int(n) if items == state.get("items") else None

    def fewer(n, items):
        return v - int(n) if items == state.get("items") else None

    def how_many(dst, n, src):
        state["unit"] = dst
        return _convert(F(int(n)), src, dst)

    def convert_that(dst):
        value = _convert(v, state["unit"], dst)
        state["unit"] = dst
        return value

    rules = [
        (
            r"What is (\d+) (plus|minus|times|divided by) (\d+)\?",
            lambda a, op, b: WORD_OPS[op](F(int(a)), F(int(b))),
        ),
        (r"What is (\d+(?: [+\-x/] \d+)+)\?", _evaluate),
        (r"Add (\d+) to that\.", lambda n: v + int(n)),
        (r"Now subtract (\d+)\.", lambda n: v - int(n)),
        (r"Multiply that by (\d+)\.", lambda n: v * int(n)),
        (r"Divide that by (\d+)\.", lambda n: v / int(n)),
        (r"Now double it\.", lambda: v * 2),
        (r"Now halve it\.", lambda: v / 2),
        (r"I have (\d+) ([a-z]+)\.", have),
        (r"I (?:buy|find) (\d+) more\. How many ([a-z]+) do I have now\?", more),
        (r"I give (\d+) to a friend\. How many ([a-z]+) do I have left\?", fewer),
        (
            r"I share them equally among (\d+) friends\. How many does each friend get\?",
            lambda k: v / int(k),
        ),
        (r"How many ([a-z]+) are in (\d+) ([a-z]+)\?", how_many),
        (r"Now convert that to ([a-z]+)\.", convert_that),
        (
            r"One ([a-z]+) costs (\d+) dollars\. How much do (\d+) ([a-z]+) cost\?",
            lambda _one, p, k, _many: F(int(p) * int(k)),
        ),
        (r"I pay with a (\d+) dollar bill\. How much change do I get\?", lambda b: int(b) - v),
        (
            r"A box holds (\d+) ([a-z]+)\. How many \2 are in (\d+) boxes\?",
            lambda a, _items, b: F(int(a) * int(b)),
        ),
    ]
    hits = [(m, fn) for pat, fn in rules if (m := re.fullmatch(pat, question))]
    if len(hits) != 1:
        raise ValueError(f"{len(hits)} rules match {question!r}")
    m, fn = hits[0]
    try:
        value = fn(*m.groups())
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        raise ValueError(f"cannot check {question!r}: {exc!r}") from exc
    if value is None or Fraction(value).denominator != 1 or value < 0:
        raise ValueError(f"{question!r} has no whole answer ({value!r})")
    return Fraction(value)


def check_math(r: dict) -> None:
    """Raise ``ValueError`` unless every answer in the math conversation is right."""
    state: dict = {}
    for user, reply in _pairs(r):
        form = next((s for s in (*NUMBER_CUES, WORK) if user.endswith(" " + s)), None)
        question = user[: -len(form) - 1] if form else user
        value = _step(question, state)
        state["value"] = value
        want = str(value.numerator)
        if form in NUMBER_CUES:
            if reply != want:
                raise ValueError(f"{user!r}: reply {reply!r}, expected {want!r}")
            continue
        for lhs, rhs in STEP.findall(reply):
            if _evaluate(lhs) != int(rhs):
                raise ValueError(f"wrong step {lhs} = {rhs} in {reply!r}")
        numbers = re.findall(r"\d+", reply)
        if not numbers or numbers[-1] != want:
            raise ValueError(f"{user!r}: last number in {reply!r} is not {want!r}")


def test_math_answers_recomputed(every):
    maths = [r for r in every if r["category"] == "math"]
    assert len(maths) >= 30
    for r in maths:
        check_math(r)
    assert sum(len(_users(r)) >= 2 for r in maths) / len(maths) >= 0.5
    for r in (r for r in maths if r["exact"]):
        assert re.fullmatch(r"\d+", _replies(r)[-1]), r


def test_math_checker_catches_wrong_answers():
    def conv(*turns):
        return {
            "messages": [
                {"role": role, "content": c}
                for u, a in turns
                for role, c in (("user", u), ("assistant", a))
            ],
            "category": "math",
            "exact": True,
        }

    hours = ("How many minutes are in 3 hours? Give only the number.", "180")
    check_math(conv(hours, ("Now convert that to seconds. Give only the number.", "10800")))
    with pytest.raises(ValueError):
        check_math(conv(hours, ("Now convert that to seconds. Give only the number.", "1080")))
    with pytest.raises(ValueError):  # the unit comes from the earlier turn
        check_math(
            conv(
                ("Now convert that to seconds. Give only the number.", "180"),
            )
        )

    shells = ("I have 12 shells.", "Okay, you have 12 shells.")
    left = "I give 5 to a friend. How many shells do I have left? Give only the number."
    check_math(conv(shells, (left, "7")))
    with pytest.raises(ValueError):
        check_math(conv(shells, (left, "8")))

    question = "What is 4 + 3 x 5? Show your work."
    check_math(conv((question, "Multiply first: 3 x 5 = 15. Then 4 + 15 = 19.")))
    with pytest.raises(ValueError):
        check_math(conv((question, "Multiply first: 3 x 5 = 15. Then 4 + 15 = 20.")))
    with pytest.raises(ValueError):
        check_math(conv((question, "(4 + 3) x 5 = 35.")))


# ------------------------------------------------------------ other computed answers
def test_computed_labels_and_recall(every):
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    seen = Counter()
    for r in every:
        pairs = _pairs(r)
        if re.fullmatch(r"Is \d+ even or odd\? Answer with one word\.", pairs[0][0]):
            for user, reply in pairs:
                n = int(re.search(r"\d+", user).group())
                assert reply == ("even" if n % 2 == 0 else "odd"), r
                seen["parity"] += 1
        for user, reply in pairs:
            m = re.fullmatch(r"Is (\d+) a prime number\? Answer yes or no\.", user)
            if m:
                assert reply == ("yes" if is_prime(int(m.group(1))) else "no"), r
                seen["prime"] += 1
        m = re.fullmatch(r"I am (\d+) years old\.", pairs[0][0])
        if m:
            k = int(re.search(r"in (\d+) years", pairs[-1][0]).group(1))
            assert pairs[-1][1] == str(int(m.group(1)) + k), r
            seen["age"] += 1
        m = re.fullmatch(r"My dentist appointment is on (\w+)\.", pairs[0][0])
        if m:
            shift = 1 if "one day later" in pairs[-1][0] else 2
            assert pairs[-1][1] == days[(days.index(m.group(1)) + shift) % 7], r
            seen["day"] += 1
    assert min(seen[k] for k in ("parity", "prime", "age", "day")) >= 2, seen


def test_system_prompts_shape_the_replies(every):
    rules = [
        ("Reply only in capital letters", lambda t: t == t.upper()),
        ("always reply in exactly three words", lambda t: len(t.split()) == 3),
        ("Give only the final number when asked", lambda t: re.fullmatch(r"\d+", t)),
        ("Answer in one short sentence", lambda t: len(re.findall(r"[.!?](?:\s|$)", t)) == 1),
        ("Keep every reply under ten words", lambda t: len(t.split()) < 10),
        ("with only yes or no", lambda t: t in ("yes", "no")),
        (
            "numbered list of exactly three",
            lambda t: re.fullmatch(r"1\. [^\n]+\n2\. [^\n]+\n3\. [^\n]+", t),
        ),
    ]
    for phrase, ok in rules:
        convs = [r for r in every if phrase in (_system(r) or "")]
        assert convs, phrase
        for r in convs:
            assert all(ok(a) for a in _replies(r)), r
    bikes = [r for r in every if "Sunny Bikes" in (_system(r) or "")]
    assert any(_replies(r)[-1] == "Max" for r in bikes)


# ------------------------------------------------------------ reproducibility
def test_dataset_card(every, train, evals):
    card = (BUNDLED / "CHAT.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in card and "not derived from any other dataset" in card
    assert f"`chat_train.jsonl` - {len(train)} conversations" in card
    assert f"`chat_eval.jsonl` - {len(evals)} conversations" in card


def test_files_match_build_script(tmp_path):
    out = tmp_path / "fresh"
    subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out-dir", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert_same_files(out, FILES, "tools/build_chat_dataset.py")
    # --check notices a stale file.
    stale = tmp_path / "stale"
    shutil.copytree(out, stale)
    (stale / "chat_eval.jsonl").write_text("{}\n", encoding="utf-8")
    res = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--check", "--out-dir", str(stale)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and "chat_eval.jsonl" in res.stdout
