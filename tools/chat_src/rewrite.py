"""rewrite: tone, length, voice and tense changes, grammar and spelling fixes.

Free-form rewrites are hand-written; follow-ups ("Now make it shorter.") act on the
previous reply.  Spelling fixes and contractions give short checkable answers.
"""

from __future__ import annotations

from ._common import EDITOR, conv, cycle

CAT = "rewrite"
KIDS = "You rewrite text for young children, using short and simple words."

SINGLE = [
    (
        "Make this more formal: hey, can you send me the report asap?",
        "Hello, could you please send me the report as soon as possible?",
    ),
    ("Rewrite in the passive voice: The chef cooked the meal.", "The meal was cooked by the chef."),
    (
        "Rewrite in the passive voice: The storm damaged the roof.",
        "The roof was damaged by the storm.",
    ),
    (
        "Make this shorter: I am writing to let you know that I will not be able to come to the "
        "meeting tomorrow.",
        "I can't attend tomorrow's meeting.",
    ),
    (
        "Make this sound friendlier: Submit your form by Friday.",
        "Please send in your form by Friday. Thanks so much!",
    ),
    ("Fix the grammar: She don't like apples.", "She doesn't like apples."),
    ("Fix the grammar: Me and him goes to school together.", "He and I go to school together."),
    (
        "Rewrite this in simple words: The physician recommended increased fluid intake.",
        "The doctor said to drink more water.",
    ),
    ("Make this more polite: Give me the salt.", "Could you please pass me the salt?"),
    (
        "Rewrite in the past tense: I walk to work and buy a coffee.",
        "I walked to work and bought a coffee.",
    ),
    ("Rewrite in the future tense: We visit our grandparents.", "We will visit our grandparents."),
    ("Turn this into a question: The store opens at nine.", "Does the store open at nine?"),
    (
        "Make this sentence more exciting: We went to the beach.",
        "We raced down to the sparkling beach for a day of sun and waves!",
    ),
    (
        "Rewrite this as a headline: Scientists found a new species of frog in the rainforest.",
        "Scientists Discover New Frog Species in Rainforest",
    ),
    ("Make this formal: Thanks a ton for the help!", "Thank you very much for your assistance."),
    (
        "Combine into one sentence: It was raining. We stayed inside.",
        "It was raining, so we stayed inside.",
    ),
    ("Rewrite in the active voice: The letter was written by Maria.", "Maria wrote the letter."),
    (
        "Remove the filler words: So, basically, I just really think we should, like, leave now.",
        "I think we should leave now.",
    ),
]

MULTI = [
    [
        (
            "Make this more formal: can't come tomorrow, sorry.",
            "I apologize, but I will be unable to attend tomorrow.",
        ),
        ("Now make it shorter.", "Apologies, I cannot attend tomorrow."),
    ],
    [
        (
            "Rewrite in the passive voice: The dog chased the ball.",
            "The ball was chased by the dog.",
        ),
        ("Now put it in the future tense.", "The ball will be chased by the dog."),
    ],
    [
        (
            "Make this friendlier: Meeting moved to 3 pm.",
            "Quick heads-up: our meeting is now at 3 pm. See you then!",
        ),
        ("Now make it formal instead.", "Please note that the meeting has been moved to 3 pm."),
    ],
    [
        (
            "Fix the spelling: I recieved your mesage yesterday.",
            "I received your message yesterday.",
        ),
        ("Now make it more formal.", "I received your correspondence yesterday."),
    ],
    [
        (
            "Rewrite for a child: The Sun is a star at the center of our solar system.",
            "The Sun is a big, hot star, and Earth goes around it.",
        ),
        ("Make it even shorter.", "The Sun is a big star."),
    ],
    [
        (
            "Make this polite: Stop talking during the film.",
            "Could you please keep quiet during the film?",
        ),
        (
            "Now make it firmer, but still polite.",
            "Please stop talking during the film. Thank you.",
        ),
    ],
    [
        (
            "Shorten this: The meeting that was planned for Monday has been moved to Tuesday instead.",
            "Monday's meeting is now on Tuesday.",
        ),
        ("Now turn it into a question.", "Is Monday's meeting now on Tuesday?"),
    ],
    [
        ("Rewrite in the past tense: She runs to the bus stop.", "She ran to the bus stop."),
        ("Now make it negative.", "She did not run to the bus stop."),
        ("And now turn it into a question.", "Did she not run to the bus stop?"),
    ],
]

