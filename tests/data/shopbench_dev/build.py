"""Build ``development.jsonl``: a small stand-in for the ShopBench development set, written by
hand in its format, so that tests run without the real data.

Every row is the development format (``input_field, output_field, task_name, task_type,
metric, is_multiple_choice, track``), with the prompt layout of the task it belongs to and
texts invented here. The set has the shape the tests rely on: the 18 tasks of the four
tracks in task order (track 1 first), every task type, the metrics of the development set
(``sent-transformer`` on task1, ``rougel`` on task6, ``bleu`` and one ``jp-bleu`` row on
task17), 10- and 15-candidate retrieval prompts asking for three, 5-product ranking prompts,
a task13 prompt ending ``Output (answer in three comma-separated numbers): ``, rating-scale
reviews without enumerated options (task15) and German, French, Spanish, Italian and
Japanese text in track 4.

Regenerate (deterministic) from the repository root::

    python tests/data/shopbench_dev/build.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "development.jsonl"

CONCEPTS = "amazon-kdd-cup-24-understanding-shopping-concepts"
REASONING = "amazon-kdd-cup-24-shopping-knowledge-reasoning"
BEHAVIOR = "amazon-kdd-cup-24-user-behavior-alignment"
MULTILINGUAL = "amazon-kdd-cup-24-multi-lingual-abilities"


def _row(task: str, task_type: str, metric: str, track: str, prompt: str, answer: Any) -> dict:
    return {
        "input_field": prompt,
        "output_field": answer,
        "task_name": task,
        "task_type": task_type,
        "metric": metric,
        "is_multiple_choice": task_type == "multiple-choice",
        "track": track,
    }


def _options(options: list[str], start: int = 0) -> str:
    return "".join(f"{i}. {text}\n" for i, text in enumerate(options, start=start))


def _mc(task: str, track: str, question: str, options: list[str], answer: int) -> dict:
    return _row(
        task,
        "multiple-choice",
        "accuracy",
        track,
        f"{question}\n{_options(options)}Answer: ",
        answer,
    )


# --------------------------------------------------------------------------- track 1


def task1(category: str, answer: str) -> dict:
    prompt = (
        f"Instructions: Tell me what this product category is about\nInput: {category}\nOutput:"
    )
    return _row("task1", "generation", "sent-transformer", CONCEPTS, prompt, answer)


def task2(attribute: str, options: list[str], answer: int) -> dict:
    question = f"Which of the following product categories may have the attribute {attribute}?"
    return _mc("task2", CONCEPTS, question, options, answer)


def task3(product: str, aspect: str, snippets: list[str], answer: list[int]) -> dict:
    prompt = (
        f"A customer has bought a(n) {product} product and wants to write a review to express "
        f"a positive sentiment on the {aspect} aspect. \n"
        "You are given a numbered list of 15 potential review snippets. Please select 3 "
        "snippets from the list that the customer is most likely to write in his review. \n"
        "You should output three numbers, separated with comma. Generate only indices. Do not "
        "include review snippets in your answer. Do not give explanations. \n"
        f"Review Snippet List: \n{_options(snippets, 1)}Output: "
    )
    return _row("task3", "retrieval", "hit rate@3", CONCEPTS, prompt, answer)


def task4(entity_type: str, query: str, answer: list[str]) -> dict:
    prompt = (
        "You are a helpful online shop assistant and a linguist. A customer on an online "
        "shopping platform has made the following query. Please extract phrases from the query "
        f"that correspond to the entity type '{entity_type}'. \n"
        "Please directly output the entity without repeating the entity type. If there are "
        "multiple such entities, separate them with comma. Do not give explanations. \n"
        f"Query: {query}\nOutput: "
    )
    return _row("task4", "named_entity_recognition", "micro f1", CONCEPTS, prompt, answer)


def task5(title: str, attribute: str, options: list[str], answer: int) -> dict:
    question = (
        f"The product '{title}' appears on an e-commerce website.  "
        f"What type of {attribute} is used in it?"
    )
    return _mc("task5", CONCEPTS, question, [*options, "It cannot be inferred."], answer)


def task6(product: str, review: str, aspect: str, answer: str) -> dict:
    prompt = (
        f"You are given a user review to a(n) {product} product and an aspect covered in the "
        "review. \nPlease extract the keyphrase from the review that mentions the given "
        "aspect. \nYou should only extract ONLY ONE keyphrase from the review. \n"
        "You should not generate new keyphrases that do not exist in the review.\n"
        "Do not give explanations or irrelevant text. Generate short keyphrases, not whole "
        f"sentences.  \nReview: {review}\nAspect: {aspect}\nOutput: \n"
    )
    assert answer in review, answer
    return _row("task6", "generation", "rougel", CONCEPTS, prompt, answer)


def task7(product: str, review: str, aspects: list[str], answer: list[int]) -> dict:
    listed = "".join(f"{i}.{a}\n" for i, a in enumerate(aspects, start=1))
    prompt = (
        f"\nYou are given a user review given to a(n) {product} product. You are also given a "
        "numbered list of ten aspects. \n"
        "Please choose three aspects from the list that are covered by the review. \n"
        "You should ONLY output three numbers, separated by comma. Do not generate "
        f"explanations or other texts. \nReview: \n{review}\nAspect List: \n{listed}Output: "
    )
    return _row("task7", "retrieval", "hit rate@3", CONCEPTS, prompt, answer)


# --------------------------------------------------------------------------- track 2


def task8(title: str, question: str, options: list[str], answer: int) -> dict:
    text = f"The product '{title}' appears on e-commerce website. {question}"
    return _mc("task8", REASONING, text, options, answer)


def task9(question: str, options: list[str], answer: int) -> dict:
    return _mc("task9", REASONING, question, options, answer)


def task10(product_type: str, options: list[str], answer: int) -> dict:
    question = (
        "Which of the following product categories best complement the product type "
        f"{product_type}?"
    )
    return _mc("task10", REASONING, question, options, answer)


# --------------------------------------------------------------------------- track 3


def task11(first: str, second: str, answer: int) -> dict:
    question = (
        "Which of the following statements best describes the relation from query "
        f'"{first}" to query "{second}"?'
    )
    options = ["irrelevant", "substitute", "complement", "narrowing"]
    return _mc("task11", BEHAVIOR, question, options, answer)


def task12(query: str, products: list[tuple[str, float]]) -> dict:
    assert len(products) == 5
    prompt = (
        f"A user has made a query with keyword '{query}'. Given the following numbered list of "
        "5 products, please rank the products according their relevance with the query. \n"
        f"Product List: \n{_options([p for p, _ in products], 1)}"
        "You should output a permutation of 1 to 5. There should be a comma separating two "
        "numbers. Each product and its number should appear only once in the output. Only "
        "respond with the ranking results. Do not say any word or explanations.\nOutput: "
    )
    weights = [w for _, w in products]
    return _row("task12", "ranking", "ndcg", BEHAVIOR, prompt, weights)


def task13(actions: list[str], candidates: list[str], answer: list[int]) -> dict:
    assert len(candidates) == 10
    prompt = (
        "You are a user on an online shopping platform. You make queries and click on products "
        "to eventually find the product you want and make your purchase. \n"
        "Suppose you have just performed the following sequence of actions of queries, clicks, "
        "and purchases. What is most likely to be the keyword of your next query? \n"
        "You are given a numbered list of ten candidate queries. Select three from the list "
        "that you think most likely. Output ONLY three numbers separated with comma. Do not "
        "give explanations. \n\nAction Sequence:\n"
        + "".join(f"{a}\n" for a in actions)
        + f"\nCandidate Query List:\n{_options(candidates, 1)}"
        "Output (answer in three comma-separated numbers): "
    )
    return _row("task13", "retrieval", "hit rate@3", BEHAVIOR, prompt, answer)


def task14(bought: str, products: list[str], answer: list[int]) -> dict:
    assert len(products) == 15
    prompt = (
        f"A user on an online shopping website has just purchased a product '{bought}'. The "
        "following numbered list contains 15 products. Please select 3 products from the list "
        "that the user may also purchase.\n"
        f"Product List: \n{_options(products, 1)}"
        "You should output 3 numbers that correspond to the selected products. There should be "
        "a comma separating every two numbers. Only respond with the results. Do not say any "
        "word or explanations.\nOutput: "
    )
    return _row("task14", "retrieval", "hit rate@3", BEHAVIOR, prompt, answer)


def task15(product: str, title: str, body: str, answer: int) -> dict:
    prompt = (
        "Instructions: Evaluate the following product review on a scale of 1 to 5, with 1 "
        "being very negative and 5 being very positive. \n"
        f"Input: a review text for a(n) {product} product\n{title}\n{body}\nOutput:\nAnswer: "
    )
    return _row("task15", "multiple-choice", "accuracy", BEHAVIOR, prompt, answer)


# --------------------------------------------------------------------------- track 4


def task16(title: str, description: str, options: list[str], answer: int) -> dict:
    question = (
        "Given the following product, which of the following keyword sets is most suitable for "
        f"it?\nProduct Title: {title}\nProduct Description: {description}\n"
    )
    return _mc("task16", MULTILINGUAL, question, options, answer)


def task17(title: str, language: str, answer: str, metric: str = "bleu") -> dict:
    prompt = (
        f"A product entitled '{title}' exists on an online shopping website. Generate an "
        f"adequate title for the product when it appears on a(n) {language} online shopping "
        "website.\nOutput: "
    )
    return _row("task17", "generation", metric, MULTILINGUAL, prompt, answer)


def task18(description: str, options: list[str], answer: int) -> dict:
    question = (
        f"A product with description '{description}' exists on an online shopping website. "
        "Which of the following descriptions may describe the same product in a different "
        "language?"
    )
    return _mc("task18", MULTILINGUAL, question, options, answer)


ROWS: list[dict] = [
    task1(
        "Pepper Mill",
        "A pepper mill is a kitchen tool that grinds whole peppercorns into fresh ground pepper.",
    ),
    task1(
        "Bike Lock",
        "A bike lock is a security device that fastens a bicycle to a fixed object so that it "
        "cannot be ridden away.",
    ),
    task2("blade length", ["kitchen knife", "pillowcase", "phone charger", "flower pot"], 0),
    task2(
        "water resistance rating",
        ["paperback book", "wristwatch", "wooden spoon", "picture frame"],
        1,
    ),
    task3(
        "backpack",
        "durability",
        [
            "bright colors",
            "sturdy zippers",
            "fast shipping",
            "holds up to daily use",
            "nice gift box",
            "easy to assemble",
            "tastes great",
            "still like new after a year",
            "good value",
            "smells lovely",
            "fits my laptop",
            "quiet motor",
            "soft fabric",
            "clear sound",
            "charges quickly",
        ],
        [2, 4, 8],
    ),
    task3(
        "teapot",
        "design",
        [
            "elegant shape",
            "loud alarm",
            "comfortable straps",
            "pretty glaze",
            "long battery life",
            "lightweight",
            "charming pattern",
            "easy returns",
            "accurate reading",
            "bold flavor",
            "secure lid",
            "great for travel",
            "warm in winter",
            "crisp picture",
            "grippy sole",
        ],
        [1, 4, 7],
    ),
    task4("brand", "lego city fire station", ["lego"]),
    task4("color", "sac à dos rouge enfant", ["rouge"]),
    task4("material", "bamboo cutting board with steel handles", ["bamboo", "steel"]),
    task5(
        "Northfield Kids Rain Jacket with Hood, Waterproof Nylon Shell, Navy, Size 8",
        "fabric",
        ["leather", "nylon", "linen"],
        1,
    ),
    task5(
        "Harbor Lane Ceramic Table Lamp 18 inch with Linen Shade",
        "base material",
        ["ceramic", "bamboo", "glass"],
        0,
    ),
    task5(
        "Quickstep Running Shoes Men Size 10 Blue",
        "closure",
        ["buckle", "zipper", "hook and loop"],
        3,
    ),
    task6(
        "blender",
        "I use this blender every morning for smoothies. It crushes ice without trouble, but it "
        "is louder than my old one. Cleaning is easy.",
        "noise",
        "louder than my old one",
    ),
    task6(
        "rain boot",
        "Bought these for my daughter. They run a half size large, so she wears thick socks "
        "with them. Kept her feet dry in every puddle.",
        "fit",
        "run a half size large",
    ),
    task6(
        "desk lamp",
        "The lamp has a nice slim arm and the light is bright enough for reading at night. The "
        "switch feels cheap.",
        "brightness",
        "bright enough for reading",
    ),
    task7(
        "water bottle",
        "Keeps my water cold all day, the lid never leaks in my bag, and it was cheaper than "
        "the big brands.",
        [
            "temperature",
            "screen",
            "leak proof",
            "scent",
            "price",
            "battery",
            "color",
            "sound",
            "size",
            "taste",
        ],
        [1, 3, 5],
    ),
    task7(
        "office chair",
        "Assembly took ten minutes and the seat is comfortable for long work days, though the "
        "armrests wobble.",
        [
            "assembly",
            "flavor",
            "comfort",
            "brightness",
            "noise",
            "armrests",
            "durability",
            "smell",
            "weight",
            "warmth",
        ],
        [1, 3, 6],
    ),
    task8(
        "Brightside Coffee Pods, Medium Roast, 12 Count (Pack of 4)",
        "What is the total number of pods?",
        ["12", "16", "48", "4"],
        2,
    ),
    task8(
        "Meadow Farms Almond Butter, 16 oz Jar (Pack of 3)",
        "What is the total weight of the almond butter?",
        ["48 ounce", "16 ounce", "19 ounce", "32 ounce"],
        0,
    ),
    task8(
        "Voltix AA Batteries, 24 Pack",
        "How many batteries are in two packs?",
        ["24", "12", "36", "48"],
        3,
    ),
    task9(
        'Which of the following events can obstruct the event "PersonX bakes a cake"',
        [
            "PersonX has no flour",
            "PersonX enjoys the movie",
            "PersonX buys new shoes",
            "PersonX calls a friend",
        ],
        0,
    ),
    task9(
        'Given the event "PersonX wins the race", as a result, PersonX feels',
        ["bored", "proud", "sleepy", "hungry"],
        1,
    ),
    task10("tent", ["sleeping bag", "nail polish", "office stapler", "baby bottle"], 0),
    task10("printer", ["garden hose", "bath towel", "ink cartridge", "dog leash"], 2),
    task11("running shoes", "running shoes women wide", 3),
    task11("coffee maker", "coffee filters", 2),
    task11("garden gloves", "bluetooth speaker", 0),
    task12(
        "stainless steel water bottle 32 oz",
        [
            ("Summit Stainless Steel Water Bottle 32 oz, Vacuum Insulated", 1),
            ("Summit Stainless Steel Water Bottle 18 oz", 0.1),
            ("Clear Plastic Water Bottle 32 oz, BPA Free", 0.1),
            ("Bottle Brush Cleaning Set, 3 Pack", 0.01),
            ("Wireless Computer Mouse, Silent Click", 0),
        ],
    ),
    task12(
        "kids bike helmet",
        [
            ("Adult Road Bike Helmet, Large", 0.1),
            ("Pedalo Kids Bike Helmet, Ages 5-8, Adjustable", 1),
            ("Kids Knee and Elbow Pads Set", 0.01),
            ("Scented Soy Candle, Lavender", 0),
            ("Toddler Bike Helmet with Dinosaur Print", 1),
        ],
    ),
    task12(
        "cast iron skillet 10 inch",
        [
            ("Silicone Handle Cover for Skillets", 0.01),
            ("Nonstick Frying Pan 10 inch", 0.1),
            ("Hearth Cast Iron Skillet 10 inch, Pre-Seasoned", 1),
            ("Cast Iron Skillet 12 inch", 0.1),
            ("Men's Leather Wallet", 0),
        ],
    ),
    task13(
        [
            "Query keyword 'puppy chew toys'",
            "Click on product 'Barkbuddy Rubber Chew Bone for Puppies, Small'",
            "Query keyword 'puppy training pads'",
            "Click on product 'Dryden Puppy Training Pads, 50 Count'",
            "Click on product 'Dryden Puppy Training Pads, 100 Count'",
        ],
        [
            "wall clock",
            "puppy crate",
            "hiking socks",
            "puppy collar small",
            "printer paper",
            "phone case",
            "garden rake",
            "desk organizer",
            "face cream",
            "tennis balls",
        ],
        [4],
    ),
    task13(
        [
            "Query keyword 'acrylic paint set'",
            "Click on product 'Colorwise Acrylic Paint Set, 24 Colors'",
            "Click on product 'Colorwise Acrylic Paint Set, 12 Colors'",
            "Query keyword 'canvas boards 8x10'",
            "Click on product 'Easelmate Canvas Boards 8x10 inch, 12 Pack'",
        ],
        [
            "car wax",
            "paint brushes for acrylic",
            "baby socks",
            "wifi router",
            "canvas panels",
            "protein bars",
            "shower curtain",
            "bike pump",
            "notebook",
            "rice cooker",
        ],
        [2],
    ),
    task14(
        "Trailhead Camping Tent, 4 Person, Waterproof",
        [
            "Kitchen Timer, Digital",
            "Camping Sleeping Bag, 40 Degree",
            "Ladies Silk Scarf",
            "USB Flash Drive 64GB",
            "Folding Camp Chair with Cup Holder",
            "Hardcover Cookbook: Easy Weeknight Dinners",
            "LED Camping Lantern, Rechargeable",
            "Nail Clippers Set",
            "Toddler Rain Boots",
            "Desk Calendar",
            "Car Air Freshener",
            "Guitar Strings, Light Gauge",
            "Reading Glasses +1.5",
            "Shower Loofah, 4 Pack",
            "Bird Feeder for Garden",
        ],
        [2, 5, 7],
    ),
    task14(
        "Pawsome Cat Litter Box, Large, Grey",
        [
            "Clumping Cat Litter, Unscented, 20 lb",
            "Electric Toothbrush Heads",
            "Wooden Chess Set",
            "Cat Scratching Post, 30 inch",
            "Men's Dress Belt",
            "Litter Scoop with Holder",
            "Phone Tripod",
            "Sticky Notes, 12 Pads",
            "Lavender Hand Soap",
            "Kids Puzzle, 100 Pieces",
            "Ceramic Mug Set",
            "Bike Bell",
            "Yoga Strap",
            "Window Thermometer",
            "Pillow Covers 18x18",
        ],
        [1, 4, 6],
    ),
    task15(
        "Toaster",
        "Stopped working in a week",
        "The toaster burned every slice on the lowest setting and then stopped heating after "
        "seven days. Returned it.",
        1,
    ),
    task15(
        "Umbrella",
        "Does the job",
        "It opens easily and kept me dry in light rain. The handle feels a little flimsy, but "
        "it is fine for the price.",
        4,
    ),
    task15(
        "Headphones",
        "Best purchase this year",
        "The sound is clear, the battery lasts for days and they are comfortable on long "
        "flights. I would buy them again.",
        5,
    ),
    task16(
        "Kinderfahrrad 16 Zoll mit Stützrädern, Blau",
        "Das leichte Fahrrad für Kinder von 4 bis 6 Jahren hat abnehmbare Stützräder, eine "
        "Rücktrittbremse und einen gepolsterten Sattel.",
        [
            "kinderfahrrad, stützräder, 16 zoll, blau",
            "kaffeemaschine, filter, küche, schwarz",
            "gartenschlauch, wasser, grün, rolle",
            "handtasche, leder, damen, braun",
        ],
        0,
    ),
    task16(
        "Juego de sartenes antiadherentes, 3 piezas",
        "Sartenes de aluminio con revestimiento antiadherente, aptas para todo tipo de "
        "cocinas, incluida la de inducción.",
        [
            "zapatillas, correr, hombre, negro",
            "auriculares, bluetooth, inalámbricos, deporte",
            "sartenes, antiadherente, inducción, cocina",
            "libreta, papel, oficina, rayas",
        ],
        2,
    ),
    task17(
        "Lumora LED Desk Lamp with USB Charging Port, Dimmable, White",
        "German",
        "Lumora LED Schreibtischlampe mit USB-Ladeanschluss, dimmbar, Weiß",
    ),
    task17(
        "Trekka Hiking Backpack 30L, Waterproof, Green",
        "French",
        "Trekka Sac à dos de randonnée 30 L, imperméable, vert",
    ),
    task17(
        "Kumo Stainless Steel Water Bottle 500ml, Vacuum Insulated, Navy",
        "Japanese",
        "Kumo ステンレス 水筒 500ml 真空断熱 保冷 保温 ネイビー",
        metric="jp-bleu",
    ),
    task18(
        "Soft memory foam pillow that keeps its shape and supports your neck while you sleep.",
        [
            "Cuscino in memory foam morbido che mantiene la forma e sostiene il collo durante "
            "il sonno.",
            "Wasserdichte Jacke mit Kapuze für Herbst und Winter.",
            "Câble de charge USB-C de 2 mètres, tressé en nylon.",
            "ステンレス製のフライパン、IH対応。",
        ],
        0,
    ),
    task18(
        "Rechargeable electric toothbrush with three cleaning modes and a two-minute timer.",
        [
            "Lámpara de escritorio LED con brazo flexible.",
            "Zahnbürste für Kinder, weiche Borsten, 4 Stück.",
            "Brosse à dents électrique rechargeable avec trois modes de nettoyage et minuterie "
            "de deux minutes.",
            "折りたたみ傘、軽量、自動開閉。",
        ],
        2,
    ),
]


def render() -> str:
    """The file's text: one JSON object per line, in :data:`ROWS` order."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS)


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {len(ROWS)} rows to {OUT}")


if __name__ == "__main__":
    main()
