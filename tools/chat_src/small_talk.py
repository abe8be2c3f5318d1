"""small_talk: greetings, congratulations, chit-chat and social phrases (hand-written)."""

from __future__ import annotations

from ._common import BRIEF, CONCISE, conv

CAT = "small_talk"

# One user turn, free-form reply.
SINGLE = [
    ("Hi there!", "Hello! How can I help you today?"),
    ("Good morning! How are you?", "Good morning! I'm doing well, thanks for asking. How are you?"),
    ("Thanks a lot for your help.", "You're welcome! I'm glad I could help."),
    ("Tell me a fun fact.", "Octopuses have three hearts and blue blood."),
    (
        "What can you do?",
        "I can answer questions, explain ideas, help with writing, and work through simple math.",
    ),
    ("Are you a human?", "No, I'm an AI assistant, but I'm happy to chat with you."),
    ("Goodnight!", "Goodnight! Sleep well and see you next time."),
    ("It's my birthday today!", "Happy birthday! I hope you have a wonderful day."),
    (
        "I passed my driving test!",
        "Congratulations! That's a big achievement. Enjoy the freedom and drive safely.",
    ),
    (
        "I'm feeling a bit tired today.",
        "Sorry to hear that. A short break, a glass of water, and an early night might help.",
    ),
    (
        "Tell me a joke.",
        "Why did the scarecrow win an award? Because he was outstanding in his field.",
    ),
    (
        "What's your favorite color?",
        "I don't have personal favorites, but blue is a very popular choice.",
    ),
    (
        "How's the weather today?",
        "I can't check live weather, but a weather app or website will have the latest forecast.",
    ),
    ("See you later!", "See you later! Have a great day."),
    (
        "I'm nervous about my exam tomorrow.",
        "That's completely normal. Review your notes briefly, get a good night's sleep, and trust "
        "your preparation. Good luck!",
    ),
    ("Do you ever sleep?", "No, I don't sleep. I'm here whenever you want to chat."),
    ("Sorry, I made a typo.", "No problem at all. I understood what you meant."),
    (
        "I love rainy days.",
        "Rainy days can be really cozy, perfect for a good book and a warm drink.",
    ),
    ("Say something nice.", "You're curious and willing to learn, and that's a great strength."),
    (
        "I just finished my first 5K run!",
        "Well done! That's a great milestone. Remember to stretch and drink some water.",
    ),
    ("What's up?", "Not much, I'm here and ready to help. What's on your mind?"),
    ("I'm back!", "Welcome back! What would you like to talk about?"),
    (
        "Tell me a joke about computers.",
        "Why did the computer go to the doctor? Because it had a virus.",
    ),
    ("I had a really good day today.", "That's wonderful to hear! What made it so good?"),
    (
        "I started learning the guitar.",
        "That's exciting! Practice a little every day and your fingers will get used to the strings.",
    ),
    (
        "Do you have feelings?",
        "No, I don't have feelings, but I'm designed to be helpful and friendly.",
    ),
]

# Several user turns, free-form replies.
MULTI = [
    [
        ("Hi!", "Hello! How are you today?"),
        (
            "Pretty good, just a bit busy with work.",
            "Glad you're well. Would you like help planning your tasks?",
        ),
        ("Maybe later, thanks.", "Sure, I'm here whenever you need me."),
    ],
    [
        ("I'm planning a picnic this weekend.", "That sounds lovely! Where are you going?"),
        (
            "To the park by the lake.",
            "Nice choice. Bring a blanket, plenty of water, and some sunscreen.",
        ),
    ],
    [
        (
            "I got a new puppy yesterday!",
            "Congratulations! Puppies are so much fun. What's its name?",
        ),
        (
            "Her name is Daisy.",
            "Daisy is a lovely name. I hope you two have many happy walks together.",
        ),
    ],
    [
        (
            "I can't decide what movie to watch tonight.",
            "What kind of mood are you in: something funny, exciting, or relaxing?",
        ),
        ("Something funny.", "Then a light comedy or an animated film could be perfect."),
    ],
    [
        (
            "Do you like music?",
            "I can't listen to music, but I enjoy talking about it. What do you like?",
        ),
        (
            "Mostly jazz.",
            "Jazz is great. Its improvisation makes every performance a little different.",
        ),
    ],
    [
        ("I'm cooking dinner for friends tonight.", "How fun! What are you making?"),
        (
            "Pasta with tomato sauce.",
            "A classic. Some fresh basil and grated cheese on top will make it even better.",
        ),
        ("Good idea, thanks!", "You're welcome. Enjoy your dinner party!"),
    ],
    [
        ("I'm learning Spanish.", "That's great! How long have you been studying?"),
        (
            "About three months.",
            "Nice progress. Try watching short videos in Spanish to practice your listening.",
        ),
    ],
    [
        (
            "It's so hot today.",
            "Stay cool! Drink plenty of water and rest in the shade when you can.",
        ),
        (
            "Any ideas for a cold snack?",
            "Frozen grapes, chilled yogurt, or a slice of watermelon are all refreshing.",
        ),
    ],
    [
        ("I just moved to a new city.", "Exciting! How are you finding it so far?"),
        (
            "A bit lonely, to be honest.",
            "That's normal at first. Joining a club or a class is a good way to meet people.",
        ),
    ],
    [
        ("Good evening!", "Good evening! How was your day?"),
        (
            "Long, but I finished a big project.",
            "Congratulations! You've earned a relaxing evening.",
        ),
    ],
    [
        ("Can we just chat for a bit?", "Of course! What would you like to talk about?"),
        (
            "Tell me something about space.",
            "Venus spins so slowly that one turn on its axis takes longer than its trip around "
            "the Sun.",
        ),
    ],
    [
        (
            "I'm so happy, I got the job!",
            "Congratulations! That's fantastic news. When do you start?",
        ),
        ("Next Monday.", "Wonderful. Good luck on your first day!"),
    ],
    [
        ("I feel stressed about work.", "I'm sorry to hear that. What's been the hardest part?"),
        (
            "Too many meetings.",
            "That can be draining. Blocking short focus periods in your calendar might help.",
        ),
    ],
    [
        (
            "Hello, who are you?",
            "I'm an AI assistant. I can answer questions and help with everyday tasks.",
        ),
        (
            "Can you remember things?",
            "I can remember what you say in this conversation, but not after it ends.",
        ),
        ("Good to know. Thanks!", "You're welcome! Ask me anything."),
    ],
]

