"""open_qa: general-knowledge questions with well-established answers."""

from __future__ import annotations

from ._common import cycle, rec

CAT = "open_qa"

# (question, answer) -- hand-written, exact short answers.
HAND_EXACT = [
    ("How many legs does a spider have? Give only the number.", "8"),
    ("What is the largest planet in our solar system? Answer with one word.", "Jupiter"),
    ("Which planet is closest to the Sun? Answer with one word.", "Mercury"),
    ("Which planet is known as the Red Planet? Answer with one word.", "Mars"),
    ("Which planet is best known for its bright ring system? Answer with one word.", "Saturn"),
    ("What is the largest ocean on Earth? Answer with one word.", "Pacific"),
    ("Which ocean lies between Europe and North America? Answer with one word.", "Atlantic"),
    ("How many days are there in a leap year? Give only the number.", "366"),
    (
        "What is the boiling point of water at sea level in degrees Celsius? Give only the number.",
        "100",
    ),
    ("What is the freezing point of water in degrees Fahrenheit? Give only the number.", "32"),
    ("What is the freezing point of water in degrees Celsius? Give only the number.", "0"),
    ("Who painted the Mona Lisa? Give only the name.", "Leonardo da Vinci"),
    ("Who developed the theory of relativity? Give only the name.", "Albert Einstein"),
    ("Who was the first person to walk on the Moon? Give only the name.", "Neil Armstrong"),
    ("In which year did humans first land on the Moon? Give only the year.", "1969"),
    (
        "Which gas do plants take in from the air for photosynthesis? Answer with two words.",
        "carbon dioxide",
    ),
    ("What is the hardest natural substance? Answer with one word.", "diamond"),
    ("What is the largest mammal on Earth? Answer with the animal's name only.", "blue whale"),
    ("What is the fastest land animal? Answer with one word.", "cheetah"),
    ("Which gas makes up most of Earth's atmosphere? Answer with one word.", "nitrogen"),
    ("How many sides does a hexagon have? Give only the number.", "6"),
    ("How many squares are there on a chessboard? Give only the number.", "64"),
    (
        "How many players from each team are on the field in a soccer match? Give only the number.",
        "11",
    ),
    ("Who discovered penicillin? Give only the name.", "Alexander Fleming"),
    ("What is the chemical formula of water? Give only the formula.", "H2O"),
    ("What is the currency of Japan? Answer with one word.", "yen"),
    ("What language is mainly spoken in Brazil? Answer with one word.", "Portuguese"),
    ("What language is mainly spoken in Argentina? Answer with one word.", "Spanish"),
    ("What is the largest country in the world by area? Answer with one word.", "Russia"),
    ("What is the tallest mountain in the world above sea level? Answer with one word.", "Everest"),
    ("What is the smallest prime number? Give only the number.", "2"),
    ("How many hours are there in a day? Give only the number.", "24"),
    ("What do bees make from nectar? Answer with one word.", "honey"),
    ("Which organ pumps blood through the human body? Answer with one word.", "heart"),
    ("How many strings does a standard violin have? Give only the number.", "4"),
    ("What is the main ingredient of guacamole? Answer with one word.", "avocado"),
    ("What is the longest bone in the human body? Answer with one word.", "femur"),
    ("What force keeps the planets in orbit around the Sun? Answer with one word.", "gravity"),
    ("How many bones does an adult human body usually have? Give only the number.", "206"),
    ("Which element has the atomic number 1? Answer with one word.", "hydrogen"),
    (
        "What is the name of the galaxy that contains our solar system? Give only the name.",
        "Milky Way",
    ),
    (
        "Who formulated the laws of motion and universal gravitation? Give only the name.",
        "Isaac Newton",
    ),
    ("How many degrees are there in a right angle? Give only the number.", "90"),
    ("How many years are there in a century? Give only the number.", "100"),
    ("In which country are the pyramids of Giza? Answer with one word.", "Egypt"),
    ("Which musical instrument usually has 88 keys? Answer with one word.", "piano"),
    ("What does DNA stand for? Give only the full name.", "deoxyribonucleic acid"),
    ("What does CPU stand for? Give only the full name.", "central processing unit"),
    (
        "What does NASA stand for? Give only the full name.",
        "National Aeronautics and Space Administration",
    ),
    ("What is a baby cat called? Answer with one word.", "kitten"),
    ("What is a baby dog called? Answer with one word.", "puppy"),
    ("What is a baby sheep called? Answer with one word.", "lamb"),
    ("What is a baby horse called? Answer with one word.", "foal"),
    ("What is a young frog that lives in water called? Answer with one word.", "tadpole"),
]

