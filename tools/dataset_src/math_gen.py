"""math: arithmetic, percentages, unit conversions and word problems.

Every record is generated from a template with random numbers (fixed seed) and its
answer is computed in Python.  ``math_check.py`` holds an independent checker that
re-parses each record's text and recomputes the answer another way; the build script
and the tests run it over every math record.
"""

from __future__ import annotations

from fractions import Fraction
from math import gcd

from ._common import rec

CAT = "math"
ONLY = "Give only the number."

NAMES = ["Sam", "Lena", "Omar", "Mia", "Ravi", "Nora", "Leo", "Ava", "Ken", "Ines"]
ITEMS = ["apples", "marbles", "stickers", "pencils", "cards", "shells", "stamps", "cookies"]
PRODUCTS = ["jacket", "lamp", "bicycle", "backpack", "kettle", "guitar"]
PRICED = [
    ("notebook", "notebooks"),
    ("ticket", "tickets"),
    ("sandwich", "sandwiches"),
    ("pen", "pens"),
    ("mug", "mugs"),
]
# (from_unit, to_unit, factor): 1 from_unit == factor to_unit
CONVERSIONS = [
    ("kilometers", "meters", 1000),
    ("meters", "centimeters", 100),
    ("centimeters", "millimeters", 10),
    ("kilograms", "grams", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("liters", "milliliters", 1000),
    ("feet", "inches", 12),
    ("yards", "feet", 3),
    ("years", "months", 12),
]


def _int(x) -> str:
    """Format an integer answer plainly (refuses anything that is not a whole number)."""
    if isinstance(x, float) or Fraction(x).denominator != 1:
        raise ValueError(f"non-integer answer: {x!r}")
    return str(int(x))


# ---------------------------------------------------------------- generators
# Each returns (instruction, input, output, exact).


def g_add(rng):
    a, b = rng.randint(12, 999), rng.randint(12, 999)
    q = rng.choice([f"What is {a} + {b}? {ONLY}", f"Add {a} and {b}. {ONLY}"])
    return q, "", _int(a + b), True


def g_sub(rng):
    a = rng.randint(50, 999)
    b = rng.randint(10, a - 1)
    q = rng.choice([f"What is {a} - {b}? {ONLY}", f"Subtract {b} from {a}. {ONLY}"])
    return q, "", _int(a - b), True


def g_mul(rng):
    a, b = rng.randint(3, 25), rng.randint(3, 25)
    q = rng.choice([f"What is {a} times {b}? {ONLY}", f"Multiply {a} by {b}. {ONLY}"])
    return q, "", _int(a * b), True


def g_div(rng):
    b, quotient = rng.randint(2, 12), rng.randint(3, 30)
    p = b * quotient
    q = rng.choice([f"What is {p} divided by {b}? {ONLY}", f"Divide {p} by {b}. {ONLY}"])
    return q, "", _int(quotient), True


def g_expr(rng):
    kind = rng.randrange(5)
    a, b, c = rng.randint(2, 20), rng.randint(2, 12), rng.randint(2, 12)
    if kind == 0:
        expr, val = f"{a} + {b} * {c}", a + b * c
    elif kind == 1:
        expr, val = f"({a} + {b}) * {c}", (a + b) * c
    elif kind == 2:
        a = rng.randint(b * c + 1, b * c + 40)
        expr, val = f"{a} - {b} * {c}", a - b * c
    elif kind == 3:
        expr, val = f"{a * b} / {b} + {c}", a + c
    else:
        a = a + b
        expr, val = f"{a} - {b} + {c}", a - b + c
    q = rng.choice(
        [f"Calculate the value of the expression. {ONLY}", f"Evaluate the expression. {ONLY}"]
    )
    return q, expr, _int(val), True


def _percent_base(rng, p, lo=20, hi=900):
    step = 100 // gcd(p, 100)
    return step * rng.randint(max(1, lo // step), max(1, hi // step))


def g_percent_of(rng):
    p = rng.choice([5, 10, 15, 20, 25, 30, 40, 50, 60, 75])
    n = _percent_base(rng, p)
    q = rng.choice([f"What is {p}% of {n}? {ONLY}", f"Calculate {p} percent of {n}. {ONLY}"])
    return q, "", _int(p * n // 100), True


def g_increase(rng):
    p = rng.choice([5, 10, 20, 25, 50])
    n = _percent_base(rng, p, 20, 400)
    q = f"A price of {n} dollars increases by {p}%. What is the new price in dollars? {ONLY}"
    return q, "", _int(n + p * n // 100), True


def g_discount(rng):
    p = rng.choice([10, 20, 25, 30, 40, 50])
    n = _percent_base(rng, p, 20, 400)
    item = rng.choice(PRODUCTS)
    q = (
        f"A {item} costs {n} dollars and is on sale for {p}% off. "
        f"What is the sale price in dollars? {ONLY}"
    )
    return q, "", _int(n - p * n // 100), True


def g_percent_rate(rng):
    b = rng.choice([20, 25, 40, 50, 200])
    step = b // gcd(b, 100)
    a = step * rng.randint(1, b // step - 1)
    q = f"{a} out of {b} students passed a test. What percentage of the students passed? {ONLY}"
    return q, "", _int(100 * a // b), True


def g_convert(rng):
    u1, u2, f = rng.choice(CONVERSIONS)
    k = rng.randint(2, 15)
    if rng.random() < 0.5:
        return f"Convert {k} {u1} to {u2}. {ONLY}", "", _int(k * f), True
    return f"How many {u1} are there in {k * f} {u2}? {ONLY}", "", _int(k), True


def g_temperature(rng):
    if rng.random() < 0.6:
        c = 5 * rng.randint(-8, 20)
        q = f"Convert {c} degrees Celsius to degrees Fahrenheit. {ONLY}"
        return q, "", _int(c * 9 // 5 + 32), True
    k = rng.randint(-4, 12)
    f = 32 + 9 * k
    q = f"Convert {f} degrees Fahrenheit to degrees Celsius. {ONLY}"
    return q, "", _int(5 * k), True


def g_word_add(rng):
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(5, 60), rng.randint(3, 40)
    q = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now? {ONLY}"
    return q, "", _int(a + b), True


def g_word_sub(rng):
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a = rng.randint(15, 80)
    b = rng.randint(2, a - 3)
    q = (
        f"{name} had {a} {item} and gave {b} of them to a friend. "
        f"How many {item} does {name} have left? {ONLY}"
    )
    return q, "", _int(a - b), True


def g_word_mul(rng):
    item = rng.choice(ITEMS)
    a, b = rng.randint(4, 24), rng.randint(3, 15)
    q = f"A box holds {a} {item}. How many {item} are there in {b} boxes? {ONLY}"
    return q, "", _int(a * b), True


def g_word_div(rng):
    item = rng.choice(ITEMS)
    k, each = rng.randint(2, 9), rng.randint(3, 15)
    q = (
        f"{k * each} {item} are shared equally among {k} children. "
        f"How many {item} does each child get? {ONLY}"
    )
    return q, "", _int(each), True


def g_speed(rng):
    s, t = 10 * rng.randint(4, 12), rng.randint(2, 6)
    q = (
        f"A train travels at {s} kilometers per hour for {t} hours. "
        f"How many kilometers does it travel? {ONLY}"
    )
    return q, "", _int(s * t), True


def g_cost(rng):
    one, many = rng.choice(PRICED)
    p, n = rng.randint(2, 15), rng.randint(3, 12)
    q = f"One {one} costs {p} dollars. How much do {n} {many} cost in dollars? {ONLY}"
    return q, "", _int(p * n), True


def g_change(rng):
    bill = rng.choice([20, 50, 100])
    c = rng.randint(3, bill - 1)
    q = (
        f"You buy a book for {c} dollars and pay with a {bill}-dollar bill. "
        f"How much change do you get in dollars? {ONLY}"
    )
    return q, "", _int(bill - c), True


def g_area(rng):
    w, h = rng.randint(3, 20), rng.randint(3, 20)
    q = (
        f"A rectangle is {w} cm wide and {h} cm long. "
        f"What is its area in square centimeters? {ONLY}"
    )
    return q, "", _int(w * h), True


def g_perimeter(rng):
    w, h = rng.randint(3, 30), rng.randint(3, 30)
    q = f"A rectangle is {w} cm wide and {h} cm long. What is its perimeter in centimeters? {ONLY}"
    return q, "", _int(2 * (w + h)), True


def g_average(rng):
    n = rng.randint(3, 5)
    while True:
        nums = [rng.randint(2, 99) for _ in range(n)]
        if sum(nums) % n == 0:
            break
    q = f"What is the average of these numbers? {ONLY}"
    return q, ", ".join(map(str, nums)), _int(sum(nums) // n), True


def g_square(rng):
    a = rng.randint(2, 30)
    if rng.random() < 0.5:
        return f"What is {a} squared? {ONLY}", "", _int(a * a), True
    return f"What is the square root of {a * a}? {ONLY}", "", _int(a), True


def g_remainder(rng):
    b = rng.randint(3, 12)
    while True:
        a = rng.randint(20, 200)
        if a % b:
            break
    q = f"What is the remainder when {a} is divided by {b}? {ONLY}"
    return q, "", _int(a % b), True


def g_fraction_of(rng):
    n, d = rng.choice([(1, 2), (1, 3), (1, 4), (3, 4), (2, 3), (1, 5), (2, 5), (3, 5), (1, 10)])
    x = d * rng.randint(2, 30)
    return f"What is {n}/{d} of {x}? {ONLY}", "", _int(x // d * n), True


def g_round(rng):
    if rng.random() < 0.5:
        while True:
            x = rng.randint(101, 9999)
            if x % 10 != 5:
                break
        return f"Round {x} to the nearest ten. {ONLY}", "", _int((x + 5) // 10 * 10), True
    while True:
        x = rng.randint(101, 9999)
        if x % 100 != 50:
            break
    return f"Round {x} to the nearest hundred. {ONLY}", "", _int((x + 50) // 100 * 100), True


def g_extreme(rng):
    nums = rng.sample(range(10, 1000), 5)
    if rng.random() < 0.5:
        return (
            f"Which of these numbers is the largest? {ONLY}",
            ", ".join(map(str, nums)),
            _int(max(nums)),
            True,
        )
    return (
        f"Which of these numbers is the smallest? {ONLY}",
        ", ".join(map(str, nums)),
        _int(min(nums)),
        True,
    )


def _tenths(t: int) -> str:
    return f"{t // 10}.{t % 10}"


def g_decimal_add(rng):
    while True:
        a, b = rng.randint(11, 999), rng.randint(11, 999)  # in tenths
        if a % 10 and b % 10 and (a + b) % 10:
            break
    q = f"What is {_tenths(a)} + {_tenths(b)}? Give the answer with one decimal place."
    return q, "", _tenths(a + b), True


def g_divide_round(rng):
    while True:
        a, b = rng.randint(10, 200), rng.choice([3, 6, 7, 8, 9, 11, 12])
        num, den = 10 * a, b  # value in tenths = num / den
        twice_rem = 2 * (num % den)
        if num % den == 0 or twice_rem == den:  # exact or a rounding tie: skip
            continue
        t = num // den + (1 if twice_rem > den else 0)
        if t % 10:  # avoid answers like "7.0"
            break
    q = f"What is {a} divided by {b}? Round the answer to one decimal place."
    return q, "", _tenths(t), True


def g_minutes(rng):
    h, m = rng.randint(2, 9), rng.randint(2, 59)
    q = f"How many minutes are there in {h} hours and {m} minutes? {ONLY}"
    return q, "", _int(60 * h + m), True


SHOW_WORK = [
    "Solve the problem and briefly show your work.",
    "Solve this word problem. Show your steps briefly.",
]


def g_show_work(rng):
    kind = rng.randrange(6)
    name = rng.choice(NAMES)
    if kind == 0:
        p, q = rng.randint(2, 9), rng.randint(3, 12)
        text = f"A shop sells pens for {p} dollars each. How much do {q} pens cost?"
        out = f"{q} x {p} = {q * p}, so the pens cost {q * p} dollars."
    elif kind == 1:
        q, p, c = rng.randint(2, 6), rng.randint(5, 20), rng.randint(2, 15)
        text = (
            f"{name} buys {q} books at {p} dollars each and a bag for {c} dollars. "
            f"How much does {name} spend?"
        )
        out = f"Books: {q} x {p} = {q * p} dollars. Total: {q * p} + {c} = {q * p + c} dollars."
    elif kind == 2:
        s = rng.randint(30, 60)
        p = rng.randint(5, s - 1)
        text = f"A bus has {s} seats. {p} passengers are on the bus. How many seats are empty?"
        out = f"{s} - {p} = {s - p}, so {s - p} seats are empty."
    elif kind == 3:
        b, r = rng.choice([4, 6, 8, 12]), rng.randint(3, 15)
        text = (
            f"A baker makes {b * r} muffins and puts them in boxes of {b}. "
            f"How many boxes does the baker fill?"
        )
        out = f"{b * r} / {b} = {r}, so the baker fills {r} boxes."
    elif kind == 4:
        t, v = rng.randint(2, 6), 5 * rng.randint(8, 24)
        text = (
            f"A car travels {t * v} kilometers in {t} hours at a steady speed. "
            f"What is its speed in kilometers per hour?"
        )
        out = f"{t * v} / {t} = {v}, so the speed is {v} kilometers per hour."
    else:
        s, r = 5 * rng.randint(2, 10), rng.randint(3, 20)
        text = (
            f"{name} saves {s} dollars a week. How many weeks does it take to save {s * r} dollars?"
        )
        out = f"{s * r} / {s} = {r}, so it takes {r} weeks."
    return rng.choice(SHOW_WORK), text, out, False


GENERATORS = [
    (g_add, 7),
    (g_sub, 7),
    (g_mul, 7),
    (g_div, 7),
    (g_expr, 8),
    (g_percent_of, 7),
    (g_increase, 5),
    (g_discount, 6),
    (g_percent_rate, 5),
    (g_convert, 12),
    (g_temperature, 5),
    (g_word_add, 5),
    (g_word_sub, 5),
    (g_word_mul, 5),
    (g_word_div, 5),
    (g_speed, 5),
    (g_cost, 5),
    (g_change, 5),
    (g_area, 5),
    (g_perimeter, 4),
    (g_average, 6),
    (g_square, 5),
    (g_remainder, 5),
    (g_fraction_of, 6),
    (g_round, 6),
    (g_extreme, 5),
    (g_decimal_add, 5),
    (g_divide_round, 5),
    (g_minutes, 4),
    (g_show_work, 12),
]


def records(rng):
    out, seen = [], set()
    for gen, count in GENERATORS:
        made = attempts = 0
        while made < count:
            attempts += 1
            if attempts > 1000:
                raise RuntimeError(f"{gen.__name__}: cannot make {count} distinct records")
            instruction, inp, output, exact = gen(rng)
            if (instruction, inp) in seen:
                continue
            seen.add((instruction, inp))
            out.append(rec(instruction, inp, output, CAT, exact, origin="template"))
            made += 1
    return out
