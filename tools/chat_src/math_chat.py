"""math: multi-turn arithmetic where later questions build on earlier answers.

Every conversation is generated from a template with random numbers (fixed seed)
and each answer is computed here in Python.  The tests re-parse every user turn
with an independent parser (``tests/test_bundled_chat.py``) and recompute the
answers, so a question whose text does not match its stored answer is caught.

User-turn grammar (the parser in the tests relies on exactly these phrasings):

- ``What is A plus|minus|times|divided by B?`` and ``What is A + B x C?``
- follow-ups on the previous answer: ``Add N to that.``, ``Now subtract N.``,
  ``Multiply that by N.``, ``Divide that by N.``, ``Now double it.``, ``Now halve it.``
- counting stories: ``I have N ITEMS.``, ``I buy|find N more. How many ITEMS do I
  have now?``, ``I give N to a friend. How many ITEMS do I have left?``, ``I share
  them equally among K friends. How many does each friend get?``
- conversions: ``How many U2 are in N U1?``, ``Now convert that to U3.``
- shopping: ``One ITEM costs P dollars. How much do K ITEMS cost?``, ``I pay with a
  B dollar bill. How much change do I get?``
- word problem: ``A box holds A ITEMS. How many ITEMS are in B boxes?``

each optionally followed by an answer-form cue (``Give only the number.``...) or by
``Show your work.``
"""

from __future__ import annotations

from ._common import MATH_TUTOR, STEP_TUTOR, conv, cycle

CAT = "math"
CUES = ["Give only the number.", "Answer with just the number.", "Reply with the number only."]
WORK = "Show your work."
ITEMS = [
    "apples",
    "marbles",
    "stickers",
    "pencils",
    "cards",
    "shells",
    "stamps",
    "cookies",
    "coins",
    "books",
]
PRICED = [
    ("notebook", "notebooks"),
    ("ticket", "tickets"),
    ("sandwich", "sandwiches"),
    ("pen", "pens"),
    ("mug", "mugs"),
    ("candle", "candles"),
]
# conversion chains: (unit, next unit, factor), each step 1 unit == factor next units
CHAINS = [
    [("hours", "minutes", 60), ("minutes", "seconds", 60)],
    [("days", "hours", 24), ("hours", "minutes", 60)],
    [("weeks", "days", 7), ("days", "hours", 24)],
    [("kilometers", "meters", 1000), ("meters", "centimeters", 100)],
    [("meters", "centimeters", 100), ("centimeters", "millimeters", 10)],
    [("yards", "feet", 3), ("feet", "inches", 12)],
    [("kilograms", "grams", 1000)],
    [("liters", "milliliters", 1000)],
    [("years", "months", 12)],
]
SIGN = {"plus": "+", "minus": "-", "times": "x", "divided by": "/"}


def _ask(text: str, form: str | None) -> str:
    return f"{text} {form}" if form else text


def _start(rng):
    """A first question ``What is A op B?``: (text, value, work line)."""
    op = rng.choice(["plus", "minus", "times", "divided by"])
    if op == "plus":
        a, b = rng.randint(12, 90), rng.randint(12, 90)
        v = a + b
    elif op == "minus":
        a = rng.randint(30, 99)
        b = rng.randint(5, a - 5)
        v = a - b
    elif op == "times":
        a, b = rng.randint(3, 15), rng.randint(3, 12)
        v = a * b
    else:
        b, v = rng.randint(2, 9), rng.randint(3, 15)
        a = b * v
    return f"What is {a} {op} {b}?", v, f"{a} {SIGN[op]} {b} = {v}."


