"""brainstorm: short lists of ideas (all hand-written)."""

from __future__ import annotations

from ._common import rec

CAT = "brainstorm"

# (instruction, input, output)
HAND = [
    (
        "List three ways to save water at home.",
        "",
        "1. Take shorter showers.\n2. Fix leaking taps.\n3. Run the dishwasher only when it is full.",
    ),
    (
        "Suggest three names for a small bakery.",
        "",
        "1. The Rolling Pin\n2. Golden Crust\n3. Morning Loaf",
    ),
    (
        "Give three ideas for a rainy-day activity with kids.",
        "",
        "1. Build a blanket fort.\n2. Bake cookies together.\n3. Put on a puppet show.",
    ),
    (
        "List four healthy snacks.",
        "",
        "1. Apple slices with peanut butter\n2. Carrots and hummus\n3. Plain yogurt with berries\n4. A handful of nuts",
    ),
    (
        "Suggest three ways to reduce stress.",
        "",
        "1. Go for a short walk.\n2. Practice slow, deep breathing.\n3. Talk to a friend.",
    ),
    (
        "Give three tips for a job interview.",
        "",
        "1. Research the company beforehand.\n2. Arrive a few minutes early.\n3. Prepare questions to ask the interviewer.",
    ),
    (
        "List three ideas for a birthday gift for someone who loves cooking.",
        "",
        "1. A good chef's knife\n2. A cookbook from a favorite cuisine\n3. A set of spices",
    ),
    (
        "Suggest three topics for a school science project.",
        "",
        "1. How light affects plant growth\n2. Which materials insulate heat best\n3. How salt changes the freezing point of water",
    ),
    (
        "Give three ideas to make a small bedroom feel bigger.",
        "",
        "1. Use light colors on the walls.\n2. Add a large mirror.\n3. Choose furniture with hidden storage.",
    ),
    (
        "List three ways to stay focused while studying.",
        "",
        "1. Put your phone in another room.\n2. Study in short blocks with breaks.\n3. Set a clear goal for each session.",
    ),
    (
        "Suggest three fun team-building activities for an office.",
        "",
        "1. An escape room challenge\n2. A group cooking class\n3. A trivia quiz afternoon",
    ),
    (
        "List three ways to reduce plastic waste.",
        "",
        "1. Carry a reusable water bottle.\n2. Bring cloth bags when shopping.\n3. Buy loose fruit and vegetables.",
    ),
    (
        "Give three ideas for a weekend trip on a small budget.",
        "",
        "1. Go camping at a nearby park.\n2. Explore a nearby town by train.\n3. Plan a cycling day with a picnic.",
    ),
    ("Suggest three names for a pet goldfish.", "", "1. Bubbles\n2. Goldie\n3. Captain Fin"),
    (
        "List three things to pack for a day at the beach.",
        "",
        "1. Sunscreen\n2. A towel\n3. Plenty of water",
    ),
    (
        "Give three ideas for using leftover rice.",
        "",
        "1. Make fried rice.\n2. Cook rice pudding.\n3. Add it to a vegetable soup.",
    ),
    (
        "Suggest three ways to get better sleep.",
        "",
        "1. Go to bed at the same time every night.\n2. Avoid screens before bed.\n3. Keep the bedroom cool and dark.",
    ),
    (
        "List three hobbies that can be done indoors.",
        "",
        "1. Drawing\n2. Knitting\n3. Playing a musical instrument",
    ),
    (
        "Give three ideas for a school fundraiser.",
        "",
        "1. A bake sale\n2. A sponsored walk\n3. A second-hand book fair",
    ),
    (
        "Suggest three ways to practice a new language every day.",
        "",
        "1. Label objects at home with their names.\n2. Listen to podcasts in the language.\n3. Write a short diary entry.",
    ),
    (
        "List three ways to make a presentation more engaging.",
        "",
        "1. Start with a short story.\n2. Use clear pictures instead of long text.\n3. Ask the audience a question.",
    ),
    (
        "Give three ideas for a first date.",
        "",
        "1. Coffee and a walk in the park\n2. A visit to a museum\n3. A cooking class",
    ),
    (
        "Suggest three ways to save money on groceries.",
        "",
        "1. Plan meals and write a shopping list.\n2. Buy store brands.\n3. Avoid shopping when hungry.",
    ),
    (
        "List three ways to be more active during a work day.",
        "",
        "1. Take the stairs.\n2. Walk during phone calls.\n3. Stretch every hour.",
    ),
    (
        "Give three ideas for decorating a classroom.",
        "",
        "1. A wall of student artwork\n2. A reading corner with cushions\n3. A world map with pins",
    ),
    (
        "Suggest three slogans for a recycling campaign.",
        "",
        "1. Sort it, don't waste it.\n2. Give your trash a second life.\n3. Recycle today for a cleaner tomorrow.",
    ),
    (
        "List three questions to ask when buying a used car.",
        "",
        "1. Has it been in any accidents?\n2. Is there a service history?\n3. Why are you selling it?",
    ),
    (
        "Give three ideas for a short story that starts in a lighthouse.",
        "",
        "1. The keeper finds a message in a bottle.\n2. The light goes out during a storm.\n3. A stranger washes ashore with no memory.",
    ),
    (
        "Suggest three ways to welcome a new neighbor.",
        "",
        "1. Bring homemade cookies.\n2. Share tips about the local area.\n3. Invite them for coffee.",
    ),
    (
        "List three ways to keep a houseplant healthy.",
        "",
        "1. Water it only when the soil is dry.\n2. Give it enough light.\n3. Repot it when the roots fill the pot.",
    ),
    (
        "Give three ideas for a family game night.",
        "",
        "1. Charades\n2. A board game tournament\n3. A homemade quiz",
    ),
    (
        "Suggest three ways to make mornings less rushed.",
        "",
        "1. Lay out clothes the night before.\n2. Prepare breakfast in advance.\n3. Wake up fifteen minutes earlier.",
    ),
    (
        "List three outdoor activities for winter.",
        "",
        "1. Sledding\n2. Ice skating\n3. Building a snowman",
    ),
    (
        "Give three ideas for a healthy breakfast.",
        "",
        "1. Oatmeal with fruit\n2. Whole-grain toast with eggs\n3. Yogurt with nuts",
    ),
    (
        "Suggest three ways to thank a teacher at the end of the year.",
        "",
        "1. Write a heartfelt card.\n2. Give a small plant.\n3. Make a class photo album.",
    ),
    (
        "List three ideas for reusing glass jars.",
        "",
        "1. Store dry food like rice or pasta.\n2. Use them as candle holders.\n3. Keep pens and brushes in them.",
    ),
    (
        "Give three tips for writing a clear email.",
        "",
        "1. Use a specific subject line.\n2. Put the main request first.\n3. Keep paragraphs short.",
    ),
    (
        "Suggest three ways a town could reduce traffic.",
        "",
        "1. Improve bus services.\n2. Build safe bike lanes.\n3. Encourage car sharing.",
    ),
    (
        "List three things to check before a long car trip.",
        "",
        "1. Tire pressure\n2. Oil and coolant levels\n3. Lights and brakes",
    ),
    (
        "Give three ideas for a kid's science experiment at home.",
        "",
        "1. Make a baking soda and vinegar volcano.\n2. Grow beans in a clear jar.\n3. Test which objects float in water.",
    ),
    (
        "Suggest three ways to spend a quiet evening at home.",
        "",
        "1. Read a good book.\n2. Cook a new recipe.\n3. Take a warm bath.",
    ),
    # with input
    (
        "Suggest three names for this business.",
        "a bike repair shop run by two sisters",
        "1. Sister Spokes\n2. Two Wheels Workshop\n3. The Chain Gang",
    ),
    (
        "Give three ideas for what to cook with these ingredients.",
        "eggs, spinach, cheese",
        "1. A spinach and cheese omelet\n2. A crustless quiche\n3. Baked eggs with spinach",
    ),
    (
        "Suggest three activities for this group.",
        "ten teenagers at a summer camp on a rainy afternoon",
        "1. A talent show\n2. A team quiz\n3. Making friendship bracelets",
    ),
    (
        "List three possible titles for this article.",
        "An article about how cities plant trees to keep streets cool in summer.",
        "1. Shade on Every Street\n2. How Trees Cool Our Cities\n3. The Green Way to Beat the Heat",
    ),
    (
        "Give three ways to solve this problem.",
        "My neighbor's dog barks all night.",
        "1. Talk politely with your neighbor.\n2. Use earplugs or a white noise machine.\n3. Ask a local mediation service for help.",
    ),
    (
        "Suggest three gift ideas for this person.",
        "a grandmother who loves gardening",
        "1. A pair of quality gardening gloves\n2. A set of flower seeds\n3. A personalized plant pot",
    ),
    (
        "Brainstorm three features for this app.",
        "an app that helps families share chores",
        "1. A shared chore calendar\n2. Reminders for due tasks\n3. Points and rewards for finished chores",
    ),
    (
        "Give three ideas for improving this situation.",
        "Students are often late to the first class of the day.",
        "1. Start the first class a little later.\n2. Offer breakfast in the classroom.\n3. Reward good punctuality.",
    ),
    (
        "List three possible reasons for this.",
        "The plants on my windowsill have yellow leaves.",
        "1. Overwatering\n2. Not enough light\n3. Lack of nutrients in the soil",
    ),
    (
        "Suggest three themes for this event.",
        "a school end-of-year party",
        "1. Around the world\n2. Under the sea\n3. Movie stars night",
    ),
    (
        "Give three ideas to make this meeting shorter.",
        "A weekly one-hour team meeting that often runs late.",
        "1. Share an agenda in advance.\n2. Set a time limit for each topic.\n3. Move updates to a shared document.",
    ),
    (
        "Suggest three ways to use this object in a new way.",
        "an old wooden ladder",
        "1. A bookshelf\n2. A towel rack\n3. A stand for potted plants",
    ),
    (
        "List three possible endings for this story opening.",
        "A girl finds a key buried in her garden.",
        "1. It opens a hidden room in her house.\n2. It belonged to her great-grandmother's diary.\n3. It opens a gate to a secret garden.",
    ),
]


def records(rng):
    return [rec(i, x, o, CAT, False) for i, x, o in HAND]