SPELLING = [
    ("recieve", "receive"),
    ("seperate", "separate"),
    ("occured", "occurred"),
    ("tommorow", "tomorrow"),
    ("accomodate", "accommodate"),
    ("wierd", "weird"),
    ("untill", "until"),
    ("begining", "beginning"),
    ("goverment", "government"),
    ("neccessary", "necessary"),
    ("calender", "calendar"),
    ("freind", "friend"),
]
SPELLING_Q = [
    "Fix the spelling of '{w}'. Reply with the word only.",
    "Correct this misspelled word: {w}. Give only the corrected word.",
    "How do you spell '{w}' correctly? Answer with one word.",
]
CONTRACTIONS = [
    ("do not", "don't"),
    ("I am", "I'm"),
    ("they are", "they're"),
    ("will not", "won't"),
    ("we have", "we've"),
]

SYSTEM = [
    (
        EDITOR,
        "Make this formal: gonna be late, traffic is crazy.",
        "I will be late because the traffic is very heavy.",
    ),
    (
        EDITOR,
        "Make this polite: Send me the file now.",
        "Could you please send me the file when you have a moment?",
    ),
    (
        EDITOR,
        "Shorten: In my personal opinion, I think that the movie was really very good.",
        "I think the movie was very good.",
    ),
    (
        EDITOR,
        "Fix the grammar: There is many reasons to learn a language.",
        "There are many reasons to learn a language.",
    ),
    (
        EDITOR,
        "Make this sound confident: I think maybe I could possibly lead the project.",
        "I can lead the project.",
    ),
    (
        EDITOR,
        "Rewrite in the passive voice: The committee approved the new budget.",
        "The new budget was approved by the committee.",
    ),
    (
        KIDS,
        "Rewrite: The precipitation will persist throughout the afternoon.",
        "It will keep raining all afternoon.",
    ),
    (
        KIDS,
        "Rewrite: Photosynthesis allows plants to produce nourishment from sunlight.",
        "Plants use sunlight to make their own food.",
    ),
    (
        KIDS,
        "Rewrite: Please refrain from running in the corridors.",
        "Please walk, don't run, in the halls.",
    ),
    (
        KIDS,
        "Rewrite: The elephant is the largest land mammal on Earth.",
        "The elephant is the biggest animal that lives on land.",
    ),
]


def records(rng) -> list[dict]:
    out = [conv([t], CAT, False) for t in SINGLE]
    out += [conv(turns, CAT, False) for turns in MULTI]
    out += [conv([(u, a)], CAT, False, system=s) for s, u, a in SYSTEM]
    for i, (wrong, right) in enumerate(SPELLING):
        out.append(
            conv([(cycle(SPELLING_Q, i).format(w=wrong), right)], CAT, True, origin="template")
        )
    for phrase, short in CONTRACTIONS:
        out.append(
            conv(
                [(f"Write '{phrase}' as a contraction. Reply with the contraction only.", short)],
                CAT,
                True,
                origin="template",
            )
        )
    # The final question is about the assistant's own previous reply.
    fixed = "I believe we will arrive tomorrow."
    out.append(
        conv(
            [
                ("Fix the spelling: I beleive we will arive tommorow.", fixed),
                ("How many words did you correct? Give only the number.", "3"),
            ],
            CAT,
            True,
        )
    )
    shorter = "The office is closed on Friday."
    out.append(
        conv(
            [
                (
                    "Make this shorter: Please be aware that the office will be closed for "
                    "the whole day on Friday.",
                    shorter,
                ),
                (
                    "How many words are in your shorter version? Give only the number.",
                    str(len(shorter.split())),
                ),
            ],
            CAT,
            True,
        )
    )
    return out
