"""rewrite: paraphrase, tone, grammar, voice, tense and word-form changes."""

from __future__ import annotations

from ._common import cycle, rec

CAT = "rewrite"

# (instruction, input, output) -- hand-written, free-form answers.
HAND = [
    # paraphrase / plain language
    (
        "Paraphrase the sentence.",
        "The meeting was postponed because the manager was ill.",
        "The meeting was delayed since the manager was sick.",
    ),
    (
        "Rewrite this sentence using different words.",
        "It started raining as soon as we left the house.",
        "The rain began the moment we stepped outside.",
    ),
    (
        "Paraphrase the following sentence.",
        "Regular exercise improves both mood and sleep.",
        "Working out often helps you feel better and sleep better.",
    ),
    (
        "Say the same thing in simpler words.",
        "The committee reached a unanimous decision.",
        "Everyone on the committee agreed.",
    ),
    (
        "Rewrite the sentence so it is easier to read.",
        "Due to the fact that the road was closed, we were obliged to take a detour.",
        "Because the road was closed, we had to take another route.",
    ),
    (
        "Paraphrase this sentence.",
        "The museum is closed on Mondays.",
        "The museum does not open on Mondays.",
    ),
    (
        "Rewrite the sentence in plain English.",
        "Please refrain from consuming food in the laboratory.",
        "Please do not eat in the lab.",
    ),
    (
        "Restate the sentence in your own words.",
        "Tickets sold out within an hour.",
        "All the tickets were gone in less than an hour.",
    ),
    (
        "Simplify this sentence.",
        "The physician advised the patient to increase fluid intake.",
        "The doctor told the patient to drink more water.",
    ),
    (
        "Rewrite this for a young child.",
        "Precipitation is expected throughout the afternoon.",
        "It will probably rain this afternoon.",
    ),
    # formal / informal
    (
        "Make this message more formal.",
        "Hey, can you send me the report asap?",
        "Hello, could you please send me the report as soon as possible?",
    ),
    (
        "Rewrite this in a formal tone.",
        "Sorry, I can't make it to the meeting tomorrow.",
        "I apologize, but I will be unable to attend tomorrow's meeting.",
    ),
    (
        "Make the sentence more formal.",
        "Thanks a lot for your help!",
        "Thank you very much for your assistance.",
    ),
    (
        "Rewrite the note so it sounds professional.",
        "The printer's broken again, somebody fix it.",
        "The printer is out of order again. Could someone please arrange a repair?",
    ),
    (
        "Turn this into a formal request.",
        "Give me a day off on Friday.",
        "May I please request a day off this Friday?",
    ),
    (
        "Rewrite this sentence formally.",
        "We gotta finish this by noon.",
        "We need to complete this by noon.",
    ),
    (
        "Rewrite this sentence in a casual, friendly tone.",
        "We regret to inform you that your order has been delayed.",
        "Sorry, your order is running a bit late.",
    ),
    (
        "Make this sound more relaxed and friendly.",
        "Attendance at the team lunch is requested.",
        "Come join us for the team lunch!",
    ),
    # grammar and spelling
    ("Correct the grammar in this sentence.", "She don't like apples.", "She doesn't like apples."),
    (
        "Fix the grammar mistakes.",
        "Me and him goes to the park every day.",
        "He and I go to the park every day.",
    ),
    (
        "Fix the spelling mistakes in this sentence.",
        "I recieved the pakage yesterday.",
        "I received the package yesterday.",
    ),
    (
        "Correct the sentence.",
        "There is many reasons to learn a new language.",
        "There are many reasons to learn a new language.",
    ),
    (
        "Fix the grammar.",
        "The childs was playing in the garden.",
        "The children were playing in the garden.",
    ),
    (
        "Correct any errors in the sentence.",
        "Their going to the beach tomorrow.",
        "They're going to the beach tomorrow.",
    ),
    (
        "Fix the verb tenses.",
        "Yesterday I go to the library and borrow two books.",
        "Yesterday I went to the library and borrowed two books.",
    ),
    (
        "Correct the punctuation and capitalization.",
        "where are you going asked tom",
        '"Where are you going?" asked Tom.',
    ),
    (
        "Fix the grammar in this sentence.",
        "He have lived here since five years.",
        "He has lived here for five years.",
    ),
    ("Correct the mistakes.", "Its a beautiful day, isnt it.", "It's a beautiful day, isn't it?"),
    (
        "Fix the spelling.",
        "We definately need to buy more bred.",
        "We definitely need to buy more bread.",
    ),
    # voice
    (
        "Rewrite the sentence in the passive voice.",
        "The chef cooked the meal.",
        "The meal was cooked by the chef.",
    ),
    (
        "Convert this sentence to passive voice.",
        "The students painted the mural.",
        "The mural was painted by the students.",
    ),
    (
        "Change the sentence to the passive voice.",
        "Someone stole my bike last night.",
        "My bike was stolen last night.",
    ),
    (
        "Rewrite in the passive voice.",
        "The committee will announce the winners on Friday.",
        "The winners will be announced by the committee on Friday.",
    ),
    (
        "Rewrite the sentence in the active voice.",
        "The letter was written by my grandmother.",
        "My grandmother wrote the letter.",
    ),
    (
        "Convert this sentence to active voice.",
        "The ball was kicked by the boy.",
        "The boy kicked the ball.",
    ),
    ("Change to active voice.", "The cake was eaten by the dog.", "The dog ate the cake."),
    # shorter / politer / kinder
    (
        "Make this sentence shorter without changing its meaning.",
        "In my personal opinion, I think that we should probably leave early.",
        "I think we should leave early.",
    ),
    (
        "Shorten this sentence.",
        "At this point in time, we are not able to offer a refund.",
        "We cannot offer a refund now.",
    ),
    (
        "Remove unnecessary words from the sentence.",
        "The reason why I am late is because the bus was late.",
        "I am late because the bus was late.",
    ),
    ("Make this request more polite.", "Close the window.", "Could you please close the window?"),
    (
        "Rewrite this more politely.",
        "Your essay is bad.",
        "Your essay has some good points, but it needs more work.",
    ),
    (
        "Make this sentence kinder.",
        "You're always late.",
        "I've noticed you've been late a few times. Is everything okay?",
    ),
    # tense, mood, sentence type
    (
        "Rewrite the sentence in the past tense.",
        "She walks to school every morning.",
        "She walked to school every morning.",
    ),
    (
        "Change the sentence to the future tense.",
        "We visit our grandparents.",
        "We will visit our grandparents.",
    ),
    (
        "Rewrite the sentence in the present tense.",
        "The birds sang in the trees.",
        "The birds sing in the trees.",
    ),
    (
        "Turn this statement into a question.",
        "The train leaves at six.",
        "Does the train leave at six?",
    ),
    (
        "Convert the sentence into a yes/no question.",
        "You have finished your homework.",
        "Have you finished your homework?",
    ),
    ("Rewrite the sentence as a negative statement.", "I like coffee.", "I do not like coffee."),
    (
        "Rewrite the sentence as an instruction.",
        "You should water the plants every morning.",
        "Water the plants every morning.",
    ),
    # combining and restructuring
    (
        "Combine these two sentences into one.",
        "The sun set. The sky turned orange.",
        "The sky turned orange as the sun set.",
    ),
    (
        "Join the two sentences with a suitable conjunction.",
        "I was tired. I finished the report.",
        "I was tired, but I finished the report.",
    ),
    (
        "Combine the sentences into one.",
        "Maria plays the piano. Maria also sings.",
        "Maria plays the piano and sings.",
    ),
    (
        "Rewrite this sentence to start with 'Although'.",
        "It was cold, but we went swimming.",
        "Although it was cold, we went swimming.",
    ),
    ("Rewrite the list as a sentence.", "milk, eggs, bread", "We need milk, eggs, and bread."),
    ("Rewrite in reported speech.", '"I am hungry," said Ben.', "Ben said that he was hungry."),
    (
        "Change the sentence to indirect speech.",
        'She said, "I will call you tomorrow."',
        "She said that she would call me the next day.",
    ),
    (
        "Rewrite the sentence in the third person plural.",
        "I love hiking in the mountains.",
        "They love hiking in the mountains.",
    ),
    (
        "Change the sentence from plural to singular.",
        "The cats are sleeping on the sofas.",
        "The cat is sleeping on the sofa.",
    ),
    (
        "Rewrite the sentence from singular to plural.",
        "The child is reading a book.",
        "The children are reading books.",
    ),
    # style
    (
        "Make this sentence more descriptive.",
        "The dog ran.",
        "The small brown dog raced across the muddy field.",
    ),
    (
        "Rewrite the sentence to sound more exciting.",
        "The team won the game.",
        "The team pulled off a thrilling last-minute victory!",
    ),
    (
        "Turn this headline into a full sentence.",
        "City Opens New Library",
        "The city has opened a new library.",
    ),
    (
        "Rewrite the sentence to remove the exaggeration.",
        "This is the worst day in the history of the world.",
        "This has been a very bad day.",
    ),
    (
        "Rewrite this to be gender-neutral.",
        "Every student must bring his own lunch.",
        "Every student must bring their own lunch.",
    ),
    (
        "Rewrite the sentence using a synonym for 'happy'.",
        "The kids were happy to see the snow.",
        "The kids were delighted to see the snow.",
    ),
    (
        "Rewrite the sentence without using the word 'very'.",
        "The soup was very hot.",
        "The soup was scalding.",
    ),
    (
        "Make this product description more persuasive.",
        "This bottle keeps drinks cold.",
        "Keep your drinks ice-cold all day with this bottle.",
    ),
    (
        "Rewrite this text message as a short formal email.",
        "cant come 2day, sick. back tmrw",
        "Hello, I am unwell and cannot come in today. I expect to return tomorrow. Best regards.",
    ),
]

