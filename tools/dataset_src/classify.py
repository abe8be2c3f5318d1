"""classify: sentiment, topic, fact/opinion, spam, sentence type, nature labels."""

from __future__ import annotations

from ._common import cycle, rec

CAT = "classify"

SENTIMENT_PHRASES = [
    "Classify the sentiment of this review. Answer with one word: positive or negative.",
    "Is the sentiment of the text positive or negative? Answer with one word.",
    "Label the sentiment of this sentence as positive or negative. Reply with the label only.",
]
SENTIMENT = [
    ("I absolutely loved this movie; the acting was superb.", "positive"),
    ("The food was cold and the waiter was rude.", "negative"),
    ("The hotel staff were friendly and the room was spotless.", "positive"),
    ("My phone stopped working after two days.", "negative"),
    ("This blender works perfectly and cleans up in seconds.", "positive"),
    ("The movie was boring and far too long.", "negative"),
    ("Best pizza I have had in years!", "positive"),
    ("I waited an hour and nobody answered my call.", "negative"),
    ("The course was clear, practical, and fun.", "positive"),
    ("The chair broke the first time I sat on it.", "negative"),
    ("My new shoes were comfortable from the very first day.", "positive"),
    ("Terrible sound quality, I want a refund.", "negative"),
    ("Delivery was fast and the package arrived in perfect condition.", "positive"),
    ("The room smelled of smoke and the sheets were dirty.", "negative"),
    ("What a wonderful concert, I would go again tomorrow.", "positive"),
    ("This game crashes every few minutes.", "negative"),
    ("The app is simple to use and saves me a lot of time.", "positive"),
    ("The instructions were confusing and parts were missing.", "negative"),
    ("Our guide was funny and knew everything about the city.", "positive"),
    ("I regret buying this jacket; it fell apart in a week.", "negative"),
    ("The soup was warm, fresh, and full of flavor.", "positive"),
    ("The train was late again and there was nowhere to sit.", "negative"),
    ("I am thrilled with how quickly the support team solved my problem.", "positive"),
    ("Worst customer service I have ever experienced.", "negative"),
    ("This book kept me hooked until the last page.", "positive"),
    ("The paint started peeling after one month.", "negative"),
    ("Great value for the price, highly recommended.", "positive"),
    ("The lecture was hard to follow and the slides were a mess.", "negative"),
    ("The kids had a fantastic time at the science museum.", "positive"),
    ("Our package was lost and no one will help us.", "negative"),
]

FACT_OPINION_PHRASES = [
    "Is this statement a fact or an opinion? Answer with one word: fact or opinion.",
    "Classify the sentence as fact or opinion. Reply with one word.",
]
FACT_OPINION = [
    ("Water boils at 100 degrees Celsius at sea level.", "fact"),
    ("Summer is the best season of the year.", "opinion"),
    ("The Pacific is the largest ocean on Earth.", "fact"),
    ("Chocolate ice cream tastes better than vanilla.", "opinion"),
    ("A week has seven days.", "fact"),
    ("Cats make nicer pets than dogs.", "opinion"),
    ("Paris is the capital of France.", "fact"),
    ("Jazz is the most beautiful kind of music.", "opinion"),
    ("Spiders have eight legs.", "fact"),
    ("Mondays are the worst day of the week.", "opinion"),
    ("The Moon orbits the Earth.", "fact"),
    ("Blue is the prettiest color.", "opinion"),
    ("Ice is frozen water.", "fact"),
    ("Chess is more fun than football.", "opinion"),
    ("There are 60 minutes in an hour.", "fact"),
    ("That painting is ugly.", "opinion"),
]

