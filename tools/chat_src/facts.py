"""facts: capitals, languages, chemical symbols, planets, authors, word forms, trivia.

Most conversations come from the small fact tables below; follow-up questions
("And its capital?") make the final answer depend on the earlier turns.
"""

from __future__ import annotations

from ._common import CONCISE, conv, cycle

CAT = "facts"

# country -> (capital, continent, main language or None where there is no single
#             main language)
COUNTRIES = {
    "France": ("Paris", "Europe", "French"),
    "Japan": ("Tokyo", "Asia", "Japanese"),
    "Italy": ("Rome", "Europe", "Italian"),
    "Spain": ("Madrid", "Europe", "Spanish"),
    "Germany": ("Berlin", "Europe", "German"),
    "Canada": ("Ottawa", "North America", None),
    "Egypt": ("Cairo", "Africa", "Arabic"),
    "Kenya": ("Nairobi", "Africa", None),
    "Brazil": ("Brasilia", "South America", "Portuguese"),
    "Argentina": ("Buenos Aires", "South America", "Spanish"),
    "Peru": ("Lima", "South America", "Spanish"),
    "Mexico": ("Mexico City", "North America", "Spanish"),
    "India": ("New Delhi", "Asia", None),
    "South Korea": ("Seoul", "Asia", "Korean"),
    "Thailand": ("Bangkok", "Asia", "Thai"),
    "Norway": ("Oslo", "Europe", "Norwegian"),
    "Sweden": ("Stockholm", "Europe", "Swedish"),
    "Portugal": ("Lisbon", "Europe", "Portuguese"),
    "Greece": ("Athens", "Europe", "Greek"),
    "Poland": ("Warsaw", "Europe", "Polish"),
    "Ireland": ("Dublin", "Europe", None),
    "Austria": ("Vienna", "Europe", "German"),
    "Hungary": ("Budapest", "Europe", "Hungarian"),
    "Finland": ("Helsinki", "Europe", "Finnish"),
    "Denmark": ("Copenhagen", "Europe", "Danish"),
    "Vietnam": ("Hanoi", "Asia", "Vietnamese"),
    "Nigeria": ("Abuja", "Africa", None),
    "Ghana": ("Accra", "Africa", None),
    "Chile": ("Santiago", "South America", "Spanish"),
    "Colombia": ("Bogota", "South America", "Spanish"),
    "Ethiopia": ("Addis Ababa", "Africa", None),
    "Iceland": ("Reykjavik", "Europe", "Icelandic"),
}

# element -> (symbol, atomic number)
ELEMENTS = {
    "hydrogen": ("H", 1),
    "helium": ("He", 2),
    "carbon": ("C", 6),
    "nitrogen": ("N", 7),
    "oxygen": ("O", 8),
    "neon": ("Ne", 10),
    "sodium": ("Na", 11),
    "magnesium": ("Mg", 12),
    "aluminum": ("Al", 13),
    "sulfur": ("S", 16),
    "chlorine": ("Cl", 17),
    "potassium": ("K", 19),
    "calcium": ("Ca", 20),
    "iron": ("Fe", 26),
    "copper": ("Cu", 29),
    "zinc": ("Zn", 30),
    "silver": ("Ag", 47),
    "tin": ("Sn", 50),
    "gold": ("Au", 79),
    "lead": ("Pb", 82),
}

PLANETS = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]

# book -> (author, whether the author was American)
BOOKS = {
    "Pride and Prejudice": ("Jane Austen", False),
    "Moby-Dick": ("Herman Melville", True),
    "Oliver Twist": ("Charles Dickens", False),
    "Animal Farm": ("George Orwell", False),
    "Frankenstein": ("Mary Shelley", False),
    "The Adventures of Tom Sawyer": ("Mark Twain", True),
    "The Great Gatsby": ("F. Scott Fitzgerald", True),
    "To Kill a Mockingbird": ("Harper Lee", True),
    "War and Peace": ("Leo Tolstoy", False),
    "The Old Man and the Sea": ("Ernest Hemingway", True),
    "Les Miserables": ("Victor Hugo", False),
    "The Call of the Wild": ("Jack London", True),
    "Treasure Island": ("Robert Louis Stevenson", False),
    "Don Quixote": ("Miguel de Cervantes", False),
}

OPPOSITES = [
    ("hot", "cold"),
    ("early", "late"),
    ("empty", "full"),
    ("wet", "dry"),
    ("push", "pull"),
    ("inside", "outside"),
    ("buy", "sell"),
    ("first", "last"),
    ("above", "below"),
    ("remember", "forget"),
    ("maximum", "minimum"),
    ("asleep", "awake"),
    ("always", "never"),
    ("north", "south"),
    ("increase", "decrease"),
    ("arrive", "depart"),
]
PLURALS = [("mouse", "mice"), ("child", "children"), ("tooth", "teeth"), ("knife", "knives")]
PAST = [("go", "went"), ("swim", "swam"), ("buy", "bought"), ("think", "thought")]