# Word-form tables (templated, exact answers).  Irregular forms only, chosen so
# that a single standard answer exists.
PAST_TENSE = [
    ("go", "went"),
    ("eat", "ate"),
    ("swim", "swam"),
    ("buy", "bought"),
    ("write", "wrote"),
    ("sing", "sang"),
    ("teach", "taught"),
    ("think", "thought"),
    ("fly", "flew"),
    ("drink", "drank"),
    ("bring", "brought"),
    ("catch", "caught"),
    ("begin", "began"),
    ("choose", "chose"),
    ("speak", "spoke"),
]
PLURALS = [
    ("mouse", "mice"),
    ("child", "children"),
    ("tooth", "teeth"),
    ("foot", "feet"),
    ("woman", "women"),
    ("goose", "geese"),
    ("sheep", "sheep"),
    ("leaf", "leaves"),
    ("knife", "knives"),
    ("box", "boxes"),
    ("city", "cities"),
    ("wolf", "wolves"),
]
COMPARATIVES = [
    ("good", "better"),
    ("bad", "worse"),
    ("big", "bigger"),
    ("happy", "happier"),
    ("small", "smaller"),
    ("easy", "easier"),
]

PAST_PHRASES = [
    ("What is the past tense of the verb '{w}'? Answer with one word.", False),
    ("Write the simple past form of the verb. Answer with one word.", True),
    ("Give the past tense of '{w}'. Reply with the word only.", False),
]
PLURAL_PHRASES = [
    ("What is the plural of '{w}'? Answer with one word.", False),
    ("Write the plural form of the noun. Answer with one word.", True),
]
COMPARATIVE_PHRASES = [
    ("What is the comparative form of the adjective '{w}'? Answer with one word.", False),
    ("Give the comparative form of the adjective. Answer with one word.", True),
]


def _word_records(table, phrases):
    out = []
    for i, (word, answer) in enumerate(table):
        template, uses_input = cycle(phrases, i)
        out.append(
            rec(
                template.format(w=word),
                word if uses_input else "",
                answer,
                CAT,
                True,
                origin="template",
            )
        )
    return out


def records(rng):
    out = [rec(i, x, o, CAT, False) for i, x, o in HAND]
    out += _word_records(PAST_TENSE, PAST_PHRASES)
    out += _word_records(PLURALS, PLURAL_PHRASES)
    out += _word_records(COMPARATIVES, COMPARATIVE_PHRASES)
    return out