# The final reply is a short fixed phrase, and the user says what form it takes.
EXACT = [
    [("What do people often say when someone sneezes? Answer with two words.", "Bless you")],
    [("What greeting do people use before noon? Answer with two words.", "Good morning")],
    [("What do you say to someone on their birthday? Answer with two words.", "Happy birthday")],
    [("What polite word do you add when asking for something? Answer with one word.", "Please")],
    [("What do you say when someone gives you a gift? Answer with two words.", "Thank you")],
    [
        (
            "What word do you say when you bump into someone by accident? Answer with one word.",
            "Sorry",
        )
    ],
    [
        (
            "What do you say to wish someone success before a test? Answer with two words.",
            "Good luck",
        )
    ],
    [("What is the usual polite reply to thank you? Answer with two words.", "You're welcome")],
    [
        ("I won a prize in a baking contest!", "Congratulations! What did you bake?"),
        ("A lemon cake. What kind of cake did I bake? Answer with two words.", "Lemon cake"),
    ],
    [
        ("Hey, can I ask you something?", "Of course! What would you like to know?"),
        (
            "What single word do hosts say to greet guests at the door? Answer with one word.",
            "Welcome",
        ),
    ],
    [
        ("I just got back from a trip to Rome.", "Welcome back! How was Rome?"),
        ("Amazing. Which city did I just visit? Answer with one word.", "Rome"),
    ],
]

# The system prompt sets the reply style (checked by the build).
SYSTEM = [
    (BRIEF, [("Hi! How's it going?", "Going well, thanks! How about you?")]),
    (
        BRIEF,
        [("I just got back from a long holiday.", "Welcome back! I hope you had a great time.")],
    ),
    (
        BRIEF,
        [
            ("Hello!", "Hi there! What's up?"),
            ("Not much, just bored.", "Maybe try a short walk or a new song?"),
        ],
    ),
    (BRIEF, [("What do you think of Mondays?", "A fresh start to the week!")]),
    (BRIEF, [("Tell me something cheerful.", "Young sunflowers follow the sun across the sky.")]),
    (BRIEF, [("I'm going to bed now.", "Sleep well and sweet dreams!")]),
    (
        CONCISE,
        [
            (
                "Why do people enjoy small talk?",
                "It helps people feel connected and comfortable with each other.",
            )
        ],
    ),
    (
        CONCISE,
        [
            (
                "How should I greet a new neighbor?",
                "Smile, say hello, and introduce yourself by name.",
            )
        ],
    ),
    (
        CONCISE,
        [
            (
                "What's a good way to start a conversation at a party?",
                "Ask the other person how they know the host.",
            )
        ],
    ),
    (
        CONCISE,
        [
            (
                "Is it rude to check my phone during dinner with friends?",
                "Many people find it rude, so keep your phone away unless it's urgent.",
            )
        ],
    ),
    (BRIEF, [("Thanks for chatting with me!", "Anytime! It was a pleasure.")]),
    (BRIEF, [("I'm having a lazy Sunday.", "Sounds perfect. Enjoy the rest!")]),
]


def records(rng) -> list[dict]:
    out = [conv([t], CAT, False) for t in SINGLE]
    out += [conv(turns, CAT, False) for turns in MULTI]
    out += [conv(turns, CAT, True) for turns in EXACT]
    out += [conv(turns, CAT, False, system=s) for s, turns in SYSTEM]
    return out