def _follow(rng, v):
    """A follow-up on the previous answer ``v``: (text, new value, work line)."""
    divisors = [d for d in range(2, 10) if v % d == 0 and v // d > 1]
    kinds = (
        ["add", "mul", "double"]
        + (["sub"] if v > 3 else [])
        + (["div"] if divisors else [])
        + (["halve"] if v % 2 == 0 else [])
    )
    kind = rng.choice(kinds)
    if kind == "add":
        n = rng.randint(3, 40)
        return f"Add {n} to that.", v + n, f"{v} + {n} = {v + n}."
    if kind == "sub":
        n = rng.randint(1, v - 2)
        return f"Now subtract {n}.", v - n, f"{v} - {n} = {v - n}."
    if kind == "mul":
        n = rng.randint(2, 5)
        return f"Multiply that by {n}.", v * n, f"{v} x {n} = {v * n}."
    if kind == "double":
        return "Now double it.", 2 * v, f"{v} x 2 = {2 * v}."
    if kind == "div":
        n = rng.choice(divisors)
        return f"Divide that by {n}.", v // n, f"{v} / {n} = {v // n}."
    return "Now halve it.", v // 2, f"{v} / 2 = {v // 2}."


def chain(rng, n_turns: int, form_of) -> list[tuple[str, str]]:
    """``form_of(i)`` gives the suffix of turn i: a cue (bare answer) or WORK."""
    text, v, work = _start(rng)
    turns = []
    for i in range(n_turns):
        if i:
            text, v, work = _follow(rng, v)
        form = form_of(i)
        turns.append((_ask(text, form), work if form in (WORK, None) else str(v)))
    return turns


def story(rng, n_questions: int, i: int) -> list[tuple[str, str]]:
    items = cycle(ITEMS, i)
    v = rng.randint(8, 40)
    turns = [(f"I have {v} {items}.", f"Okay, you have {v} {items}.")]
    for q in range(n_questions):
        cue = cycle(CUES, i + q)
        last = q == n_questions - 1
        share = [k for k in (2, 3, 4, 5) if v % k == 0 and v // k > 1]
        if last and share and rng.random() < 0.5:
            k = rng.choice(share)
            text = f"I share them equally among {k} friends. How many does each friend get?"
            v //= k
        elif rng.random() < 0.5 and v > 6:
            n = rng.randint(2, v - 3)
            text = f"I give {n} to a friend. How many {items} do I have left?"
            v -= n
        else:
            n = rng.randint(2, 25)
            verb = rng.choice(["buy", "find"])
            text = f"I {verb} {n} more. How many {items} do I have now?"
            v += n
        turns.append((f"{text} {cue}", str(v)))
    return turns


def convert(rng, steps: int, i: int, chain_=None) -> list[tuple[str, str]]:
    chain_ = chain_ or cycle(CHAINS, i)
    (u1, u2, f1) = chain_[0]
    n = rng.randint(2, 9)
    v = n * f1
    turns = [(f"How many {u2} are in {n} {u1}? {cycle(CUES, i)}", str(v))]
    if steps > 1 and len(chain_) > 1:
        (_, u3, f2) = chain_[1]
        v *= f2
        turns.append((f"Now convert that to {u3}. {cycle(CUES, i + 1)}", str(v)))
    return turns


def shop(rng, i: int) -> list[tuple[str, str]]:
    one, many = cycle(PRICED, i)
    p, k = rng.randint(2, 9), rng.randint(2, 6)
    total = p * k
    bill = next(b for b in (20, 50, 100) if b > total)
    return [
        (f"One {one} costs {p} dollars. How much do {k} {many} cost? {cycle(CUES, i)}", str(total)),
        (
            f"I pay with a {bill} dollar bill. How much change do I get? {cycle(CUES, i + 1)}",
            str(bill - total),
        ),
    ]


def precedence(rng) -> tuple[str, str]:
    a, b, c = rng.randint(2, 20), rng.randint(2, 9), rng.randint(2, 9)
    return (
        f"What is {a} + {b} x {c}?",
        f"Multiply first: {b} x {c} = {b * c}. Then {a} + {b * c} = {a + b * c}.",
    )


def boxes(rng, i: int) -> tuple[str, str]:
    items = cycle(["eggs", "crayons", "cupcakes", "bottles"], i)
    a, b = rng.randint(4, 12), rng.randint(3, 9)
    return (
        f"A box holds {a} {items}. How many {items} are in {b} boxes? {WORK}",
        f"{b} x {a} = {a * b}, so there are {a * b} {items}.",
    )


def records(rng) -> list[dict]:
    out = []

    def add(turns, exact, system=None):
        out.append(conv(turns, CAT, exact, system=system, origin="template"))

    # Arithmetic chains with bare answers: 1 to 3 user turns.
    for i in range(16):
        add(chain(rng, [1, 2, 2, 3][i % 4], lambda t, i=i: cycle(CUES, i + t)), True)
    # Counting stories: a statement, then one or two questions.
    for i in range(10):
        add(story(rng, 1 + i % 2, i), True)
    # Unit conversions, then "now convert that to ...".
    for i in range(8):
        add(convert(rng, 1 if i < 2 else 2, i), True)
    # Shopping: total, then change.
    for i in range(5):
        add(shop(rng, i), True)
    # A math-tutor system prompt: bare numbers only.
    for i in range(3):
        add(chain(rng, 2 + i % 2, lambda t, i=i: cycle(CUES, i + t)), True, MATH_TUTOR)
    add(convert(rng, 2, 0, CHAINS[1]), True, MATH_TUTOR)
    add(convert(rng, 2, 1, CHAINS[5]), True, MATH_TUTOR)
    add(shop(rng, 3), True, MATH_TUTOR)
    # Show-your-work answers.
    for i in range(4):
        add(chain(rng, 1 + i % 2, lambda t: WORK), False)
    for _ in range(3):
        q, a = precedence(rng)
        add([(f"{q} {WORK}", a)], False)
    for i in range(3):
        add([boxes(rng, i)], False)
    # A step-by-step tutor system prompt: the steps are shown without being asked for.
    for _ in range(3):
        add([precedence(rng)], False, STEP_TUTOR)
    for _ in range(3):
        add(chain(rng, 2, lambda t: None), False, STEP_TUTOR)
    return out
