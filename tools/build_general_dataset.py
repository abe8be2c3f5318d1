"""Build ``src/peftlab/data/bundled/general.jsonl``: the bundled *general* eval set.

``peftlab compare --general-eval bundled`` scores the base model and every fine-tuned
run on these records to show what fine-tuning cost elsewhere (forgetting). The tasks are
chosen to be unlike the bundled training set (rewrite, classify, extract, summarize,
brainstorm, explain, open questions, arithmetic word problems): letters and spelling,
word order, number patterns, the calendar and Roman numerals. Every answer is computed
here from the question, so each record is correct by construction and exactly
checkable (``exact: true``).

Written for this project (Apache-2.0), from the word lists below; deterministic:

    python tools/build_general_dataset.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = (
    Path(__file__).resolve().parent.parent
    / "src"
    / "peftlab"
    / "data"
    / "bundled"
    / "general.jsonl"
)
PER_TASK = 20
WORDS = [
    "lantern",
    "window",
    "garden",
    "pencil",
    "harbor",
    "meadow",
    "candle",
    "forest",
    "basket",
    "silver",
    "rocket",
    "planet",
    "button",
    "castle",
    "ladder",
    "market",
    "pepper",
    "violin",
    "island",
    "jacket",
    "rabbit",
    "mirror",
    "bridge",
    "kettle",
    "anchor",
    "blanket",
    "compass",
    "dolphin",
    "feather",
    "glacier",
    "horizon",
    "lettuce",
    "orchard",
    "pyramid",
    "saddle",
    "thunder",
    "walnut",
    "zebra",
    "tulip",
    "copper",
    "banana",
    "sunset",
    "pillow",
    "marble",
    "cactus",
    "lemon",
    "canyon",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
SENTENCES = [
    "The old boat drifted slowly toward the quiet shore.",
    "Please close the door when you leave.",
    "Bright stars filled the clear winter sky.",
    "My brother plays the drums every Sunday afternoon.",
    "A cold wind blew across the empty field.",
    "We baked bread and shared it with our neighbors.",
    "The train was late again this morning.",
    "She painted the fence a pale shade of blue.",
    "Owls hunt at night.",
    "The library opens at nine and closes at six.",
    "Two small birds sat on the wire.",
    "He forgot his umbrella at the station.",
    "Fresh snow covered the mountain road.",
    "The children built a tall tower of wooden blocks.",
    "Rain fell all day.",
    "Our team won the final match by one goal.",
    "The cat slept in a patch of warm sunlight.",
    "They planted tomatoes, beans and squash in spring.",
    "Light travels faster than sound.",
    "The baker sold every loaf before noon.",
]


def rec(instruction: str, output: str, task: str, input_: str = "") -> dict:
    return {
        "instruction": instruction,
        "input": input_,
        "output": output,
        "category": task,
        "exact": True,
    }


def roman(n: int) -> str:
    out = ""
    for value, sym in (
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ):
        while n >= value:
            out, n = out + sym, n - value
    return out


def unique(make) -> list[dict]:
    """PER_TASK records from ``make()`` (a random draw), no question twice."""
    seen: dict[tuple, dict] = {}
    while len(seen) < PER_TASK:
        r = make()
        seen.setdefault((r["instruction"], r["input"]), r)
    return list(seen.values())


def build(rng: random.Random) -> list[dict]:
    out: list[dict] = []
    words = rng.sample(WORDS, PER_TASK)
    out += [
        rec(f"Write the word '{w}' backwards. Give only the reversed word.", w[::-1], "reverse")
        for w in words
    ]
    words = rng.sample(WORDS, PER_TASK)
    out += [
        rec(
            f"How many letters are in the word '{w}'? Give only the number.",
            str(len(w)),
            "count_letters",
        )
        for w in words
    ]
    words = rng.sample(WORDS, PER_TASK)
    out += [
        rec(
            f"How many vowels (a, e, i, o, u) are in the word '{w}'? Give only the number.",
            str(sum(c in "aeiou" for c in w)),
            "count_vowels",
        )
        for w in words
    ]

    def sort_words():
        group = rng.sample(WORDS, rng.choice([3, 4]))
        return rec(
            "Put these words in alphabetical order. Reply with the words separated by commas.",
            ", ".join(sorted(group)),
            "sort_words",
            ", ".join(group),
        )

    out += unique(sort_words)
    words = rng.sample(WORDS, PER_TASK)
    out += [
        rec(
            f"Spell the word '{w}' letter by letter, with a hyphen between the letters.",
            "-".join(w),
            "spell",
        )
        for w in words
    ]

    def sequence():
        start, step = rng.randint(1, 30), rng.choice([2, 3, 4, 5, 6, 7, 9, 11])
        seq = [start + step * i for i in range(4)]
        return rec(
            "What number comes next in this sequence? Give only the number.",
            str(start + step * 4),
            "sequence",
            ", ".join(map(str, seq)),
        )

    out += unique(sequence)

    def weekday():
        d, k = rng.randrange(7), rng.randint(1, 6)
        return rec(
            f"What day of the week comes {k} day{'s' if k > 1 else ''} after "
            f"{DAYS[d]}? Answer with one word.",
            DAYS[(d + k) % 7],
            "weekday",
        )

    out += unique(weekday)

    def month():
        m, k = rng.randrange(12), rng.randint(1, 5)
        return rec(
            f"Which month comes {k} month{'s' if k > 1 else ''} after {MONTHS[m]}? "
            "Answer with one word.",
            MONTHS[(m + k) % 12],
            "month",
        )

    out += unique(month)
    for n in rng.sample(range(1, 100), PER_TASK):
        out.append(
            rec(
                f"Write the number {n} in Roman numerals. Give only the numeral.", roman(n), "roman"
            )
        )

    def compare():
        a, b = rng.sample(range(10, 100), 2)
        pick = rng.choice(["larger", "smaller"])
        return rec(
            f"Which number is {pick}, {a} or {b}? Give only the number.",
            str(max(a, b) if pick == "larger" else min(a, b)),
            "compare",
        )

    out += unique(compare)
    for s in SENTENCES:
        out.append(
            rec(
                "How many words are in this sentence? Give only the number.",
                str(len(s.rstrip(".").split())),
                "count_words",
                s,
            )
        )

    def count_up():
        lo = rng.randint(1, 20)
        hi = lo + rng.randint(3, 6)
        return rec(
            f"List the whole numbers from {lo} to {hi}, separated by commas.",
            ", ".join(str(i) for i in range(lo, hi + 1)),
            "count_up",
        )

    out += unique(count_up)
    return out


def main(out: Path = OUT) -> None:
    rng = random.Random(7)
    records = build(rng)
    # Tasks interleaved, so that the first N records (exact match is scored on at most
    # exact_match_limit of them) cover every task.
    rng.shuffle(records)
    instructions = [(r["instruction"], r["input"]) for r in records]
    assert len(set(instructions)) == len(instructions), "duplicate records"
    out.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    print(f"wrote {len(records)} records to {out}")


if __name__ == "__main__":
    main()