# Hand-written trivia with a short checkable answer.
TRIVIA = [
    ("What is the largest ocean on Earth? Answer with one word.", "Pacific"),
    ("What gas do plants take in from the air to make food? Give only the name.", "Carbon dioxide"),
    ("At what temperature in Celsius does water freeze? Give only the number.", "0"),
    ("Who painted the Mona Lisa? Give only the name.", "Leonardo da Vinci"),
    ("Which organ pumps blood around the body? Answer with one word.", "Heart"),
    ("What is the chemical formula of water? Give only the formula.", "H2O"),
    ("In which year did World War II end? Give only the year.", "1945"),
    ("Who was the first person to walk on the Moon? Give only the name.", "Neil Armstrong"),
    ("Which metal is liquid at room temperature? Answer with one word.", "Mercury"),
    ("How many legs does a spider have? Give only the number.", "8"),
]

# Hand-written explanations (free-form).
EXPLAIN = [
    (
        "Why is the sky blue?",
        "Sunlight scatters off the molecules in the air, and blue light scatters the most, so the "
        "sky looks blue.",
    ),
    (
        "What causes the seasons?",
        "Earth's axis is tilted, so each half of the planet gets more direct sunlight at some times "
        "of the year than at others.",
    ),
    (
        "What is photosynthesis?",
        "It is how plants use sunlight, water and carbon dioxide to make sugar, releasing oxygen.",
    ),
    (
        "How do bees help plants?",
        "Bees carry pollen from flower to flower, which helps plants make seeds and fruit.",
    ),
    (
        "Why do we have day and night?",
        "Earth spins on its axis about once every 24 hours, so each place turns toward the Sun and "
        "then away from it.",
    ),
    (
        "Why does ice float on water?",
        "Ice is less dense than liquid water, because its molecules lock into an open structure.",
    ),
]


def _capital_q(country: str, capital: str, i: int) -> str:
    if " " in capital:
        return f"What is the capital of {country}? Give only the name."
    return cycle(
        [
            f"What is the capital of {country}? Answer with one word.",
            f"Name the capital city of {country}. Reply with one word.",
        ],
        i,
    )