TOPIC_PHRASES = [
    "Classify the topic of this headline. Answer with one word: sports, technology, health, or business.",
    "Which category does this headline belong to: sports, technology, health, or business? Answer with one word.",
]
TOPIC = [
    ("Local team wins the national basketball championship", "sports"),
    ("New smartphone features a longer battery life", "technology"),
    ("Doctors recommend more sleep for teenagers", "health"),
    ("Coffee chain reports record quarterly profits", "business"),
    ("Tennis star reaches the final after a five-set match", "sports"),
    ("Software update fixes security flaw in popular web browser", "technology"),
    ("Study links daily walking to lower blood pressure", "health"),
    ("Car maker cuts prices as sales slow", "business"),
    ("Marathon runner breaks the course record", "sports"),
    ("Company unveils a faster laptop chip", "technology"),
    ("Flu vaccine now available at local pharmacies", "health"),
    ("Startup raises funding to expand overseas", "business"),
    ("Goalkeeper saves two penalties in the cup semifinal", "sports"),
    ("Messaging app adds end-to-end encryption", "technology"),
    ("Eating more vegetables may lower the risk of heart disease", "health"),
    ("Retailer plans to open fifty new stores", "business"),
    ("Swimmer takes gold in the 200 meters", "sports"),
    ("Hospital opens a new children's clinic", "health"),
]

SPAM = [
    ("Congratulations! You have won a free cruise. Click here to claim it now!", "spam"),
    ("Hi Anna, are we still meeting for lunch on Thursday?", "not spam"),
    ("URGENT: your account will be closed unless you send your password today.", "spam"),
    ("Your dentist appointment is confirmed for May 3 at 10 am.", "not spam"),
    ("Earn $5000 a week from home, no experience needed!!!", "spam"),
    ("Mom, I forgot my keys. Can you leave the door open?", "not spam"),
    ("You are our lucky winner! Reply with your bank details to receive your prize.", "spam"),
    ("Attached are the notes from today's team meeting.", "not spam"),
    ("Cheap watches, 90% off, limited time only, buy now!", "spam"),
    ("Reminder: the library book you borrowed is due next week.", "not spam"),
]

SENTENCE_TYPE = [
    ("Where did you park the car?", "question"),
    ("Please shut the door.", "command"),
    ("The store opens at nine.", "statement"),
    ("Can you help me carry this box?", "question"),
    ("Turn off the lights before you leave.", "command"),
    ("My brother plays the violin.", "statement"),
    ("Why is the sky dark at night?", "question"),
    ("Wash your hands.", "command"),
    ("It snowed all night.", "statement"),
]

# Free-form grouping tasks (not exact).
GROUPING = [
    (
        "Sort these animals into mammals and birds.",
        "dog, eagle, cat, sparrow, horse, parrot",
        "Mammals: dog, cat, horse. Birds: eagle, sparrow, parrot.",
    ),
    (
        "Group these foods into fruits and vegetables.",
        "apple, carrot, banana, spinach, grape, potato",
        "Fruits: apple, banana, grape. Vegetables: carrot, spinach, potato.",
    ),
    (
        "Sort these things into hot and cold.",
        "ice cube, oven, snowball, campfire, freezer",
        "Hot: oven, campfire. Cold: ice cube, snowball, freezer.",
    ),
    (
        "Label each sentence as positive or negative.",
        "1. I love this song. 2. The bus is late again. 3. This cake is delicious.",
        "1. positive 2. negative 3. positive",
    ),
    (
        "Group these into land vehicles and water vehicles.",
        "bicycle, canoe, truck, sailboat, train, ferry",
        "Land: bicycle, truck, train. Water: canoe, sailboat, ferry.",
    ),
    (
        "Classify these objects as musical instruments or tools.",
        "hammer, violin, screwdriver, flute, wrench, drum",
        "Instruments: violin, flute, drum. Tools: hammer, screwdriver, wrench.",
    ),
    (
        "Sort these words into colors and shapes.",
        "red, circle, green, triangle, square, yellow",
        "Colors: red, green, yellow. Shapes: circle, triangle, square.",
    ),
    (
        "Which of these are countries and which are cities?",
        "Brazil, Chicago, Kenya, Madrid, Canada, Toronto",
        "Countries: Brazil, Kenya, Canada. Cities: Chicago, Madrid, Toronto.",
    ),
]

