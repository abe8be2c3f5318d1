"""advice: short, practical everyday tips (hand-written)."""

from __future__ import annotations

from ._common import CONCISE, LIST_OF_THREE, conv

CAT = "advice"

SINGLE = [
    (
        "How can I sleep better?",
        "Keep a regular bedtime, avoid screens for an hour before bed, and keep your bedroom cool "
        "and dark.",
    ),
    (
        "How do I stay motivated to exercise?",
        "Pick an activity you enjoy, set small goals, and schedule workouts like appointments.",
    ),
    (
        "Any tips for a job interview?",
        "Research the company, prepare short examples of your work, arrive early, and ask a "
        "thoughtful question at the end.",
    ),
    (
        "How can I drink more water?",
        "Carry a refillable bottle, drink a glass with each meal, and set reminders on your phone.",
    ),
    (
        "How do I keep my houseplants alive?",
        "Check the soil before watering, give them the right amount of light, and don't let pots "
        "sit in water.",
    ),
    (
        "How can I learn new words faster?",
        "Use flashcards, review them a little every day, and use new words in your own sentences.",
    ),
    (
        "How do I make a good first impression?",
        "Smile, make eye contact, listen carefully, and remember the other person's name.",
    ),
    (
        "How can I save money on groceries?",
        "Make a list, plan meals for the week, buy store brands, and avoid shopping when hungry.",
    ),
    (
        "How can I reduce stress?",
        "Take short walks, breathe slowly for a minute, get enough sleep, and talk to someone you "
        "trust.",
    ),
    (
        "Any tips for public speaking?",
        "Practice out loud, learn your opening lines by heart, speak slowly, and pause to breathe.",
    ),
    (
        "How do I stop procrastinating?",
        "Break the task into tiny steps, start with just five minutes, and remove distractions.",
    ),
    (
        "How can I make my phone battery last longer?",
        "Lower the screen brightness, close apps you don't use, and turn off Bluetooth when you "
        "don't need it.",
    ),
    (
        "How do I write a good email?",
        "Use a clear subject line, state your point early, keep it short, and end politely.",
    ),
    (
        "How can I be more productive in the morning?",
        "Prepare the night before, start with your most important task, and keep your phone away "
        "for the first hour.",
    ),
    (
        "What should I pack for a day hike?",
        "Bring water, snacks, sunscreen, a light jacket, a map, and a charged phone.",
    ),
    (
        "How can I make new friends as an adult?",
        "Join a class, club or volunteer group, and keep showing up so people get to know you.",
    ),
    (
        "How do I take better notes in class?",
        "Write key ideas in your own words, use short headings, and review your notes the same day.",
    ),
    (
        "How can I cut down on sugar?",
        "Swap sugary drinks for water, read food labels, and keep fruit around for sweet cravings.",
    ),
    (
        "How do I prepare for a long flight?",
        "Wear comfortable clothes, drink water, stretch now and then, and bring headphones and a "
        "snack.",
    ),
    (
        "How can I keep my desk tidy?",
        "Clear it at the end of each day, keep only daily items on top, and use a tray for papers.",
    ),
]

MULTI = [
    [
        (
            "I can't fall asleep at night.",
            "Try a fixed bedtime, no screens an hour before bed, and a cool, dark room.",
        ),
        (
            "What if I still lie awake?",
            "Get up, do something calm in dim light, and go back to bed when you feel sleepy.",
        ),
    ],
    [
        (
            "I want to start running.",
            "Great goal! Start with short run-walk sessions three times a week.",
        ),
        (
            "How long should each session be?",
            "About 20 to 30 minutes is plenty at first, including the walking breaks.",
        ),
    ],
    [
        (
            "My tomato plants have yellow leaves.",
            "That can come from overwatering or from a lack of nutrients.",
        ),
        (
            "What should I do?",
            "Let the soil dry a little between waterings and add a balanced fertilizer.",
        ),
    ],
    [
        ("I have an exam in a week.", "Plenty of time to prepare well. What subject is it?"),
        (
            "History.",
            "Make a timeline of key events, quiz yourself daily, and explain topics out loud.",
        ),
    ],
    [
        ("I want to eat healthier.", "A good first step is adding a vegetable to every meal."),
        ("Give me one more tip.", "Cook at home more often so you control the ingredients."),
    ],
    [
        (
            "How can I focus when working from home?",
            "Set up a fixed workspace, keep regular hours, and take short breaks.",
        ),
        (
            "My family keeps interrupting me.",
            "Share your schedule with them and use a closed door as a sign during focus time.",
        ),
    ],
    [
        (
            "My laptop is running slowly.",
            "Try restarting it and closing programs you are not using.",
        ),
        (
            "It's still slow.",
            "Check for updates, free up disk space, and uninstall apps you no longer need.",
        ),
    ],
    [
        (
            "I'm going camping for the first time.",
            "Exciting! Practice setting up your tent at home first.",
        ),
        (
            "What food should I bring?",
            "Bring easy options like pasta, canned beans, trail mix, fruit, and plenty of water.",
        ),
        (
            "Thanks! Anything else?",
            "Pack a flashlight, a first aid kit, and warm layers for the night.",
        ),
    ],
]