def records(rng) -> list[dict]:
    out = []
    countries = sorted(COUNTRIES)
    rng.shuffle(countries)
    # Capitals, single turn (exact and free-form).
    for i, c in enumerate(countries[:6]):
        cap = COUNTRIES[c][0]
        out.append(conv([(_capital_q(c, cap, i), cap)], CAT, True, origin="template"))
    for c in countries[6:9]:
        cap = COUNTRIES[c][0]
        out.append(
            conv(
                [(f"What is the capital of {c}?", f"The capital of {c} is {cap}.")],
                CAT,
                False,
                origin="template",
            )
        )
    # Capital, then a follow-up about "it" / "there".
    for i, c in enumerate(countries[9:18]):
        cap, continent, language = COUNTRIES[c]
        first = (_capital_q(c, cap, i), cap)
        if language and i % 2 == 0:
            follow = ("What language is mainly spoken there? Answer with one word.", language)
        else:
            follow = ("And on which continent is that country? Give only the continent.", continent)
        out.append(conv([first, follow], CAT, True, origin="template"))
    # Country named only in the first turn; the exact question asks for "its capital".
    for c in countries[18:22]:
        cap, continent, _ = COUNTRIES[c]
        first = (f"Tell me one short fact about {c}.", f"{c} is in {continent}.")
        ask = "And its capital? Give only the name." if " " in cap else "And its capital? One word."
        out.append(conv([first, (ask, cap)], CAT, True, origin="template"))
    # Reverse lookup.
    for c in countries[22:24]:
        cap = COUNTRIES[c][0]
        out.append(
            conv(
                [(f"{cap} is the capital of which country? Give only the country.", c)],
                CAT,
                True,
                origin="template",
            )
        )
    # Concise system prompt: one short sentence.
    for c in countries[24:30]:
        cap = COUNTRIES[c][0]
        out.append(
            conv(
                [(f"Where is {cap}?", f"{cap} is the capital of {c}.")],
                CAT,
                False,
                system=CONCISE,
                origin="template",
            )
        )

    elements = sorted(ELEMENTS)
    rng.shuffle(elements)
    for i, e in enumerate(elements[:5]):
        sym, _ = ELEMENTS[e]
        q = cycle(
            [
                f"What is the chemical symbol for {e}? Reply with the symbol only.",
                f"Give only the chemical symbol of {e}.",
            ],
            i,
        )
        out.append(conv([(q, sym)], CAT, True, origin="template"))
    for e in elements[5:8]:
        sym, num = ELEMENTS[e]
        out.append(
            conv(
                [
                    (f"What is the chemical symbol for {e}? Reply with the symbol only.", sym),
                    ("And its atomic number? Give only the number.", str(num)),
                ],
                CAT,
                True,
                origin="template",
            )
        )
    for e in elements[8:10]:
        sym, _ = ELEMENTS[e]
        out.append(
            conv(
                [(f"Which element has the symbol {sym}? Answer with one word.", e.capitalize())],
                CAT,
                True,
                origin="template",
            )
        )
    for e in elements[10:12]:
        sym, num = ELEMENTS[e]
        out.append(
            conv(
                [
                    (
                        f"Tell me about the element {e}.",
                        f"{e.capitalize()} has the chemical symbol {sym} and atomic number {num}.",
                    )
                ],
                CAT,
                False,
                origin="template",
            )
        )

    # Planets: position from the Sun, and "the next one out".
    for k in rng.sample([0, 2, 4, 6, 7], 2):
        out.append(
            conv(
                [
                    (
                        f"Which planet is {ORDINALS[k]} from the Sun? Answer with one word.",
                        PLANETS[k],
                    )
                ],
                CAT,
                True,
                origin="template",
            )
        )
    for k in (1, 3, 5):
        out.append(
            conv(
                [
                    (
                        f"Which planet is {ORDINALS[k]} from the Sun? Answer with one word.",
                        PLANETS[k],
                    ),
                    ("And the next planet out from the Sun? One word.", PLANETS[k + 1]),
                ],
                CAT,
                True,
                origin="template",
            )
        )
    out.append(
        conv(
            [
                (
                    "Which is the largest planet in our solar system? Answer with one word.",
                    "Jupiter",
                ),
                ("And which planet is famous for its bright rings? One word.", "Saturn"),
            ],
            CAT,
            True,
        )
    )

    # Authors, and whether they were American.
    books = sorted(BOOKS)
    rng.shuffle(books)
    for book in books[:4]:
        author, _ = BOOKS[book]
        out.append(
            conv([(f"Who wrote {book}? Give only the name.", author)], CAT, True, origin="template")
        )
    for book in books[4:7]:
        author, american = BOOKS[book]
        out.append(
            conv(
                [
                    (f"Who wrote {book}? Give only the name.", author),
                    ("Was that author American? Answer yes or no.", "yes" if american else "no"),
                ],
                CAT,
                True,
                origin="template",
            )
        )
    for book in books[7:9]:
        author, _ = BOOKS[book]
        out.append(
            conv(
                [(f"Who wrote {book}?", f"{book} was written by {author}.")],
                CAT,
                False,
                origin="template",
            )
        )

    # Word forms.
    opposites = OPPOSITES[:]
    rng.shuffle(opposites)
    for i, (w, o) in enumerate(opposites[:4]):
        q = cycle(
            [
                f"What is the opposite of '{w}'? Answer with one word.",
                f"Give the opposite of the word '{w}'. One word only.",
            ],
            i,
        )
        out.append(conv([(q, o)], CAT, True, origin="template"))
    for (w1, o1), (w2, o2) in zip(opposites[4:8:2], opposites[5:9:2], strict=True):
        out.append(
            conv(
                [
                    (f"What is the opposite of '{w1}'? Answer with one word.", o1),
                    (f"And the opposite of '{w2}'? One word.", o2),
                ],
                CAT,
                True,
                origin="template",
            )
        )
    for i, (w, p) in enumerate(PLURALS):
        out.append(
            conv(
                [
                    (
                        cycle(
                            [
                                f"What is the plural of '{w}'? Answer with one word.",
                                f"Give the plural form of '{w}'. One word only.",
                            ],
                            i,
                        ),
                        p,
                    )
                ],
                CAT,
                True,
                origin="template",
            )
        )
    for w, p in PAST:
        out.append(
            conv(
                [(f"What is the past tense of '{w}'? Answer with one word.", p)],
                CAT,
                True,
                origin="template",
            )
        )

    out += [conv([t], CAT, True) for t in TRIVIA]
    out += [conv([t], CAT, False) for t in EXPLAIN]
    out.append(
        conv(
            [
                (
                    "Why do leaves change color in autumn?",
                    "Trees stop making green chlorophyll, so yellow and orange pigments show.",
                )
            ],
            CAT,
            False,
            system=CONCISE,
        )
    )
    out.append(
        conv(
            [
                (
                    "What is the Moon made of?",
                    "The Moon is made mostly of rock, with a small metal core.",
                )
            ],
            CAT,
            False,
            system=CONCISE,
        )
    )
    return out