# (question, answer) -- hand-written, free-form answers.
HAND_FREE = [
    (
        "What is the main job of the heart?",
        "The heart pumps blood around the body, carrying oxygen and nutrients to the organs.",
    ),
    ("What are the three common states of matter?", "Solid, liquid, and gas."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
    ("What are the three primary colors of light?", "Red, green, and blue."),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies or moths."),
    ("Name two renewable sources of energy.", "Solar power and wind power."),
    ("Name two animals that are marsupials.", "Kangaroos and koalas."),
    (
        "Who was Marie Curie?",
        "Marie Curie was a physicist and chemist who pioneered research on radioactivity and won "
        "Nobel Prizes in both physics and chemistry.",
    ),
    (
        "Who was William Shakespeare?",
        "William Shakespeare was an English playwright and poet who wrote plays such as Hamlet "
        "and Romeo and Juliet.",
    ),
    (
        "What is the Great Wall of China?",
        "It is a long series of walls and fortifications built across northern China over many "
        "centuries to defend against invasions.",
    ),
    ("What happens to water when it freezes?", "It turns into solid ice and expands slightly."),
    ("What do herbivores eat?", "Herbivores eat plants."),
    (
        "What are the colors of the rainbow?",
        "Red, orange, yellow, green, blue, indigo, and violet.",
    ),
    (
        "Name the planets of the solar system in order from the Sun.",
        "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, and Neptune.",
    ),
    (
        "What is the function of the lungs?",
        "The lungs take oxygen from the air into the blood and remove carbon dioxide from the body.",
    ),
    (
        "What is the difference between a lake and a sea?",
        "A lake is a body of water surrounded by land and is usually fresh water, while a sea "
        "is a large area of salt water that is usually part of an ocean.",
    ),
    (
        "Why do people wear seat belts in cars?",
        "Seat belts hold people in place during a crash, which greatly reduces the risk of serious injury.",
    ),
    (
        "What is the Sun?",
        "The Sun is the star at the center of our solar system. It gives Earth light and heat.",
    ),
    (
        "What do roots do for a plant?",
        "Roots hold the plant in the ground and take in water and nutrients from the soil.",
    ),
    (
        "What is a continent? Give two examples.",
        "A continent is one of Earth's very large land masses, such as Africa or Asia.",
    ),
    ("Name three musical instruments in an orchestra.", "Violin, flute, and trumpet."),
    (
        "What is the job of a firefighter?",
        "A firefighter puts out fires, rescues people in danger, and helps in emergencies.",
    ),
    (
        "What are vitamins?",
        "Vitamins are nutrients the body needs in small amounts to grow and stay healthy.",
    ),
    ("What is an island?", "An island is a piece of land completely surrounded by water."),
]

# ---- fact tables (templated) ----
CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Kenya", "Nairobi"),
    ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Greece", "Athens"),
    ("Ireland", "Dublin"),
    ("Hungary", "Budapest"),
    ("Thailand", "Bangkok"),
    ("South Korea", "Seoul"),
    ("Cuba", "Havana"),
    ("New Zealand", "Wellington"),
    ("Ghana", "Accra"),
    ("Russia", "Moscow"),
    ("Denmark", "Copenhagen"),
    ("Chile", "Santiago"),
]
CAPITAL_PHRASES = [
    ("What is the capital of {x}? Answer with the city name only.", False),
    ("Name the capital city of {x}. Give only the city name.", False),
    ("What is the capital city of this country? Answer with the city name only.", True),
]

ELEMENTS = [
    ("hydrogen", "H"),
    ("helium", "He"),
    ("carbon", "C"),
    ("nitrogen", "N"),
    ("oxygen", "O"),
    ("sodium", "Na"),
    ("potassium", "K"),
    ("iron", "Fe"),
    ("copper", "Cu"),
    ("silver", "Ag"),
    ("gold", "Au"),
    ("lead", "Pb"),
    ("calcium", "Ca"),
    ("zinc", "Zn"),
    ("chlorine", "Cl"),
]

BOOKS = [
    ("Pride and Prejudice", "Jane Austen"),
    ("the novel 1984", "George Orwell"),
    ("Animal Farm", "George Orwell"),
    ("Hamlet", "William Shakespeare"),
    ("Romeo and Juliet", "William Shakespeare"),
    ("Moby-Dick", "Herman Melville"),
    ("War and Peace", "Leo Tolstoy"),
    ("Don Quixote", "Miguel de Cervantes"),
    ("Frankenstein", "Mary Shelley"),
    ("Dracula", "Bram Stoker"),
    ("Oliver Twist", "Charles Dickens"),
    ("Crime and Punishment", "Fyodor Dostoevsky"),
    ("Alice's Adventures in Wonderland", "Lewis Carroll"),
    ("Treasure Island", "Robert Louis Stevenson"),
    ("The Adventures of Tom Sawyer", "Mark Twain"),
    ("To Kill a Mockingbird", "Harper Lee"),
]


def records(rng):
    out = [rec(q, "", a, CAT, True) for q, a in HAND_EXACT]
    out += [rec(q, "", a, CAT, False) for q, a in HAND_FREE]
    for i, (country, city) in enumerate(CAPITALS):
        template, uses_input = cycle(CAPITAL_PHRASES, i)
        out.append(
            rec(
                template.format(x=country),
                country if uses_input else "",
                city,
                CAT,
                True,
                origin="template",
            )
        )
    for i, (name, symbol) in enumerate(ELEMENTS):
        if i % 3 == 2:  # reverse direction: symbol -> name
            out.append(
                rec(
                    f"Which chemical element has the symbol {symbol}? Answer with one word.",
                    "",
                    name,
                    CAT,
                    True,
                    origin="template",
                )
            )
        else:
            out.append(
                rec(
                    f"What is the chemical symbol for {name}? Give only the symbol.",
                    "",
                    symbol,
                    CAT,
                    True,
                    origin="template",
                )
            )
    for book, author in BOOKS:
        out.append(
            rec(
                f"Who wrote {book}? Give only the author's name.",
                "",
                author,
                CAT,
                True,
                origin="template",
            )
        )
    return out
