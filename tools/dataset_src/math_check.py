"""Independent checker for the generated math records (see ``math_gen.py``).

Each pattern below is matched against ``instruction + "\n" + input``; every math
record must match exactly one.  The numbers are parsed back out of the text and
the answer is recomputed with ``fractions``/``decimal``/``ast`` (the generator uses
plain integer arithmetic), so a mismatch between a question's text and its stored
answer is caught.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from .math_gen import SHOW_WORK

N = r"(-?\d+)"
W = r"([A-Za-z]+)"
D = r"(\d+\.\d)"
_ONLY = r" Give only the number\."

_UNITS = {  # unit -> (dimension, size in a base unit of that dimension)
    "kilometers": ("length", 10**6),
    "meters": ("length", 10**3),
    "centimeters": ("length", 10),
    "millimeters": ("length", 1),
    "yards": ("imperial length", 36),
    "feet": ("imperial length", 12),
    "inches": ("imperial length", 1),
    "kilograms": ("mass", 1000),
    "grams": ("mass", 1),
    "weeks": ("time", 7 * 86400),
    "days": ("time", 86400),
    "hours": ("time", 3600),
    "minutes": ("time", 60),
    "seconds": ("time", 1),
    "years": ("calendar", 12),
    "months": ("calendar", 1),
    "liters": ("volume", 1000),
    "milliliters": ("volume", 1),
}

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate(expr: str) -> Fraction:
    """The exact value of an arithmetic expression of integers, ``+ - * /`` and parentheses
    (also used by tests/test_bundled_chat.py to check the chat dataset's worked steps)."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported expression: {expr!r}")

    return ev(ast.parse(expr, mode="eval"))


def _whole(x) -> str:
    x = Fraction(x)
    if x.denominator != 1:
        raise ValueError(f"not a whole number: {x}")
    return str(x.numerator)


def _one_decimal(x) -> str:
    d = Decimal(x.numerator) / Decimal(x.denominator) if isinstance(x, Fraction) else Decimal(x)
    return str(d.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _convert(k, u_from, u_to):
    (dim_from, size_from), (dim_to, size_to) = _UNITS[u_from], _UNITS[u_to]
    if dim_from != dim_to:
        raise ValueError(f"cannot convert {u_from} to {u_to}")
    return Fraction(int(k) * size_from, size_to)


def _mean(text):
    nums = [Fraction(t) for t in text.split(",")]
    return sum(nums) / len(nums)


def _round_to(x, unit):
    return int(round(Fraction(int(x), unit))) * unit  # ties never generated


_CHECKS = [
    (rf"What is {N} \+ {N}\?{_ONLY}\n", lambda a, b: int(a) + int(b)),
    (rf"Add {N} and {N}\.{_ONLY}\n", lambda a, b: int(a) + int(b)),
    (rf"What is {N} - {N}\?{_ONLY}\n", lambda a, b: int(a) - int(b)),
    (rf"Subtract {N} from {N}\.{_ONLY}\n", lambda b, a: int(a) - int(b)),
    (rf"What is {N} times {N}\?{_ONLY}\n", lambda a, b: int(a) * int(b)),
    (rf"Multiply {N} by {N}\.{_ONLY}\n", lambda a, b: int(a) * int(b)),
    (rf"What is {N} divided by {N}\?{_ONLY}\n", lambda a, b: Fraction(int(a), int(b))),
    (rf"Divide {N} by {N}\.{_ONLY}\n", lambda a, b: Fraction(int(a), int(b))),
    (rf"(?:Calculate the value of|Evaluate) the expression\.{_ONLY}\n([\d ()+\-*/]+)", evaluate),
    (rf"What is {N}% of {N}\?{_ONLY}\n", lambda p, n: Fraction(int(p) * int(n), 100)),
    (rf"Calculate {N} percent of {N}\.{_ONLY}\n", lambda p, n: Fraction(int(p) * int(n), 100)),
    (
        rf"A price of {N} dollars increases by {N}%\. What is the new price in dollars\?{_ONLY}\n",
        lambda n, p: int(n) * (1 + Fraction(int(p), 100)),
    ),
    (
        rf"A {W} costs {N} dollars and is on sale for {N}% off\. "
        rf"What is the sale price in dollars\?{_ONLY}\n",
        lambda _item, n, p: int(n) * (1 - Fraction(int(p), 100)),
    ),
    (
        rf"{N} out of {N} students passed a test\. "
        rf"What percentage of the students passed\?{_ONLY}\n",
        lambda a, b: Fraction(100 * int(a), int(b)),
    ),
    (rf"Convert {N} {W} to {W}\.{_ONLY}\n", lambda k, u1, u2: _convert(k, u1, u2)),
    (rf"How many {W} are there in {N} {W}\?{_ONLY}\n", lambda u1, k, u2: _convert(k, u2, u1)),
    (
        rf"Convert {N} degrees Celsius to degrees Fahrenheit\.{_ONLY}\n",
        lambda c: Fraction(int(c)) * Fraction(9, 5) + 32,
    ),
    (
        rf"Convert {N} degrees Fahrenheit to degrees Celsius\.{_ONLY}\n",
        lambda f: (Fraction(int(f)) - 32) * Fraction(5, 9),
    ),
    (
        rf"{W} has {N} {W} and gets {N} more\. How many \3 does \1 have now\?{_ONLY}\n",
        lambda _n, a, _i, b: int(a) + int(b),
    ),
    (
        rf"{W} had {N} {W} and gave {N} of them to a friend\. "
        rf"How many \3 does \1 have left\?{_ONLY}\n",
        lambda _n, a, _i, b: int(a) - int(b),
    ),
    (
        rf"A box holds {N} {W}\. How many \2 are there in {N} boxes\?{_ONLY}\n",
        lambda a, _i, b: int(a) * int(b),
    ),
    (
        rf"{N} {W} are shared equally among {N} children\. "
        rf"How many \2 does each child get\?{_ONLY}\n",
        lambda t, _i, k: Fraction(int(t), int(k)),
    ),
    (
        rf"A train travels at {N} kilometers per hour for {N} hours\. "
        rf"How many kilometers does it travel\?{_ONLY}\n",
        lambda s, t: int(s) * int(t),
    ),
    (
        rf"One {W} costs {N} dollars\. How much do {N} {W} cost in dollars\?{_ONLY}\n",
        lambda _o, p, n, _m: int(p) * int(n),
    ),
    (
        rf"You buy a book for {N} dollars and pay with a {N}-dollar bill\. "
        rf"How much change do you get in dollars\?{_ONLY}\n",
        lambda c, b: int(b) - int(c),
    ),
    (
        rf"A rectangle is {N} cm wide and {N} cm long\. "
        rf"What is its area in square centimeters\?{_ONLY}\n",
        lambda w, h: int(w) * int(h),
    ),
    (
        rf"A rectangle is {N} cm wide and {N} cm long\. "
        rf"What is its perimeter in centimeters\?{_ONLY}\n",
        lambda w, h: 2 * int(w) + 2 * int(h),
    ),
    (rf"What is the average of these numbers\?{_ONLY}\n([\d, ]+)", _mean),
    (rf"What is {N} squared\?{_ONLY}\n", lambda a: int(a) ** 2),
    (
        rf"What is the square root of {N}\?{_ONLY}\n",
        lambda a: math.isqrt(int(a)) if math.isqrt(int(a)) ** 2 == int(a) else None,
    ),
    (
        rf"What is the remainder when {N} is divided by {N}\?{_ONLY}\n",
        lambda a, b: int(a) - int(b) * (int(a) // int(b)),
    ),
    (rf"What is {N}/{N} of {N}\?{_ONLY}\n", lambda n, d, x: Fraction(int(n), int(d)) * int(x)),
    (rf"Round {N} to the nearest ten\.{_ONLY}\n", lambda x: _round_to(x, 10)),
    (rf"Round {N} to the nearest hundred\.{_ONLY}\n", lambda x: _round_to(x, 100)),
    (
        rf"Which of these numbers is the largest\?{_ONLY}\n([\d, ]+)",
        lambda t: max(int(v) for v in t.split(",")),
    ),
    (
        rf"Which of these numbers is the smallest\?{_ONLY}\n([\d, ]+)",
        lambda t: min(int(v) for v in t.split(",")),
    ),
    (
        rf"What is {D} \+ {D}\? Give the answer with one decimal place\.\n",
        lambda a, b: ("decimal", Decimal(a) + Decimal(b)),
    ),
    (
        rf"What is {N} divided by {N}\? Round the answer to one decimal place\.\n",
        lambda a, b: ("decimal", Fraction(int(a), int(b))),
    ),
    (
        rf"How many minutes are there in {N} hours and {N} minutes\?{_ONLY}\n",
        lambda h, m: _convert(h, "hours", "minutes") + int(m),
    ),
    # show-your-work problems: the checker recomputes the final number
    (
        rf"(?:{'|'.join(map(re.escape, SHOW_WORK))})\n"
        rf"A shop sells pens for {N} dollars each\. How much do {N} pens cost\?",
        lambda p, q: int(p) * int(q),
    ),
    (
        rf"(?:{'|'.join(map(re.escape, SHOW_WORK))})\n"
        rf"{W} buys {N} books at {N} dollars each and a bag for {N} dollars\. "
        rf"How much does \1 spend\?",
        lambda _n, q, p, c: int(q) * int(p) + int(c),
    ),
    (
        rf"(?:{'|'.join(map(re.escape, SHOW_WORK))})\n"
        rf"A bus has {N} seats\. {N} passengers are on the bus\. How many seats are empty\?",
        lambda s, p: int(s) - int(p),
    ),
    (
        rf"(?:{'|'.join(map(re.escape, SHOW_WORK))})\n"
        rf"A baker makes {N} muffins and puts them in boxes of {N}\. "
        rf"How many boxes does the baker fill\?",
        lambda a, b: Fraction(int(a), int(b)),
    ),
    (
        rf"(?:{'|'.join(map(re.escape, SHOW_WORK))})\n"
        rf"A car travels {N} kilometers in {N} hours at a steady speed\. "
        rf"What is its speed in kilometers per hour\?",
        lambda d, t: Fraction(int(d), int(t)),
    ),
    (
        rf"(?:{'|'.join(map(re.escape, SHOW_WORK))})\n"
        rf"{W} saves {N} dollars a week\. How many weeks does it take to save {N} dollars\?",
        lambda _n, s, g: Fraction(int(g), int(s)),
    ),
]
_COMPILED = [(re.compile(p, re.DOTALL), fn) for p, fn in _CHECKS]
_STEP = re.compile(r"(\d+) ([x+\-/]) (\d+) = (\d+)")
_STEP_OPS = {
    "x": operator.mul,
    "+": operator.add,
    "-": operator.sub,
    "/": lambda a, b: Fraction(a, b),
}


def expected_answer(instruction: str, input: str) -> str:
    """Recompute the answer of a math record from its text alone."""
    text = f"{instruction}\n{input}"
    hits = [(m, fn) for pat, fn in _COMPILED if (m := pat.fullmatch(text))]
    if len(hits) != 1:
        raise ValueError(f"{len(hits)} checker patterns match {text!r}")
    m, fn = hits[0]
    try:
        value = fn(*m.groups())
    except (KeyError, ZeroDivisionError) as exc:
        raise ValueError(f"cannot check {text!r}: {exc!r}") from exc
    if value is None:
        raise ValueError(f"cannot check {text!r}")
    if isinstance(value, tuple) and value[0] == "decimal":
        return _one_decimal(value[1])
    return _whole(value)


def check_record(r: dict) -> None:
    """Raise ``ValueError`` unless the math record ``r`` is correct.

    Exact records: the output must equal the recomputed answer.  Show-your-work
    records: every ``a op b = c`` step must be right and the last number in the
    output must be the recomputed answer.
    """
    want = expected_answer(r["instruction"], r["input"])
    out = r["output"]
    if r["exact"]:
        if out != want:
            raise ValueError(f"answer {out!r} != {want!r} for {r['instruction']!r} {r['input']!r}")
        return
    for a, op, b, c in _STEP.findall(out):
        if _STEP_OPS[op](int(a), int(b)) != int(c):
            raise ValueError(f"wrong step {a} {op} {b} = {c} in {out!r}")
    numbers = re.findall(r"-?\d+(?:\.\d+)?", out)
    if not numbers or numbers[-1] != want:
        raise ValueError(f"final number in {out!r} is not {want!r}")
