"""memory: recall details the user gave in earlier turns.

Every conversation has at least two user turns.  Most are templates filled from the
small tables below, with an unrelated hand-written exchange in between, and end with
a question whose short answer only the earlier turns contain.  A few hand-written
ones use the earlier context for a free-form reply.
"""

from __future__ import annotations

from ._common import BRIEF, CONCISE, conv, cycle

CAT = "memory"

FEMALE = ["Ana", "Chloe", "Elena", "Grace", "Isla", "Lucia", "Nadia", "Priya", "Rosa", "Tara"]
MALE = ["Ben", "David", "Farid", "Hiro", "Jonas", "Kofi", "Mateo", "Omar", "Sven", "Yusuf"]
NAMES = sorted(FEMALE + MALE)
NICKNAMES = {
    "Elena": "Lena",
    "David": "Dave",
    "Isla": "Izzy",
    "Mateo": "Teo",
    "Nadia": "Nadi",
    "Priya": "Pri",
    "Jonas": "Jo",
    "Grace": "Gracie",
}
CITIES = [
    "Lisbon",
    "Toronto",
    "Madrid",
    "Osaka",
    "Denver",
    "Dublin",
    "Nairobi",
    "Seattle",
    "Krakow",
    "Melbourne",
    "Chicago",
    "Munich",
    "Auckland",
    "Lima",
]
PETS = [
    ("dog", "Rex"),
    ("cat", "Luna"),
    ("rabbit", "Biscuit"),
    ("parrot", "Kiwi"),
    ("dog", "Pepper"),
    ("cat", "Milo"),
    ("hamster", "Peanut"),
    ("turtle", "Shelly"),
]
COLORS = ["green", "purple", "orange", "yellow", "red", "blue", "teal"]
JOBS = [
    "nurse",
    "teacher",
    "baker",
    "pilot",
    "plumber",
    "librarian",
    "chef",
    "architect",
    "dentist",
    "farmer",
    "engineer",
]
SHOPPING = [
    "eggs",
    "milk",
    "bread",
    "rice",
    "apples",
    "butter",
    "cheese",
    "tea",
    "onions",
    "flour",
    "soap",
    "carrots",
]
PLACES = ["bank", "bakery", "gym", "library", "market", "pharmacy", "park", "pool"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
POSITIONS = ["first", "second", "third"]

# Unrelated exchanges placed between the fact and the question.
FILLERS = [
    (
        "What's a quick breakfast idea?",
        "Oatmeal with fruit or yogurt with granola are quick and filling.",
    ),
    (
        "Any tips for staying focused?",
        "Work in short blocks, silence your phone, and take small breaks.",
    ),
    (
        "What's a good hobby for rainy days?",
        "Reading, baking or a jigsaw puzzle are great on rainy days.",
    ),
    ("Can you suggest a board game?", "Try Ticket to Ride. It's easy to learn and fun for groups."),
    (
        "What's a fun weekend activity?",
        "A hike, a picnic, or a visit to a local museum can be fun.",
    ),
    ("Tell me a fun fact about animals.", "A group of flamingos is called a flamboyance."),
    (
        "How do I make a cup of tea?",
        "Pour boiling water over a tea bag and let it steep for three to five minutes.",
    ),
    (
        "What's a good stretch after sitting?",
        "Stand up, reach your arms overhead, and gently lean from side to side.",
    ),
    ("Suggest a name for a goldfish.", "How about Bubbles, Finn, or Goldie?"),
    (
        "What should I read next?",
        "If you like adventure, try Treasure Island by Robert Louis Stevenson.",
    ),
    (
        "How can I save a bit of money each week?",
        "Plan your meals, cook at home more often, and set a small weekly budget.",
    ),
    (
        "Is it better to study in the morning or at night?",
        "Either can work. Pick the time when you feel most alert and stick to it.",
    ),
]

# Hand-written: the earlier context shapes a free-form reply.
HAND = [
    [
        ("I'm allergic to peanuts.", "Thanks for telling me. I'll keep that in mind."),
        (
            "Can you suggest a snack for me?",
            "How about apple slices with cheese? It contains no peanuts.",
        ),
    ],
    [
        ("I'm vegetarian.", "Got it, no meat or fish for you."),
        (
            "What should I cook for dinner tonight?",
            "Try a vegetable stir-fry with tofu and rice. It's quick and meat-free.",
        ),
    ],
    [
        ("I only have 15 minutes for exercise today.", "That's still enough for a good workout."),
        (
            "What should I do?",
            "Do a brisk 15-minute circuit: squats, push-ups, lunges and a plank, with short rests.",
        ),
    ],
    [
        ("My son is six years old.", "Lovely age! How can I help?"),
        (
            "Suggest a book for him.",
            "For a six-year-old, The Cat in the Hat by Dr. Seuss is a fun choice.",
        ),
    ],
    [
        ("I live somewhere very cold.", "Stay warm! How can I help?"),
        (
            "What should I wear for a walk today?",
            "Wear warm layers, a hat, gloves and waterproof boots to handle the cold.",
        ),
    ],
    [
        ("I'm learning French.", "Great choice! How is it going?"),
        ("Slowly. How do I say hello in that language?", "In French, hello is bonjour."),
    ],
    [
        (
            "My name is Leo and I love astronomy.",
            "Nice to meet you, Leo! Astronomy is fascinating.",
        ),
        (
            "Recommend a hobby for me.",
            "Since you love astronomy, try stargazing with a small telescope, Leo.",
        ),
    ],
]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _filler(rng):
    return rng.choice(FILLERS)


def _name(rng, i):
    return cycle(NAMES, i + rng.randrange(len(NAMES)))


def t_name(rng, i):
    name = _name(rng, i)
    return [
        (f"Hi, my name is {name}.", f"Nice to meet you, {name}!"),
        _filler(rng),
        ("What is my name? Answer with one word.", name),
    ]


def t_city(rng, i):
    city = cycle(CITIES, i)
    return [
        (f"I live in {city}.", f"{city} sounds like a nice place to live."),
        _filler(rng),
        ("Which city do I live in? Answer with one word.", city),
    ]


def t_pet(rng, i):
    animal, pet = cycle(PETS, i)
    return [
        (f"I have {_a(animal)} called {pet}.", f"{pet} is a lovely name for {_a(animal)}."),
        (f"What is my {animal}'s name? Reply with one word.", pet),
    ]


def t_color(rng, i):
    color = cycle(COLORS, i)
    return [
        (f"My favorite color is {color}.", f"{color.capitalize()} is a great color."),
        _filler(rng),
        ("What is my favorite color? Answer with one word.", color),
    ]


def t_number(rng, i):
    n = rng.randint(10, 999)
    return [
        (f"Please remember the number {n}.", f"Got it, I'll remember {n}."),
        _filler(rng),
        ("What number did I ask you to remember? Give only the number.", str(n)),
    ]


def t_list(rng, i):
    items = rng.sample(SHOPPING, 3)
    k = i % 3
    listed = f"{items[0]}, {items[1]} and {items[2]}"
    return [
        (f"I need to buy {listed}.", f"Okay: {listed}."),
        (f"What was the {POSITIONS[k]} item on my list? Answer with one word.", items[k]),
    ]


def t_job(rng, i):
    job = cycle(JOBS, i)
    return [
        (f"I work as {_a(job)}.", f"Being {_a(job)} sounds interesting."),
        _filler(rng),
        ("What is my job? Answer with one word.", job),
    ]


def t_age(rng, i):
    age, k = rng.randint(18, 70), rng.randint(2, 10)
    return [
        (f"I am {age} years old.", "Thanks for telling me."),
        (f"How old will I be in {k} years? Give only the number.", str(age + k)),
    ]


def t_siblings(rng, i):
    x, y = rng.choice(FEMALE), rng.choice(MALE)
    ask = ("brother", y) if i % 2 else ("sister", x)
    return [
        (f"My sister is called {x} and my brother is called {y}.", "Those are nice names."),
        (f"What is my {ask[0]}'s name? Answer with one word.", ask[1]),
    ]


def t_nickname(rng, i):
    name = cycle(sorted(NICKNAMES), i)
    nick = NICKNAMES[name]
    return [
        (f"My name is {name}.", f"Nice to meet you, {name}!"),
        (f"Actually, please call me {nick}.", f"Sure, I'll call you {nick}."),
        ("What should you call me? Answer with one word.", nick),
    ]


def t_places(rng, i):
    p = rng.sample(PLACES, 3)
    k = i % 3
    return [
        (
            f"This morning I went to the {p[0]}, then the {p[1]}, then the {p[2]}.",
            "Sounds like a busy morning!",
        ),
        (f"Which place did I visit {POSITIONS[k]}? Answer with one word.", p[k]),
    ]


def t_day(rng, i):
    d = rng.randrange(7)
    shift = rng.choice([1, 2])
    later = "one day" if shift == 1 else "two days"
    return [
        (f"My dentist appointment is on {DAYS[d]}.", "Thanks, I'll keep that in mind."),
        (
            f"It just moved {later} later. What day is it now? Answer with one word.",
            DAYS[(d + shift) % 7],
        ),
    ]


def t_two_facts(rng, i):
    name, city = _name(rng, i), cycle(CITIES, i + 5)
    ask = (
        ("Where do I live? Answer with one word.", city)
        if i % 2
        else ("And what is my name again? Answer with one word.", name)
    )
    return [
        (f"My name is {name}.", f"Hello, {name}!"),
        (f"I live in {city}.", f"{city} is a great place."),
        ask,
    ]


TEMPLATES = [
    t_name,
    t_city,
    t_pet,
    t_color,
    t_number,
    t_list,
    t_job,
    t_age,
    t_siblings,
    t_nickname,
    t_places,
    t_day,
    t_two_facts,
]


def records(rng) -> list[dict]:
    out = []
    for i in range(3 * len(TEMPLATES)):
        turns = TEMPLATES[i % len(TEMPLATES)](rng, i // len(TEMPLATES))
        # In the last round, conversations without a long filler reply get a system
        # prompt that keeps every reply under ten words.
        brief = i >= 2 * len(TEMPLATES) and all(len(t[1].split()) < 10 for t in turns)
        out.append(conv(turns, CAT, True, system=BRIEF if brief else None, origin="template"))
    # With a concise system prompt, the recall answer stays one short sentence.
    for i in range(3):
        name, city, job = NAMES[i * 3], CITIES[i * 2], JOBS[i * 3]
        out.append(
            conv(
                [
                    (f"My name is {name}.", f"Nice to meet you, {name}."),
                    (f"I live in {city} and work as {_a(job)}.", "Thanks for sharing that."),
                    (
                        "What do you know about me?",
                        f"You are {name}, you live in {city}, and you work as {_a(job)}.",
                    ),
                ],
                CAT,
                False,
                system=CONCISE,
                origin="template",
            )
        )
    out += [conv(turns, CAT, False) for turns in HAND]
    return out
