"""summarize: one-sentence summaries of short passages (all hand-written)."""

from __future__ import annotations

from ._common import cycle, rec

CAT = "summarize"

PHRASES = [
    "Summarize the passage in one sentence.",
    "Write a one-sentence summary of the text.",
    "Give a short summary of this paragraph.",
    "Summarize this text in one sentence.",
    "What is the main point of this passage? Answer in one sentence.",
]

# (passage, summary)
PASSAGES = [
    (
        "Our town library will close for three weeks in July while workers replace the roof. "
        "Borrowed books can still be returned through the drop box, and the mobile library "
        "van will visit the main square every Saturday.",
        "The library closes for three weeks in July for roof repairs, but returns and a "
        "Saturday mobile library will continue.",
    ),
    (
        "Honeybees communicate the location of flowers through a movement called the waggle "
        "dance. The angle of the dance shows the direction of the food, and its length "
        "tells other bees how far away it is.",
        "Honeybees use the waggle dance to show other bees the direction and distance of food.",
    ),
    (
        "Maya had practiced the piano piece for months. On the night of the recital her hands "
        "shook, and she missed a note in the first line, but she kept going and finished to "
        "loud applause.",
        "Despite nerves and an early mistake, Maya finished her piano recital to loud applause.",
    ),
    (
        "Drinking enough water helps the body control its temperature, protects joints, and "
        "carries nutrients to cells. Many people only notice they are thirsty once they are "
        "already slightly dehydrated.",
        "Water is vital for many body functions, and thirst often appears only after mild "
        "dehydration has begun.",
    ),
    (
        "The company has released a new version of its budgeting app. Users can now scan "
        "receipts with their phone camera, set savings goals, and get a weekly report on "
        "their spending.",
        "The updated budgeting app adds receipt scanning, savings goals, and weekly spending reports.",
    ),
    (
        "After heavy rain, the river rose above its banks and flooded several streets near the "
        "market. No one was hurt, but many shop owners spent the weekend cleaning mud out of "
        "their stores.",
        "A river flood after heavy rain damaged shops near the market but caused no injuries.",
    ),
    (
        "Sloths move so slowly that algae can grow on their fur. The green tint helps them "
        "hide among the leaves, which protects them from predators such as eagles.",
        "Algae growing on slow-moving sloths gives them a green camouflage against predators.",
    ),
    (
        "The school will start a free breakfast club next month. Students who arrive before "
        "eight o'clock can have cereal, fruit, and toast in the dining hall before lessons begin.",
        "The school is launching a free breakfast club for students who arrive before eight.",
    ),
    (
        "Working from home saves time on commuting, but some people find it harder to separate "
        "work from private life. Experts suggest keeping a fixed schedule and a dedicated "
        "work space.",
        "Remote work saves commuting time, and a fixed schedule and work space help keep "
        "work and home separate.",
    ),
    (
        "The city council voted to turn the empty parking lot on Elm Street into a public park. "
        "Construction will begin in spring, and the park should include a playground, benches, "
        "and a small pond.",
        "The council approved turning the Elm Street parking lot into a park with a playground "
        "and pond.",
    ),
    (
        "Tom forgot his umbrella on the bus. When he called the bus company, they told him "
        "someone had handed it in, and he collected it from the depot the next morning.",
        "Tom got back the umbrella he left on the bus after someone handed it in.",
    ),
    (
        "Compost is made from kitchen scraps and garden waste that break down over several "
        "months. Adding it to soil improves its structure and provides nutrients for plants.",
        "Compost made from food and garden waste enriches soil and feeds plants.",
    ),
    (
        "The museum's new exhibition shows everyday objects from Roman homes, including oil "
        "lamps, cooking pots, and children's toys. Visitors can also try grinding grain with "
        "a copy of a Roman hand mill.",
        "A new museum exhibition displays everyday Roman household objects and offers "
        "hands-on activities.",
    ),
    (
        "Penguins cannot fly, but they are excellent swimmers. Their wings have evolved into "
        "stiff flippers that push them through the water while they hunt for fish.",
        "Penguins cannot fly but use their flipper-like wings to swim and hunt fish.",
    ),
    (
        "Our train was cancelled because of a signal failure. The railway company arranged "
        "buses to the next station, and most passengers reached the city about an hour late.",
        "After a signal failure cancelled the train, passengers took replacement buses and "
        "arrived about an hour late.",
    ),
    (
        "Regular reading with young children builds their vocabulary and attention span. "
        "Even ten minutes a day of reading aloud can make a noticeable difference by the "
        "time they start school.",
        "Reading aloud to young children for even a few minutes daily boosts their vocabulary "
        "and attention.",
    ),
    (
        "The bakery on the corner has started selling bread made with flour from a local mill. "
        "The owner says customers like knowing where their food comes from, even though the "
        "loaves cost a little more.",
        "A corner bakery now uses local flour, and customers accept slightly higher prices for it.",
    ),
    (
        "Volcanoes form where molten rock from deep inside the Earth reaches the surface. "
        "Many are found along the edges of tectonic plates, such as the ring of volcanoes "
        "around the Pacific Ocean.",
        "Volcanoes form where molten rock reaches the surface, often along tectonic plate edges.",
    ),
    (
        "Lena wanted to run a half marathon, so she started with short jogs three times a week. "
        "Over six months she slowly increased the distance and finished the race in just "
        "over two hours.",
        "By training gradually for six months, Lena finished a half marathon in just over "
        "two hours.",
    ),
    (
        "The new bike lanes on Main Street are separated from traffic by a low curb. Since "
        "they opened, the number of people cycling to work on that street has almost doubled.",
        "Protected bike lanes on Main Street have nearly doubled cycling to work there.",
    ),
    (
        "Many plants close their flowers at night or in bad weather. This protects the pollen "
        "from rain and cold, and the flowers open again when the sun comes out.",
        "Many flowers close at night or in bad weather to protect their pollen.",
    ),
    (
        "The power went out across the neighborhood on Tuesday evening after a storm knocked "
        "down a line. Engineers worked overnight, and electricity was restored by six in "
        "the morning.",
        "A storm caused an overnight power cut that engineers fixed by early morning.",
    ),
    (
        "Sleep helps the brain store memories from the day. Students who sleep well before "
        "an exam often remember more than those who stay up late studying.",
        "Good sleep helps memory, so resting before an exam can beat late-night studying.",
    ),
    (
        "A group of volunteers cleaned the beach on Saturday morning. In three hours they "
        "collected more than forty bags of rubbish, most of it plastic bottles and food "
        "wrappers.",
        "Volunteers collected over forty bags of mostly plastic rubbish in a Saturday beach clean-up.",
    ),
    (
        "The phone's new camera takes sharper photos in low light, and the battery now lasts "
        "about two days. However, the price is higher than last year's model.",
        "The new phone has a better low-light camera and longer battery life but costs more.",
    ),
    (
        "Camels can travel long distances in the desert without drinking. Their humps store "
        "fat, not water, which the body can use for energy when food is scarce.",
        "Camels survive long desert trips, and their humps store fat for energy rather than water.",
    ),
    (
        "Sam planted tomato seeds in small pots on his windowsill in March. By June the "
        "plants were too big for the pots, so he moved them to the garden, where they "
        "produced plenty of fruit.",
        "Sam grew tomatoes from seed indoors and moved them to the garden, where they fruited well.",
    ),
    (
        "The town's annual food festival drew a record crowd this year. Visitors tried dishes "
        "from more than thirty countries, and local musicians played on two stages all weekend.",
        "This year's food festival set an attendance record with international dishes and live music.",
    ),
    (
        "Washing hands with soap for about twenty seconds removes many germs. It is one of "
        "the simplest ways to prevent the spread of colds and stomach illnesses.",
        "Washing hands with soap is a simple, effective way to stop illnesses spreading.",
    ),
    (
        "The hiking trail to the waterfall is closed after a landslide blocked the path. "
        "Park rangers expect to reopen it in two weeks, once the rocks have been cleared.",
        "A landslide has closed the waterfall trail for about two weeks.",
    ),
    (
        "Octopuses have three hearts and blue blood. Two hearts pump blood through the gills, "
        "and the third pumps it to the rest of the body.",
        "Octopuses have blue blood and three hearts, two for the gills and one for the body.",
    ),
    (
        "Our team finished the project a week early by splitting it into small tasks and "
        "meeting for ten minutes every morning to check progress.",
        "Small tasks and short daily check-ins helped the team finish a week early.",
    ),
    (
        "The old cinema on Park Road will reopen after renovation. It now has comfortable "
        "seats, a bigger screen, and a cafe, but it will still show classic films on Sundays.",
        "The renovated Park Road cinema reopens with upgrades while keeping its Sunday classic films.",
    ),
    (
        "Recycling one aluminium can saves most of the energy needed to make a new can from "
        "raw materials. Aluminium can also be recycled again and again without losing quality.",
        "Recycling aluminium saves a lot of energy and can be repeated without loss of quality.",
    ),
    (
        "Grandpa finally learned to make video calls. Now he calls his grandchildren every "
        "Sunday and asks them to show him their drawings.",
        "Grandpa learned video calling and now chats with his grandchildren every Sunday.",
    ),
    (
        "The Moon has no air, so there is no wind or weather to wear away its surface. That "
        "is why footprints left by astronauts can remain visible for a very long time.",
        "With no air or weather on the Moon, astronauts' footprints can last a very long time.",
    ),
    (
        "The cafe now gives a small discount to customers who bring their own cup. Since the "
        "change, it uses about half as many paper cups each week.",
        "A discount for bringing your own cup has halved the cafe's paper cup use.",
    ),
    (
        "Learning a musical instrument takes patience. Beginners often progress faster with "
        "short daily practice sessions than with one long session each week.",
        "Short daily practice works better than one long weekly session for learning an instrument.",
    ),
    (
        "A lost dog found its way home after three days. Its owners had shared photos online, "
        "and a neighbor recognized the dog near the park and called them.",
        "A neighbor who saw online photos helped a lost dog get home after three days.",
    ),
    (
        "Bamboo is one of the fastest-growing plants in the world. Some species can grow "
        "almost a meter in a single day, and it is used for building, furniture, and paper.",
        "Bamboo grows extremely fast and is used for building, furniture, and paper.",
    ),
    (
        "The supermarket will stop using plastic bags from next month. Shoppers can buy "
        "reusable cloth bags at the checkout or bring their own.",
        "The supermarket is replacing plastic bags with reusable bags from next month.",
    ),
    (
        "Ana's flight was delayed by five hours because of fog. The airline gave passengers "
        "meal vouchers, and Ana used the time to finish reading her book.",
        "Ana made good use of a five-hour fog delay, helped by the airline's meal vouchers.",
    ),
]

