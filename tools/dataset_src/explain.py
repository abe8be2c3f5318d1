"""explain: short explanations of concepts (all hand-written)."""

from __future__ import annotations

from ._common import rec

CAT = "explain"

# (instruction, input, output)
HAND = [
    (
        "Explain photosynthesis in one or two sentences.",
        "",
        "Photosynthesis is the process plants use to turn sunlight, water, and carbon dioxide "
        "into sugar for energy. It releases oxygen as a by-product.",
    ),
    (
        "Why is the sky blue? Explain briefly.",
        "",
        "Sunlight is scattered by the molecules in the air, and blue light is scattered much "
        "more than red light, so blue reaches our eyes from all directions.",
    ),
    (
        "Explain what gravity is in simple terms.",
        "",
        "Gravity is the force that pulls objects with mass toward each other. It keeps us on "
        "the ground and keeps the Moon orbiting the Earth.",
    ),
    (
        "What is inflation? Explain in one or two sentences.",
        "",
        "Inflation is the general rise in prices over time. As prices rise, the same amount of "
        "money buys fewer goods and services.",
    ),
    (
        "Explain what a noun is.",
        "",
        "A noun is a word that names a person, place, thing, or idea, such as 'teacher', "
        "'city', or 'happiness'.",
    ),
    (
        "Explain what a verb is, with an example.",
        "",
        "A verb is a word that describes an action or a state. In 'She runs every morning', "
        "the verb is 'runs'.",
    ),
    (
        "What does a CPU do in a computer?",
        "",
        "The CPU, or central processing unit, carries out the instructions of programs. It does "
        "the calculations and controls the other parts of the computer.",
    ),
    (
        "Explain the difference between RAM and storage.",
        "",
        "RAM is fast, temporary memory that holds what the computer is working on right now. "
        "Storage, like an SSD, keeps files permanently, even when the power is off.",
    ),
    (
        "Explain what recursion is in programming.",
        "",
        "Recursion is when a function calls itself to solve smaller parts of a problem. It needs "
        "a base case so that it eventually stops.",
    ),
    (
        "What is a vaccine? Explain briefly.",
        "",
        "A vaccine trains the immune system to recognize a germ without causing the disease, so "
        "the body can fight that germ quickly if it meets it later.",
    ),
    (
        "Explain evaporation in simple words.",
        "",
        "Evaporation is when a liquid turns into a gas. For example, puddles dry up because the "
        "water slowly becomes water vapor in the air.",
    ),
    (
        "Explain compound interest in one or two sentences.",
        "",
        "Compound interest is interest earned on both the original money and the interest "
        "already added. Over time, this makes savings grow faster and faster.",
    ),
    (
        "What is a metaphor? Give an example.",
        "",
        "A metaphor describes something by saying it is something else. For example, 'Time is "
        "a thief' suggests that time steals moments from us.",
    ),
    (
        "Explain supply and demand briefly.",
        "",
        "When many people want something that is scarce, its price tends to rise. When there is "
        "plenty of it and few buyers, the price tends to fall.",
    ),
    (
        "What is an ecosystem?",
        "",
        "An ecosystem is a community of living things, such as plants, animals, and microbes, "
        "together with their environment, all interacting with each other.",
    ),
    (
        "Explain why we have leap years.",
        "",
        "A year on Earth is about 365 and a quarter days long. Adding one extra day every four "
        "years keeps the calendar in line with the seasons.",
    ),
    (
        "Explain the water cycle in two sentences.",
        "",
        "Water evaporates from oceans and lakes, rises, and condenses into clouds. It then falls "
        "as rain or snow and flows back to the seas, and the cycle repeats.",
    ),
    (
        "What is friction?",
        "",
        "Friction is a force that resists motion when two surfaces rub against each other. It is "
        "why a ball rolling on grass slows down and stops.",
    ),
    (
        "Explain what an atom is.",
        "",
        "An atom is the smallest unit of a chemical element. It has a nucleus of protons and "
        "neutrons, surrounded by electrons.",
    ),
    (
        "What is DNA? Explain in simple terms.",
        "",
        "DNA is a molecule inside cells that carries the instructions for how a living thing "
        "grows, works, and reproduces. It is passed from parents to children.",
    ),
    (
        "Explain what a fever is.",
        "",
        "A fever is a body temperature higher than normal. It is often a sign that the body is "
        "fighting an infection.",
    ),
    (
        "What is machine learning? Explain briefly.",
        "",
        "Machine learning is a way of building computer programs that learn patterns from "
        "examples instead of following only hand-written rules.",
    ),
    (
        "Explain what a password manager does.",
        "",
        "A password manager stores your passwords in an encrypted vault and can create strong, "
        "unique passwords, so you only need to remember one master password.",
    ),
    (
        "Why should you make a budget? Explain briefly.",
        "",
        "A budget shows where your money goes. It helps you avoid overspending and save for "
        "things that matter to you.",
    ),
    (
        "Explain why ice floats on water.",
        "",
        "When water freezes, its molecules form an open structure that takes up more space. "
        "This makes ice less dense than liquid water, so it floats.",
    ),
    (
        "What causes the seasons on Earth?",
        "",
        "The Earth's axis is tilted. As the Earth orbits the Sun, each hemisphere gets more direct "
        "sunlight for part of the year, which causes summer, and less for another part, which "
        "causes winter.",
    ),
    (
        "Explain what a fraction is.",
        "",
        "A fraction shows a part of a whole. In 3/4, the whole is split into 4 equal parts and "
        "we take 3 of them.",
    ),
    (
        "What is a prime number?",
        "",
        "A prime number is a whole number greater than 1 that can only be divided evenly by 1 "
        "and itself, such as 2, 3, 5, or 7.",
    ),
    (
        "Explain what an adjective is.",
        "",
        "An adjective is a word that describes a noun, such as 'tall', 'blue', or 'noisy' in "
        "'a noisy classroom'.",
    ),
    (
        "What is the difference between weather and climate?",
        "",
        "Weather is what the atmosphere is doing on a particular day, like rain or sun. Climate "
        "is the typical weather of a place over many years.",
    ),
    (
        "Explain how a rainbow forms.",
        "",
        "A rainbow forms when sunlight enters raindrops, bends, reflects inside them, and "
        "splits into its different colors.",
    ),
    (
        "What does an antibiotic do?",
        "",
        "An antibiotic is a medicine that kills bacteria or stops them from growing. It does "
        "not work against viruses, such as those that cause colds.",
    ),
    (
        "Explain what a web browser is.",
        "",
        "A web browser is a program that lets you find, open, and view web pages, such as "
        "Firefox, Chrome, or Safari.",
    ),
    (
        "What is the difference between a virus and bacteria?",
        "",
        "Bacteria are tiny living cells that can live on their own. Viruses are much smaller and "
        "can only multiply inside the cells of another living thing.",
    ),
    (
        "Explain what an average is.",
        "",
        "The average, or mean, is found by adding all the values and dividing by how many "
        "values there are. The average of 2, 4, and 6 is 4.",
    ),
    (
        "What is a percentage?",
        "",
        "A percentage is a number out of 100. For example, 25 percent means 25 out of every 100, "
        "or one quarter.",
    ),
    (
        "Explain why metal feels colder than wood at the same temperature.",
        "",
        "Metal conducts heat much better than wood, so it draws heat away from your hand more "
        "quickly, which makes it feel colder.",
    ),
    (
        "Explain what democracy means.",
        "",
        "Democracy is a system of government in which citizens choose their leaders and help "
        "make decisions, usually by voting in elections.",
    ),
    (
        "What is erosion?",
        "",
        "Erosion is the slow wearing away of rock and soil by wind, water, or ice, which then "
        "carry the material to other places.",
    ),
    (
        "Explain what a spreadsheet is used for.",
        "",
        "A spreadsheet organizes data in rows and columns. It is used to store lists, do "
        "calculations, and make charts.",
    ),
    (
        "What is a habitat?",
        "",
        "A habitat is the natural home of an animal or plant, where it finds the food, water, "
        "and shelter it needs.",
    ),
    (
        "Explain why the Moon seems to change shape.",
        "",
        "The Moon does not make its own light. As it orbits the Earth, we see different amounts "
        "of its sunlit side, which creates the phases.",
    ),
    (
        "What does an electric circuit need in order to work?",
        "",
        "It needs a power source, such as a battery, and a complete loop of conducting material, "
        "such as wires, so current can flow through it.",
    ),
    (
        "Explain what a synonym is.",
        "",
        "A synonym is a word with the same or nearly the same meaning as another word, like "
        "'big' and 'large'.",
    ),
    (
        "Explain what interest on a loan is.",
        "",
        "Interest is the extra money you pay a lender for borrowing money. It is usually a "
        "percentage of the amount borrowed.",
    ),
    (
        "Why do we sweat?",
        "",
        "Sweating cools the body. When sweat evaporates from the skin, it carries heat away.",
    ),
    (
        "Explain what a food chain is.",
        "",
        "A food chain shows who eats whom in nature. For example, grass is eaten by a rabbit, "
        "and the rabbit is eaten by a fox.",
    ),
    (
        "What is the purpose of a thesis statement in an essay?",
        "",
        "A thesis statement states the main argument of an essay in one or two sentences, "
        "so the reader knows what the essay will show.",
    ),
    (
        "Explain what a computer virus is.",
        "",
        "A computer virus is a harmful program that copies itself into other files or computers "
        "and can damage data or steal information.",
    ),
    (
        "Explain why plants need sunlight.",
        "",
        "Plants use energy from sunlight to make their own food through photosynthesis. Without "
        "light, they cannot produce the sugar they need to grow.",
    ),
    (
        "What is the difference between speed and velocity?",
        "",
        "Speed tells you how fast something moves. Velocity tells you how fast it moves and in "
        "which direction.",
    ),
    (
        "Explain what an opinion poll is.",
        "",
        "An opinion poll asks a sample of people the same questions to estimate what a larger "
        "group thinks about a topic.",
    ),
    (
        "What is a calorie?",
        "",
        "A calorie is a unit of energy. On food labels, it shows how much energy the food gives "
        "the body.",
    ),
    (
        "Explain what a simile is.",
        "",
        "A simile compares two things using 'like' or 'as', for example, 'as brave as a lion'.",
    ),
    # with input: explain a given term, saying, or piece of code
    (
        "Explain what this idiom means.",
        "It's raining cats and dogs.",
        "It means it is raining very heavily.",
    ),
    (
        "Explain the meaning of this proverb.",
        "Don't count your chickens before they hatch.",
        "Don't rely on a good result before it has actually happened.",
    ),
    (
        "Explain what this idiom means.",
        "Break the ice.",
        "To break the ice means to say or do something that makes people feel more relaxed when "
        "they first meet.",
    ),
    (
        "Explain the meaning of this saying.",
        "Practice makes perfect.",
        "Doing something again and again is the way to become very good at it.",
    ),
    (
        "Explain what this Python code does.",
        "total = sum([1, 2, 3])",
        "It adds the numbers 1, 2, and 3 and stores the result, 6, in the variable total.",
    ),
    (
        "Explain what this Python code does.",
        "for i in range(3):\n    print(i)",
        "It prints the numbers 0, 1, and 2, each on its own line.",
    ),
    (
        "Explain this term in simple words.",
        "carbon footprint",
        "A carbon footprint is the total amount of greenhouse gases caused by a person, product, "
        "or activity.",
    ),
    (
        "Explain this term in simple words.",
        "renewable energy",
        "Renewable energy comes from sources that do not run out, such as sunlight, wind, and "
        "flowing water.",
    ),
    (
        "Explain this term briefly.",
        "hibernation",
        "Hibernation is a long period of very low activity, a bit like deep sleep, that some "
        "animals, such as hedgehogs, use to save energy during winter.",
    ),
    ("Explain what this idiom means.", "Once in a blue moon.", "It means very rarely."),
]


def records(rng):
    return [rec(i, x, o, CAT, False) for i, x, o in HAND]