EXACT = [
    [("Should you reuse the same password on many websites? Answer yes or no.", "no")],
    [("Should I water most succulents every day? Answer yes or no.", "no")],
    [("Is it safe to leave a hot pan on the stove unattended? Answer yes or no.", "no")],
    [("Should you keep a backup copy of important files? Answer yes or no.", "yes")],
    [
        ("I keep forgetting my passwords.", "A password manager can store them safely for you."),
        ("Should I write them on a sticky note on my screen instead? Answer yes or no.", "no"),
    ],
]

CONCISE_TIPS = [
    (
        "How can I remember people's names?",
        "Repeat the name when you meet someone and link it to something about them.",
    ),
    (
        "How do I keep my kitchen knives sharp?",
        "Hone them often, sharpen them a few times a year, and never cut on glass.",
    ),
    (
        "How can I stay warm in winter without turning up the heating?",
        "Wear layers, use a warm blanket, and block drafts around doors and windows.",
    ),
    (
        "What's the best way to learn to type faster?",
        "Practice touch typing for ten minutes a day without looking at the keys.",
    ),
    (
        "How do I get rid of hiccups?",
        "Try sipping cold water slowly or holding your breath for a few seconds.",
    ),
    (
        "How can I waste less food?",
        "Plan your meals, store leftovers well, and eat the oldest food first.",
    ),
]

LISTS = [
    [
        (
            "How can I improve my posture?",
            "1. Keep your screen at eye level.\n2. Sit with your feet flat on the floor.\n"
            "3. Stand up and stretch every hour.",
        )
    ],
    [
        (
            "How do I start a vegetable garden?",
            "1. Pick a sunny spot.\n2. Start with easy plants like lettuce and beans.\n"
            "3. Water regularly, especially in dry weather.",
        )
    ],
    [
        (
            "How can I read more books?",
            "1. Carry a book with you.\n2. Read for ten minutes before bed.\n"
            "3. Pick books you truly enjoy.",
        )
    ],
    [
        (
            "How do I get ready for my first day at a new job?",
            "1. Plan your route and arrive early.\n2. Bring a notebook for questions.\n"
            "3. Introduce yourself to your teammates.",
        )
    ],
    [
        (
            "How can I spend less time on my phone?",
            "1. Turn off non-essential notifications.\n2. Keep your phone out of the bedroom.\n"
            "3. Set daily app time limits.",
        )
    ],
    [
        (
            "I want to learn to cook.",
            "1. Start with simple recipes.\n2. Learn basic knife skills.\n"
            "3. Cook the same dish a few times.",
        ),
        (
            "What dishes are good for beginners?",
            "1. Scrambled eggs.\n2. Pasta with tomato sauce.\n3. A vegetable stir-fry.",
        ),
    ],
]


def records(rng) -> list[dict]:
    out = [conv([t], CAT, False) for t in SINGLE]
    out += [conv(turns, CAT, False) for turns in MULTI]
    out += [conv(turns, CAT, True) for turns in EXACT]
    out += [conv([t], CAT, False, system=CONCISE) for t in CONCISE_TIPS]
    out += [conv(turns, CAT, False, system=LIST_OF_THREE) for turns in LISTS]
    return out