# (instruction, output) -- summaries of well-known stories, no input text.
STORIES = [
    (
        "Summarize the fable 'The Tortoise and the Hare' in one sentence.",
        "A slow but steady tortoise wins a race against a fast, overconfident hare who "
        "stops to rest.",
    ),
    (
        "Summarize the story of 'The Boy Who Cried Wolf' in one sentence.",
        "A shepherd boy who keeps falsely shouting that a wolf is coming is not believed "
        "when a wolf really appears.",
    ),
    (
        "Summarize the plot of Romeo and Juliet in one sentence.",
        "Two young lovers from feuding families in Verona secretly marry, and a chain of "
        "misunderstandings ends in both of their deaths.",
    ),
    (
        "Summarize the fable 'The Ant and the Grasshopper' in one sentence.",
        "An ant works all summer storing food while a grasshopper plays, so the grasshopper "
        "goes hungry when winter comes.",
    ),
    (
        "Summarize the story of Cinderella in one sentence.",
        "A kind young woman mistreated by her stepfamily attends a royal ball with magical "
        "help, and the prince later finds her using the glass slipper she left behind.",
    ),
    (
        "Summarize the story of 'The Three Little Pigs' in one sentence.",
        "Three pigs build houses of straw, sticks, and bricks, and only the brick house "
        "stands up to the wolf.",
    ),
]


def records(rng):
    out = [rec(cycle(PHRASES, i), p, s, CAT, False) for i, (p, s) in enumerate(PASSAGES)]
    out += [rec(i, "", s, CAT, False) for i, s in STORIES]
    return out
