"""Build ``EC-Guide/<Type>/<Subtask>.json``: a small stand-in for the EC-Guide instruction data,
written by hand in its layout, so that tests run without the real data.

Each file is a JSON array (indented, one key per line) of ``{input_field, output_field,
task_type, metric}`` objects with the prompt layout of the EC-Guide subtask it is named after
and texts invented here. It keeps EC-Guide's quirks that the loaders, the router and the mix
must handle:

* ``bool`` rows (yes/no answers labelled multiple-choice, no options): all of ``MCQ/QPRJ``
  and part of ``MCQ/PRP``, which therefore mixes metrics;
* ``MCQ/ACR`` mixes chain-of-thought generation rows into multiple-choice rows;
* ``MCQ/PRP`` lists the options 0, 1 and 3 and answers 2 in one row;
* one ``MCQ/PKS`` row lists its options out of order (1, 2, 3, 0);
* one ``MCQ/SAP`` row has a string answer (a malformed row the loader reports);
* ``Retrieval/PR`` asks for "any products" (no count), numbers its products from 0 on the
  ``Products:`` header line and has numbers inside item texts;
* multilingual text in ``Generation/MT`` and ``MCQ/MDM``.

Regenerate (deterministic) from the repository root::

    python tests/data/ec_guide/build.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE / "EC-Guide"


def _row(prompt: str, answer: Any, task_type: str, metric: str) -> dict:
    return {"input_field": prompt, "output_field": answer, "task_type": task_type, "metric": metric}


def _options(options: list[str], start: int = 0) -> str:
    return "".join(f"{i}. {text}\n" for i, text in enumerate(options, start=start))


def _mc(prompt: str, answer: Any) -> dict:
    return _row(prompt, answer, "multiple-choice", "accuracy")


def _bool(prompt: str, answer: str) -> dict:
    return _row(prompt, answer, "multiple-choice", "bool")


def translate(title: str, language: str, answer: str) -> dict:
    prompt = f"Translate the product title '{title}' into {language}. \nOutput: "
    return _row(prompt, answer, "generation", "bleu")


def explain(product_type: str, answer: str) -> dict:
    prompt = f"Instructions: Explain the product type {product_type}  \nOutput:"
    return _row(prompt, answer, "generation", "sent-transformer")


def arithmetic(question: str, options: list[str], answer: int) -> dict:
    return _mc(f"{question} \n{_options(options)}Answer: ", answer)


def step_by_step(question: str, options: list[str], answer: str) -> dict:
    prompt = f"{question} Answer Choices:\n{_options(options)}Answer: Let's think step by step."
    return _row(prompt, answer, "generation", "sent-transformer")


def description_match(description: str, options: list[str], answer: int) -> dict:
    prompt = (
        f"A user found a product with description '{description}' on an online shopping "
        "website. If the product appears on another shopping website in a different language, "
        f"which of the following may be its descriptions?\n {_options(options)}\nAnswer: "
    )
    return _mc(prompt, answer)


def phrases(
    title: str, description: str, options: list[str], answer: int, order: list[int]
) -> dict:
    listed = "".join(f"{i}. {options[i]}\n" for i in order)
    prompt = (
        "Based on the title and description. Which of the following sets of phrases best "
        f"summarizes the following product?\nProduct Title: {title}\n"
        f"Product Description: {description}\n{listed}".rstrip("\n")
    )
    return _mc(prompt, answer)


def relation(first: str, second: str, answer: int) -> dict:
    prompt = (
        "Predict whether two products are similar, whether two products are likely to be "
        f'purchased or viewed together based on their titles.\nProduct 1: "{first}", '
        f'Product 2: "{second}"\n'
        "0. Users who buy product 1 may also buy product 2.\n"
        "1. Users who view product 1 may also view product 2.\n"
        "3. The product 1 is similar with the product 2.\nAnswer: "
    )
    return _mc(prompt, answer)


def same_product(first: dict[str, str], second: dict[str, str], answer: str) -> dict:
    def fields(p: dict[str, str]) -> str:
        return "{" + ", ".join(f'{k}: "{v}"' for k, v in p.items()) + "}"

    prompt = (
        "Analyze the title, description, manufacturer, and price between the two products "
        "below and generate an output of yes if the two products are the same, otherwise "
        f"respond with no.\nproduct 1: {fields(first)}\nproduct 2: {fields(second)}\nOutput: "
    )
    return _bool(prompt, answer)


def substitute(query: str, product: str, answer: str) -> dict:
    prompt = (
        "Assess the relevance of a product to a given query by determining if it can function "
        "as a substitute, despite not fully meeting certain aspects of the query. Provide a "
        f"binary output of yes or no based on this evaluation.\nQuery: {query}\n Product: "
        f"{product}\n\n Answer:"
    )
    return _bool(prompt, answer)


def product_type(title: str, options: list[str], answer: Any) -> dict:
    prompt = f"What type of product is '{title}'?\n{_options(options)}Answer: "
    return _mc(prompt, answer)


def entity(entity_type: str, query: str, answer: list[str]) -> dict:
    prompt = (
        "You are a helpful online shop assistant and a linguist. A customer on an online "
        "shopping platform has made the following query. Please extract phrases from the query "
        f"that corresponds to the entity type '{entity_type}'. \n"
        "Please directly output the entity without repeating the entity type. If there are "
        "multiple such entities, separate them with comma. Do not give explanations. \n"
        f"Query: {query}\nOutput: "
    )
    return _row(prompt, answer, "named_entity_recognition", "micro f1")


def category_products(category: str, products: list[str], answer: list[int]) -> dict:
    prompt = (
        f"For '{category}', a list of products is provided below. Select any products that "
        "apply to the category. List the product indices, separating them with commas.\n"
        f"Products: {_options(products)}Output:"
    )
    return _row(prompt, answer, "retrieval", "hit rate@3")


def review_aspects(product: str, review: str, aspects: list[str], answer: list[int]) -> dict:
    prompt = (
        f"You are given a user review given to a(n) {product} product. You are also given a "
        "numbered list of ten aspects. \n"
        "Please choose three aspects from the list that are covered by the review. \n"
        "You should ONLY output three numbers, separated by comma. Do not generate "
        f"explanations or other texts.\nReview: {review}\nAspect List:\n"
        f"{_options(aspects, 1)}Output:"
    )
    return _row(prompt, answer, "retrieval", "hit rate@3")


FILES: dict[str, list[dict]] = {
    "Generation/MT.json": [
        translate(
            "Kinder Regenjacke mit Kapuze, wasserdicht, Gelb",
            "English",
            "Kids Rain Jacket with Hood, Waterproof, Yellow",
        ),
        translate(
            "Coussin de chaise en coton, lot de 2, gris",
            "English",
            "Cotton Chair Cushion, Set of 2, Grey",
        ),
    ],
    "Generation/PE.json": [
        explain(
            "Hammock",
            "A hammock is a sling of fabric or netting hung between two supports, used for "
            "resting or sleeping outdoors.",
        ),
        explain(
            "Colander",
            "A colander is a bowl with holes used to drain water from cooked pasta or washed "
            "vegetables.",
        ),
    ],
    "MCQ/ACR.json": [
        arithmetic(
            "Tom had 4 apples . He bought 9 more . How many apples does Tom have now ?",
            ["13.0", "5.0", "9.0", "36.0"],
            0,
        ),
        step_by_step(
            "Where would you keep a spare key so that you do not lose it?",
            ["in the ocean", "on a key hook by the door", "in the oven", "under the rain"],
            "A spare key is easy to lose if it has no fixed place. A hook by the door is where "
            "you see it every day. Therefore, the answer is 1.",
        ),
        arithmetic(
            "A box holds 6 mugs . How many mugs are in 5 boxes ?",
            ["11.0", "30.0", "1.0", "56.0"],
            1,
        ),
    ],
    "MCQ/MDM.json": [
        description_match(
            "Waterproof hiking boots with a padded collar and a rubber sole for wet trails.",
            [
                "Lampada da scrivania con braccio flessibile e luce calda.",
                "Wasserdichte Wanderschuhe mit gepolstertem Schaftrand und Gummisohle für "
                "nasse Wege.",
                "Taza de cerámica de 350 ml, apta para microondas.",
                "Coque de téléphone transparente, antichoc.",
            ],
            1,
        ),
    ],
    "MCQ/PKS.json": [
        phrases(
            "Luminova Nachtlicht für Kinder, Sternenhimmel Projektor, USB",
            "Der Projektor wirft einen ruhigen Sternenhimmel an die Decke und schaltet sich nach "
            "30 Minuten selbst ab.",
            [
                "küche, messer, edelstahl, scharf",
                "nachtlicht, sternenhimmel, projektor, kinderzimmer",
                "garten, schlauch, wasser, sommer",
                "auto, reifen, winter, felgen",
            ],
            1,
            [0, 1, 2, 3],
        ),
        phrases(
            "Taza térmica de acero inoxidable 450 ml con tapa",
            "Mantiene el café caliente durante seis horas y la tapa no gotea en el bolso.",
            [
                "taza, térmica, acero inoxidable, café",
                "vestido, verano, algodón, flores",
                "zapatos, cuero, hombre, marrón",
                "cuaderno, tapa dura, rayas, escuela",
            ],
            0,
            [1, 2, 3, 0],
        ),
        phrases(
            "Tapis de yoga antidérapant 6 mm, violet",
            "Tapis épais et léger avec sangle de transport, idéal pour le yoga et le pilates.",
            [
                "perceuse, batterie, outil, bricolage",
                "bougie, parfum, vanille, décoration",
                "tapis, yoga, antidérapant, pilates",
                "chaussettes, laine, hiver, chaud",
            ],
            2,
            [0, 1, 2, 3],
        ),
    ],
    "MCQ/PRP.json": [
        relation("Trailhead Tent Footprint, 4 Person", "Trailhead Camping Tent, 4 Person", 0),
        same_product(
            {"title": "quickmath flash cards grade 2", "manufacturer": "brightpath"},
            {"title": "brightpath quickmath flash cards 2nd grade", "manufacturer": "nan"},
            "yes",
        ),
        relation("Lumora LED Desk Lamp, White", "Lumora LED Desk Lamp, Black", 1),
        relation("Summit Water Bottle 32 oz", "Summit Water Bottle 32 oz, Blue Lid", 2),
        same_product(
            {"title": "garden hose 50 ft", "manufacturer": "greenline", "price": "24.00"},
            {"title": "kitchen scale digital", "manufacturer": "weighwell", "price": "15.99"},
            "no",
        ),
    ],
    "MCQ/QPRJ.json": [
        substitute("usb c charger 65w", "Voltix 45W USB C Wall Charger, Foldable Plug", "yes"),
        substitute("wool socks women", "Cotton Ankle Socks for Women, 6 Pairs", "yes"),
        substitute("espresso machine", "Paperback Novel: The Quiet Harbor", "no"),
        substitute("kids rain boots size 12", "Adult Garden Clogs, Size 9", "no"),
    ],
    "MCQ/SAP.json": [
        product_type(
            "Brightside Stovetop Espresso Maker, 6 Cup, Aluminium",
            ["Kitchen Appliance", "Clothing", "Toy", "Garden Tool"],
            0,
        ),
        product_type(
            "Pedalo Kids Balance Bike, 12 inch, Red",
            ["Jewelry", "Bicycle", "Book"],
            "1",
        ),
        product_type(
            "Northfield Wool Beanie, One Size, Grey",
            ["Electronics", "Furniture", "Clothing", "Pet Supplies"],
            2,
        ),
    ],
    "NER/NER.json": [
        entity("product type", "trekka hiking backpack 30l", ["hiking backpack"]),
        entity("brand", "kumo water bottle navy", ["kumo"]),
        entity("color", "housse de coussin bleu et blanc", ["bleu", "blanc"]),
    ],
    "Retrieval/PR.json": [
        category_products(
            "Watercolor Brushes",
            [
                "Round Watercolor Brush Size 8, Squirrel Hair",
                "Voltix 66-6159 Replacement Battery Pack",
                "Stainless Steel Mixing Bowls, Set of 3",
                "Flat Wash Brush 1 inch for Watercolor",
                "Men's Running Shorts with Pockets",
                "Dorman 12-345 Brake Caliper Bolt",
            ],
            [0, 3],
        ),
        category_products(
            "Dog Leashes",
            [
                "Ceramic Plant Pot 6 inch",
                "Reflective Dog Leash 6 ft, Padded Handle",
                "Laptop Stand, Aluminium",
                "Retractable Dog Leash up to 44 lbs",
                "Bath Towel Set of 4",
            ],
            [1, 3],
        ),
    ],
    "Retrieval/RRA.json": [
        review_aspects(
            "electric kettle",
            "Boils a full jug in three minutes, shuts off by itself and the handle stays cool. "
            "Looks nice on the counter too.",
            [
                "speed",
                "shoe size",
                "safety",
                "ink color",
                "handle",
                "battery life",
                "page count",
                "leash length",
                "fabric",
                "scent",
            ],
            [1, 3, 5],
        ),
        review_aspects(
            "yoga mat",
            "Thick enough for my knees, does not slip on the wooden floor and folds up small "
            "for travel.",
            [
                "screen size",
                "thickness",
                "flavor",
                "grip",
                "sound quality",
                "portability",
                "water pressure",
                "font",
                "lid",
                "zipper",
            ],
            [2, 4, 6],
        ),
    ],
}


def render(rows: list[dict]) -> str:
    """A file's text: the rows as an indented JSON array."""
    return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"


def main() -> None:
    for rel, rows in FILES.items():
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(rows), encoding="utf-8")
    print(f"wrote {sum(map(len, FILES.values()))} rows in {len(FILES)} files under {ROOT}")


if __name__ == "__main__":
    main()
