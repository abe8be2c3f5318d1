"""classify: sentiment, even/odd, prime or not, animal class, fruit or vegetable.

Sentiment texts are hand-written; the other labels come from small tables or are
computed in Python (the tests recompute the even/odd and prime labels).
"""

from __future__ import annotations

from ._common import CLASSIFIER, conv, cycle

CAT = "classify"

POSITIVE = [
    "The new cafe on my street makes wonderful coffee.",
    "My tablet charges quickly and the screen is gorgeous.",
    "The concert was magical from start to finish.",
    "Our waiter was kind and the soup was delicious.",
    "I love how comfortable these running shoes are.",
    "The teacher made a hard topic easy and fun.",
    "What a beautiful garden, I could stay here all day.",
    "The repair was quick and the price was fair.",
    "This puzzle game is clever and very relaxing.",
    "The hotel upgraded our room and the view was stunning.",
]
NEGATIVE = [
    "The bus was packed and the driver was rude.",
    "My headphones broke after one week.",
    "The hotel room was noisy and smelled of smoke.",
    "The film was slow, dull and far too long.",
    "I ordered a pizza and it arrived cold and soggy.",
    "The app keeps freezing and deleting my notes.",
    "Customer service ignored my emails for a month.",
    "The jacket ripped the first time I wore it.",
    "The museum was overcrowded and half the rooms were closed.",
    "The printer jams every time I use it.",
]
NEUTRAL = [
    "The package arrived on Tuesday.",
    "The store opens at nine in the morning.",
    "The report has twelve pages.",
    "The meeting is in room four.",
]
SENT_Q = [
    "Classify the sentiment of this review as positive or negative. Answer with one word: {t}",
    "Is this review positive or negative? Reply with one word. Review: {t}",
    "What is the sentiment of this sentence, positive or negative? Answer with one word. {t}",
]
# Free-form: label plus a short reason.
EXPLAINED = [
    (
        "The bus was late and the seats were dirty.",
        "Negative. The writer complains that the bus was late and the seats were dirty.",
    ),
    (
        "The staff went out of their way to help us.",
        "Positive. The writer praises the staff for being very helpful.",
    ),
    (
        "The cake was dry and far too sweet.",
        "Negative. The writer dislikes both the texture and the taste of the cake.",
    ),
    (
        "I would happily stay at this campsite again.",
        "Positive. The writer wants to come back, which shows they enjoyed it.",
    ),
]

ANIMALS = {
    "dog": "mammal",
    "eagle": "bird",
    "shark": "fish",
    "frog": "amphibian",
    "snake": "reptile",
    "whale": "mammal",
    "bat": "mammal",
    "penguin": "bird",
    "salmon": "fish",
    "turtle": "reptile",
    "salamander": "amphibian",
    "dolphin": "mammal",
    "ostrich": "bird",
    "crocodile": "reptile",
    "tuna": "fish",
    "toad": "amphibian",
    "lizard": "reptile",
    "owl": "bird",
    "horse": "mammal",
    "trout": "fish",
    "newt": "amphibian",
    "camel": "mammal",
}
PRODUCE = {
    "apple": "fruit",
    "carrot": "vegetable",
    "banana": "fruit",
    "spinach": "vegetable",
    "mango": "fruit",
    "broccoli": "vegetable",
    "cherry": "fruit",
    "onion": "vegetable",
    "pear": "fruit",
    "cabbage": "vegetable",
}

FREE = [
    (
        "Is a tomato a fruit or a vegetable?",
        "Botanically a tomato is a fruit, but in cooking it is usually treated as a vegetable.",
    ),
    ("Is a bat a bird?", "No. A bat is a mammal: it has fur and feeds its young with milk."),
    (
        "Is a whale a fish?",
        "No. A whale is a mammal. It breathes air and feeds its young with milk.",
    ),
]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


def records(rng) -> list[dict]:
    out = []

    def add(turns, exact=True, system=None, origin="template"):
        out.append(conv(turns, CAT, exact, system=system, origin=origin))

    # Sentiment, single turn and with a follow-up.
    texts = [(t, "positive") for t in POSITIVE] + [(t, "negative") for t in NEGATIVE]
    rng.shuffle(texts)
    for i, (t, label) in enumerate(texts[:14]):
        add([(cycle(SENT_Q, i).format(t=t), label)], origin="hand")
    for i in range(2):
        (t1, l1), (t2, l2) = texts[14 + 2 * i], texts[15 + 2 * i]
        add(
            [(cycle(SENT_Q, i).format(t=t1), l1), (f"What about this one: {t2} One word.", l2)],
            origin="hand",
        )
    for t, reply in EXPLAINED:
        add(
            [(f"Is this review positive or negative? Explain briefly. {t}", reply)],
            False,
            origin="hand",
        )
    # A classifier system prompt, with a neutral label as well.
    for t, label in [
        (NEUTRAL[0], "neutral"),
        (NEUTRAL[1], "neutral"),
        (NEUTRAL[2], "neutral"),
        (texts[-1][0], texts[-1][1]),
    ]:
        add(
            [(f"Label this sentence. Give the label only. {t}", label)],
            system=CLASSIFIER,
            origin="hand",
        )
    add(
        [
            (f"Label this sentence. Give the label only. {NEUTRAL[3]}", "neutral"),
            (f"And this one? Give the label only. {texts[-2][0]}", texts[-2][1]),
        ],
        system=CLASSIFIER,
        origin="hand",
    )

    # Even or odd (computed), with "And N?" follow-ups.
    for _ in range(5):
        n = rng.randint(10, 999)
        add([(f"Is {n} even or odd? Answer with one word.", "even" if n % 2 == 0 else "odd")])
    for _ in range(3):
        n, m = rng.randint(10, 999), rng.randint(10, 999)
        add(
            [
                (f"Is {n} even or odd? Answer with one word.", "even" if n % 2 == 0 else "odd"),
                (f"And {m}? One word.", "even" if m % 2 == 0 else "odd"),
            ]
        )
    # Prime or not (computed): three primes, three composites.
    primes = [n for n in range(11, 100) if _is_prime(n)]
    composites = [n for n in range(11, 100) if not _is_prime(n) and n % 2 and n % 5]
    for n in sorted(rng.sample(primes, 3) + rng.sample(composites, 3)):
        add([(f"Is {n} a prime number? Answer yes or no.", "yes" if _is_prime(n) else "no")])

    # Animal classes, with "And a ...?" follow-ups.
    animals = sorted(ANIMALS)
    rng.shuffle(animals)
    classes = "mammal, bird, fish, reptile or amphibian"
    for i, a in enumerate(animals[:8]):
        q = cycle(
            [
                f"Is {_a(a)} a {classes}? Answer with one word.",
                f"Which animal class does the {a} belong to: {classes}? One word.",
            ],
            i,
        )
        add([(q, ANIMALS[a])])
    for i in range(3):
        a, b = animals[8 + 2 * i], animals[9 + 2 * i]
        add(
            [
                (f"Is {_a(a)} a {classes}? Answer with one word.", ANIMALS[a]),
                (f"And {_a(b)}? One word.", ANIMALS[b]),
            ]
        )
    # Fruit or vegetable.
    produce = sorted(PRODUCE)
    rng.shuffle(produce)
    for p in produce[:5]:
        add([(f"Classify as fruit or vegetable: {p}. Answer with one word.", PRODUCE[p])])
    for q, a in FREE:
        add([(q, a)], False, origin="hand")
    return out
