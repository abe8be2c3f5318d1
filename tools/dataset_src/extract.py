"""extract: pull a name, date, number, place or other detail out of a text."""

from __future__ import annotations

from ._common import rec

CAT = "extract"

# (instruction, input, output, exact) -- hand-written.
HAND = [
    (
        "Extract the email address from the text. Give only the address.",
        "For questions, write to help@greenleaf.example or call the front desk.",
        "help@greenleaf.example",
        True,
    ),
    (
        "What does the lamp cost? Give only the price with the dollar sign.",
        "The desk costs $120 and the lamp costs $35.",
        "$35",
        True,
    ),
    (
        "What time does the store close on weekdays? Give only the time as written.",
        "The store opens at 9 am and closes at 6 pm on weekdays.",
        "6 pm",
        True,
    ),
    (
        "Extract the name of the company. Give only the name.",
        "Last week, Brightwave Foods announced a new line of oat snacks.",
        "Brightwave Foods",
        True,
    ),
    (
        "What color is the car? Answer with one word.",
        "A red car was parked next to the blue van outside the bakery.",
        "red",
        True,
    ),
    (
        "Extract the phone number from the text. Give only the number.",
        "You can reach our office at 555-0142 between 8 am and 5 pm.",
        "555-0142",
        True,
    ),
    (
        "Which language does Lena use at work? Answer with one word.",
        "Lena speaks Spanish at home but uses German at work.",
        "German",
        True,
    ),
    (
        "Extract the name of the river. Answer with one word.",
        "The city of Budapest is divided by the Danube into Buda and Pest.",
        "Danube",
        True,
    ),
    (
        "How many people attended in person? Give only the number.",
        "The workshop was small: 14 people attended in person, and 3 more joined online.",
        "14",
        True,
    ),
    (
        "Extract the deadline. Give only the date as written.",
        "Applications open on March 1 and must be submitted by April 15.",
        "April 15",
        True,
    ),
    (
        "Who wrote the note? Give only the name.",
        "Dear Sam, thank you for the flowers. Best wishes, Olivia",
        "Olivia",
        True,
    ),
    (
        "What is the forecast high temperature? Give only the number.",
        "Tomorrow will be sunny with a high of 24 degrees and light wind.",
        "24",
        True,
    ),
    (
        "Which animal is mentioned in the sentence? Answer with one word.",
        "While hiking, we saw a fox crossing the trail near the lake.",
        "fox",
        True,
    ),
    (
        "What is the title of the book mentioned in the text? Give only the title.",
        "My sister finally finished reading Moby-Dick last summer.",
        "Moby-Dick",
        True,
    ),
    (
        "Extract the web address from the text. Give only the address.",
        "More details are available at www.citypark.example/events.",
        "www.citypark.example/events",
        True,
    ),
    (
        "What is the dog's name? Answer with one word.",
        "Our dog, Biscuit, loves chasing tennis balls in the yard.",
        "Biscuit",
        True,
    ),
    (
        "On which day of the week is the meeting now? Answer with one word.",
        "The budget meeting has moved from Tuesday to Thursday.",
        "Thursday",
        True,
    ),
    (
        "What is the total amount due in euros? Give only the number.",
        "Invoice 2231: 3 items, total due 87 euros, payable within 30 days.",
        "87",
        True,
    ),
    (
        "What is the flight number? Give only the flight number.",
        "Your flight, ZX 274, departs from gate 12 at 7:40.",
        "ZX 274",
        True,
    ),
    (
        "From which gate does the flight depart? Give only the number.",
        "Flight ZX 518 to Rome departs from gate 22 at 14:05.",
        "22",
        True,
    ),
    (
        "By how much did sales grow? Give only the percentage.",
        "Sales grew by 12% compared with last year.",
        "12%",
        True,
    ),
    (
        "What instrument does Jonas play? Answer with one word.",
        "Jonas plays the cello in the school orchestra, and his sister plays the flute.",
        "cello",
        True,
    ),
    (
        "Who is the author of the new book? Give only the name.",
        '"The best way to learn is to teach," writes Dana Whitfield in her new book.',
        "Dana Whitfield",
        True,
    ),
    (
        "Which country is the text about? Answer with one word.",
        "Kenya is famous for its long-distance runners and its wildlife parks.",
        "Kenya",
        True,
    ),
    (
        "How much flour does the recipe need? Give the amount as written.",
        "Mix 2 cups of flour, 1 cup of milk, and a pinch of salt.",
        "2 cups",
        True,
    ),
    (
        "How many eggs does the recipe use? Give only the number.",
        "Beat 3 eggs with sugar, then fold in the flour and bake for 25 minutes.",
        "3",
        True,
    ),
    (
        "Extract the street name. Give only the street name.",
        "The new cafe is at 14 Maple Street, next to the post office.",
        "Maple Street",
        True,
    ),
    (
        "What is the room number? Give only the number.",
        "The exam takes place in room 305 on the third floor.",
        "305",
        True,
    ),
    (
        "What is the name of the ship? Give only the name.",
        "The cargo ship Northern Star docked at the harbor at dawn.",
        "Northern Star",
        True,
    ),
    (
        "Which sport does Mia train for? Answer with one word.",
        "After school, Mia trains for two hours at the volleyball club.",
        "volleyball",
        True,
    ),
    # free-form extractions
    (
        "List the fruits mentioned in the text, separated by commas.",
        "For the picnic we packed sandwiches, apples, cheese, grapes, and lemonade, plus a few pears.",
        "apples, grapes, pears",
        False,
    ),
    (
        "Extract all the names of people in the text.",
        "At the party, Lucy talked to Ahmed while Peter played the guitar.",
        "Lucy, Ahmed, Peter",
        False,
    ),
    (
        "Extract the dates mentioned in the text.",
        "The festival runs from June 5 to June 9, with a preview on June 3.",
        "June 5, June 9, June 3",
        False,
    ),
    (
        "Extract who did what, and where.",
        "Ms. Tanaka opened a bakery in the old train station.",
        "Who: Ms. Tanaka. What: opened a bakery. Where: the old train station.",
        False,
    ),
    (
        "Pull out the product name and its price.",
        "The Trailmaster 2 backpack is now available for $89.",
        "Product: Trailmaster 2 backpack. Price: $89.",
        False,
    ),
    (
        "Extract the hashtags from the post.",
        "Sunny morning at the lake #weekend #nature",
        "#weekend, #nature",
        False,
    ),
    (
        "List the ingredients mentioned in the text.",
        "Stir the rice into the pan with onions and garlic, then add tomatoes.",
        "rice, onions, garlic, tomatoes",
        False,
    ),
    (
        "Extract the start and end times of the event.",
        "The open day starts at 10 am and ends at 4 pm in the main hall.",
        "Start: 10 am. End: 4 pm.",
        False,
    ),
]