# Fact tables (templated).
ANIMAL_PLANT = [
    ("elephant", "animal"),
    ("oak", "plant"),
    ("eagle", "animal"),
    ("rose", "plant"),
    ("salmon", "animal"),
    ("cactus", "plant"),
    ("frog", "animal"),
    ("fern", "plant"),
    ("butterfly", "animal"),
    ("sunflower", "plant"),
    ("dolphin", "animal"),
    ("bamboo", "plant"),
]
ANIMAL_GROUP = [
    ("whale", "mammal"),
    ("penguin", "bird"),
    ("shark", "fish"),
    ("crocodile", "reptile"),
    ("frog", "amphibian"),
    ("bee", "insect"),
    ("bat", "mammal"),
    ("ostrich", "bird"),
    ("salmon", "fish"),
    ("turtle", "reptile"),
    ("salamander", "amphibian"),
    ("ant", "insect"),
]
MATTER = [
    ("iron", "solid"),
    ("water", "liquid"),
    ("oxygen", "gas"),
    ("mercury", "liquid"),
    ("salt", "solid"),
    ("helium", "gas"),
    ("gold", "solid"),
    ("nitrogen", "gas"),
]


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(n**0.5) + 1))


def records(rng):
    out = []
    for i, (text, label) in enumerate(SENTIMENT):
        out.append(rec(cycle(SENTIMENT_PHRASES, i), text, label, CAT, True))
    for i, (text, label) in enumerate(FACT_OPINION):
        out.append(rec(cycle(FACT_OPINION_PHRASES, i), text, label, CAT, True))
    for i, (text, label) in enumerate(TOPIC):
        out.append(rec(cycle(TOPIC_PHRASES, i), text, label, CAT, True))
    for text, label in SPAM:
        out.append(
            rec(
                "Is this message spam or not spam? Answer with 'spam' or 'not spam'.",
                text,
                label,
                CAT,
                True,
            )
        )
    for text, label in SENTENCE_TYPE:
        out.append(
            rec(
                "Is this sentence a question, a statement, or a command? Answer with one word.",
                text,
                label,
                CAT,
                True,
            )
        )
    for instruction, text, answer in GROUPING:
        out.append(rec(instruction, text, answer, CAT, False))

    # --- templated from tables ---
    for i, (thing, label) in enumerate(ANIMAL_PLANT):
        if i % 2:
            out.append(
                rec(
                    "Is this an animal or a plant? Answer with one word.",
                    thing,
                    label,
                    CAT,
                    True,
                    origin="template",
                )
            )
        else:
            out.append(
                rec(
                    f"Is a {thing} an animal or a plant? Answer with one word.",
                    "",
                    label,
                    CAT,
                    True,
                    origin="template",
                )
            )
    for thing, label in ANIMAL_GROUP:
        out.append(
            rec(
                "Which group does this animal belong to: mammal, bird, fish, "
                "reptile, amphibian, or insect? Answer with one word.",
                thing,
                label,
                CAT,
                True,
                origin="template",
            )
        )
    for thing, label in MATTER:
        out.append(
            rec(
                f"At room temperature, is {thing} a solid, a liquid, or a gas? "
                "Answer with one word.",
                "",
                label,
                CAT,
                True,
                origin="template",
            )
        )

    # --- generated numbers, labels computed ---
    seen = set()
    evens = odds = 0
    while evens + odds < 8:
        n = rng.randint(11, 9999)
        if n in seen or (n % 2 == 0 and evens >= 4) or (n % 2 and odds >= 4):
            continue
        seen.add(n)
        evens += n % 2 == 0
        odds += n % 2 == 1
        label = "even" if n % 2 == 0 else "odd"
        out.append(
            rec(
                "Is this number even or odd? Answer with one word.",
                str(n),
                label,
                CAT,
                True,
                origin="template",
            )
        )
    primes = composites = 0
    seen = set()
    while primes + composites < 8:
        n = rng.randint(11, 199)
        # skip even numbers and multiples of 5: too easy to spot
        if n in seen or n % 2 == 0 or n % 5 == 0:
            continue
        p = _is_prime(n)
        if (p and primes >= 4) or (not p and composites >= 4):
            continue
        seen.add(n)
        primes += p
        composites += not p
        out.append(
            rec(
                f"Is {n} a prime number? Answer yes or no.",
                "",
                "yes" if p else "no",
                CAT,
                True,
                origin="template",
            )
        )
    return out