# ---- templated: short generated stories with known facts ----
FIRST = [
    "Maria",
    "James",
    "Aisha",
    "Chen",
    "Lucas",
    "Sofia",
    "Omar",
    "Elena",
    "David",
    "Priya",
    "Tom",
    "Hana",
    "Marco",
    "Zoe",
    "Ivan",
    "Grace",
]
LAST = [
    "Lopez",
    "Becker",
    "Khan",
    "Silva",
    "Novak",
    "Park",
    "Rossi",
    "Evans",
    "Okafor",
    "Larsen",
    "Moreau",
    "Tanaka",
]
CITIES = [
    "Lisbon",
    "Toronto",
    "Nairobi",
    "Osaka",
    "Madrid",
    "Chicago",
    "Vienna",
    "Melbourne",
    "Dublin",
    "Seattle",
    "Prague",
    "Lima",
    "Oslo",
    "Mumbai",
    "Hamburg",
    "Athens",
]
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
JOBS = ["a nurse", "a teacher", "an engineer", "a chef", "a pilot", "a librarian"]


def _story(rng, kind):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    name = f"{first} {last}"
    c1, c2 = rng.sample(CITIES, 2)
    month, day, year = rng.choice(MONTHS), rng.randint(1, 28), rng.randint(1990, 2023)
    n = rng.randint(2, 9)
    if kind == 0:
        text = f"{name} moved from {c1} to {c2} in {month} {year} to start a new job."
        qa = [
            (f"Which city did {first} move to? Give only the city name.", c2),
            (f"Which city did {first} move from? Give only the city name.", c1),
            ("In which year did the move happen? Give only the year.", str(year)),
            ("Who is the person mentioned in the text? Give only the full name.", name),
        ]
    elif kind == 1:
        text = f"On {month} {day}, {year}, {name} bought {n} tickets for a concert in {c1}."
        qa = [
            ("How many tickets were bought? Give only the number.", str(n)),
            ("In which city is the concert? Give only the city name.", c1),
            (
                "On what date were the tickets bought? Give the date exactly as written.",
                f"{month} {day}, {year}",
            ),
        ]
    elif kind == 2:
        guests = rng.randint(3, 60) * 10
        text = (
            f"The {year} science fair in {c1} welcomed {guests} guests. It was organized by {name}."
        )
        qa = [
            ("Who organized the science fair? Give only the full name.", name),
            ("How many guests did the science fair welcome? Give only the number.", str(guests)),
            ("Where was the science fair held? Give only the city name.", c1),
        ]
    elif kind == 3:
        age = rng.randint(22, 68)
        job = rng.choice(JOBS)
        text = f"{name}, {job} from {c1}, finished a first marathon at the age of {age}."
        qa = [
            ("How old was the runner? Give only the number.", str(age)),
            ("Which city is the runner from? Give only the city name.", c1),
            ("What is the runner's name? Give only the full name.", name),
        ]
    else:
        order = rng.randint(10000, 99999)
        text = f"Order {order} was shipped to {c1} on {month} {day} and should arrive in {n} days."
        qa = [
            ("What is the order number? Give only the number.", str(order)),
            ("Where was the order shipped to? Give only the city name.", c1),
            ("In how many days should the order arrive? Give only the number.", str(n)),
        ]
    return text, qa


def records(rng):
    out = [rec(i, x, o, CAT, e) for i, x, o, e in HAND]
    seen = set()
    for k in range(45):
        text, qa = _story(rng, k % 5)
        question, answer = rng.choice(qa)
        if text in seen:  # pragma: no cover - astronomically unlikely
            continue
        seen.add(text)
        out.append(rec(question, text, answer, CAT, True, origin="template"))
    return out
