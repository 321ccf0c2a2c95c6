"""Build a miniature Shopping MMLU release in the official ``data.zip`` layout, and a corpus of
varied model outputs for it.

The release has every task type (two multiple-choice tasks plus review rating, retrieval,
ranking, entity recognition and the five generation metrics), four skill files in the KDD
development schema whose rows reuse the task questions, and edge cases that make the official
evaluators raise or return NaN (an empty retrieval truth, an all-zero ranking truth, an
answer index past the choices, a skill file with an unknown metric and mixed metrics in one
task). Every text is written here by hand.

``build_zip(path)`` writes the archive (under a top folder ``data/``, with a ``__MACOSX``
entry and a README, as archives made on a desktop often have); ``build_dir(path)`` writes the
extracted tree. ``styled_predictions(task, seed)`` gives one output per row in a mix of
styles: bare and decorated answers, leading newlines, bullets, extra text, multi-line
answers, duplicates, out-of-range and negative indices, Unicode digits, empty strings and
junk. Run as a script to write ``data.zip`` next to this file::

    python tests/data/shopping_mmlu/build_fixture.py [OUT.zip]
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
import zipfile
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- tasks

# (question, choices, answer index)
CATEGORY_SELECTION = [
    (
        "Which product category best fits the item 'stainless steel garlic press, dishwasher safe'?",
        ["Kitchen Utensils", "Garden Tools", "Office Supplies", "Pet Toys"],
        0,
    ),
    (
        'A shopper searches for "waterproof hiking boots, men\'s size 10". Which category?',
        ["Women's Sandals", "Men's Outdoor Footwear", "Kids' Sneakers", "Luggage"],
        1,
    ),
    (
        "Which category is a 'USB-C to HDMI adapter, 4K, aluminium shell' listed under?\n"
        "(consider the main use of the item)",
        ["Cables & Adapters", "Smart Home", "Camera Lenses", "Video Games"],
        0,
    ),
    ("Where would 'organic green tea, 100 bags' be found?", ["Toys", "Tools", "Tea", "Tires"], 2),
    (
        "Which category suits a 'yoga mat, 6 mm, non-slip'?",
        ["Bedding", "Fitness Equipment", "Rugs", "Camping Stoves"],
        1,
    ),
    (
        "Pick the category for 'baby bottle warmer with night light'.",
        ["Automotive", "Baby Feeding", "Lighting", "Kitchen Appliances", "Nursery Decor"],
        3,
    ),
]

# A second multiple-choice task whose answers use Python indexing at the edges: -1 reads the
# last label, 4 is past the four labels (the task-wise script raises IndexError).
ODD_ANSWER_INDEX = [
    ("Which colour name is a shade of blue?", ["navy", "maroon", "olive", "teal"], -1),
    ("Which unit measures screen size?", ["inch", "gram", "litre", "watt"], 0),
    ("Which material is a natural fibre?", ["nylon", "polyester", "acrylic", "wool", "rayon"], 4),
]

# (review text, rating 1-5); the question lists the ratings itself.
REVIEWS = [
    ("Stopped working after two days and support never answered.", 1),
    ("Fits well, colour slightly off from the photos.", 4),
    ("Absolutely love it, my second purchase already!", 5),
    ("It is fine. Nothing special, does the job.", 3),
    ("Arrived scratched, but the seller sent a replacement quickly.", 3),
]

# (prompt, relevant candidate numbers)
RETRIEVAL = [
    (
        "Query: 'wireless earbuds'. Candidates: 1. phone case 2. bluetooth earphones 3. "
        "charging cable 4. noise cancelling earbuds 5. desk lamp. Which are relevant?",
        [2, 4],
    ),
    (
        "Query: 'running shoes women'. Candidates: 1. trail runners (women) 2. running socks 3. "
        "road running shoes for women 4. yoga pants 5. water bottle 6. lightweight racing flats "
        "(women). Which are relevant?",
        [1, 3, 6],
    ),
    (
        "Query: 'coffee grinder'. Candidates: 1. burr grinder 2. tea kettle 3. milk frother. "
        "Which are relevant?",
        [1],
    ),
    (
        "Query: 'dog bed large'. Candidates: 1. cat tree 2. orthopedic dog bed XL 3. dog leash "
        "4. chew toy 5. large pet cushion. Which are relevant?",
        [2, 5],
    ),
    (
        "Query: 'ssd 1tb'. Candidates: 1. 1TB NVMe SSD 2. 2TB HDD 3. SATA SSD 1 TB 4. USB hub. "
        "Which are relevant?",
        [1, 3],
    ),
    (
        "Query: 'baby monitor'. Candidates: 1. video baby monitor 2. audio baby monitor 3. "
        "nursery lamp 4. crib sheet. Which are relevant?",
        [1, 2],
    ),
]

# (prompt, relevance weight per candidate)
RANKING = [
    ("Rank the 5 products for the query 'electric kettle 1.7l'.", [3, 0, 1, 2, 0]),
    ("Rank the 5 products for the query 'phone tripod'.", [1.0, 0.1, 0.01, 0, 0]),
    ("Rank the 4 products for the query 'wool socks'.", [0, 2, 0, 1]),
    ("Rank the 5 products for the query 'led strip'.", [0, 0, 1, 0, 0]),
    ("Rank the 5 products for the query 'gaming mouse'.", [1, 1, 0, 0.1, 1]),
]

# (prompt, entities)
NER = [
    (
        "Extract the brand entities from the query 'nike air max vs adidas ultraboost'.",
        ["Nike", "Adidas"],
    ),
    ("Extract the colour entities from 'red and navy blue striped shirt'.", ["red", "navy blue"]),
    ("Extract the product-type entities from 'samsung galaxy tablet case'.", ["tablet case"]),
    ("Extract the size entities from 'king size duvet 230x220'.", ["king size", "230x220"]),
    ("Extract the brand entities from 'lego city police station'.", ["LEGO"]),
    ("Extract the material entities from 'cotton linen blend curtains'.", ["cotton", "linen"]),
]

# (prompt, reference)
EXTRACTION = [
    (
        "Extract the capacity from: 'Insulated bottle, 750 ml, keeps drinks cold 24 hours'.",
        "750 ml",
    ),
    ("Extract the colour from: 'Chair cushion set of 4, forest green, tie-on'.", "forest green"),
    ("Extract the screen size from: 'Portable monitor 15.6 inch full HD USB-C'.", "15.6 inch"),
    ("Extract the material from: 'Solid oak cutting board with juice groove'.", "solid oak"),
    ("Extract the pack size from: 'AA batteries alkaline, pack of 24'.", "pack of 24"),
]

TRANSLATION = [
    (
        "Translate to English: 'Kabellose Maus mit leisen Tasten und langer Akkulaufzeit'.",
        "Wireless mouse with silent buttons and long battery life",
    ),
    (
        "Translate to English: 'Sac à dos étanche pour ordinateur portable 15 pouces'.",
        "Waterproof backpack for 15 inch laptop",
    ),
    (
        "Translate to English: 'Set di pentole antiaderenti con coperchi in vetro'.",
        "Non-stick cookware set with glass lids",
    ),
    (
        "Translate to English: 'Funda de silicona para teléfono con protector de cámara'.",
        "Silicone phone case with camera protector",
    ),
]

TRANSLATION_JP = [
    (
        "Translate to Japanese: 'Stainless steel water bottle 500 ml'.",
        "ステンレス製の水筒 500ml 保温 保冷",
    ),
    (
        "Translate to Japanese: 'Wireless charger for smartphones'.",
        "スマートフォン用 ワイヤレス 充電器 です",
    ),
    ("Translate to Japanese: 'Cotton bath towel set of three'.", "綿 の バスタオル 3枚 セット"),
]

MULTILINGUAL = [
    (
        "Beschreibe kurz: Thermoskanne aus Edelstahl.",
        "Eine Thermoskanne hält Getränke lange heiß oder kalt.",
    ),
    (
        "Décris brièvement : une lampe de bureau LED.",
        "Une lampe de bureau LED éclaire le plan de travail.",
    ),
    (
        "Describe brevemente: una esterilla de yoga.",
        ["Una esterilla antideslizante para practicar yoga.", "Una alfombrilla para yoga."],
    ),
    ("Beschreibe kurz: eine Brotdose.", "Eine Dose, um Brot frisch zu halten."),
]

EXPLANATION = [
    (
        "Explain what a 'pour-over coffee dripper' is.",
        "A cone that holds a filter so hot water can be poured slowly over ground coffee.",
    ),
    (
        "Explain what a 'cable organizer' is.",
        ["A holder that keeps cables tidy on a desk.", "Clips that stop cords from tangling."],
    ),
    ("Explain what a 'seam ripper' is.", "A small tool for cutting and removing stitches."),
    (
        "Explain what a 'bike pannier' is.",
        "A bag that attaches to the rack of a bicycle to carry loads.",
    ),
    (
        "Explain what 'blackout curtains' are.",
        "Curtains made of thick fabric that block light from entering a room.",
    ),
]

EMPTY_TRUTH_RETRIEVAL = [
    ("Query: 'left-handed scissors'. Candidates: 1. scissors 2. glue 3. tape.", [1]),
    ("Query: 'obsolete item'. Candidates: 1. pen 2. pencil 3. eraser.", []),
]

ALL_ZERO_RANKING = [
    ("Rank the 3 products for the query 'spare parts'.", [2, 1, 0]),
    ("Rank the 3 products for the query 'discontinued model'.", [0, 0, 0]),
]

JSON_TASKS: dict[str, dict[str, list[tuple[str, Any]]]] = {
    "retrieval": {
        "query_keyword_retrieval": RETRIEVAL,
        "empty_truth_retrieval": EMPTY_TRUTH_RETRIEVAL,
    },
    "ranking": {
        "query_product_ranking": RANKING,
        "all_zero_relevance_ranking": ALL_ZERO_RANKING,
    },
    "named_entity_recognition": {"query_entity_recognition": NER},
    "generation": {
        "attribute_value_extraction": EXTRACTION,
        "product_title_translation": TRANSLATION,
        "product_title_translation_JP": TRANSLATION_JP,
        "multilingual_description_generation": MULTILINGUAL,
        "product_explanation": EXPLANATION,
    },
}


def _review_question(text: str) -> str:
    return (
        "Predict the star rating (1 to 5) the reviewer gave.\n"
        f"Review: {text}\nRatings: 1, 2, 3, 4, 5"
    )


def _mc_prompt(question: str, choices: list[str]) -> str:
    options = "".join(f"\n{i}. {c}" for i, c in enumerate(choices[:4]))
    return f"{question}{options}\nAnswer: "


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerow([])  # a blank line: the official reader skips it
    writer.writerows(rows)
    return buf.getvalue()


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _skill_row(prompt: str, answer: Any, task: str, task_type: str, metric: str) -> dict[str, Any]:
    return {
        "input_field": prompt,
        "output_field": answer,
        "task_name": task,
        "task_type": task_type,
        "metric": metric,
        "is_multiple_choice": task_type == "multiple-choice",
        "track": "shopping-mmlu",
    }


def _skills() -> dict[str, list[dict[str, Any]]]:
    def mc(task: str, rows: list[tuple[str, list[str], int]]) -> list[dict[str, Any]]:
        return [
            _skill_row(_mc_prompt(q, c), a, task, "multiple-choice", "accuracy") for q, c, a in rows
        ]

    def js(task: str, rows: list[tuple[str, Any]], task_type: str, metric: str) -> list[dict]:
        return [_skill_row(p, t, task, task_type, metric) for p, t in rows]

    review = [
        _skill_row(
            _review_question(t) + "\nAnswer: ",
            r,
            "review_rating_prediction",
            "multiple-choice",
            "accuracy",
        )
        for t, r in REVIEWS
    ]
    edge = [
        *js("all_zero_relevance_ranking", ALL_ZERO_RANKING, "ranking", "ndcg"),
        *js("empty_truth_retrieval", EMPTY_TRUTH_RETRIEVAL, "retrieval", "hit rate@3"),
        _skill_row("Say something nice.", "Something nice.", "free_text", "generation", "exact"),
        _skill_row("Say it again.", "Again.", "free_text", "generation", "exact"),
        # A task whose rows use two metrics: aggregated by its first row's metric.
        _skill_row(
            "Extract the colour: 'red mug'.", "red", "mixed_metrics", "generation", "rougel"
        ),
        _skill_row(
            "Translate: 'Rote Tasse aus Keramik'.",
            "Red mug made of ceramic",
            "mixed_metrics",
            "generation",
            "bleu",
        ),
    ]
    return {
        "skill1_concept": [
            *mc("product_category_selection", CATEGORY_SELECTION),
            *js("attribute_value_extraction", EXTRACTION, "generation", "rougel"),
            *js("product_explanation", EXPLANATION, "generation", "sent-transformer"),
            *js("query_entity_recognition", NER, "named_entity_recognition", "micro f1"),
        ],
        "skill2_knowledge": [
            *mc("odd_answer_index", ODD_ANSWER_INDEX[:2]),
            *js("query_keyword_retrieval", RETRIEVAL, "retrieval", "hit rate@3"),
        ],
        "skill3_behavior": [
            *js("query_product_ranking", RANKING, "ranking", "ndcg"),
            *review,
        ],
        "skill4_multilingual": [
            *js("product_title_translation", TRANSLATION, "generation", "bleu"),
            *js("product_title_translation_JP", TRANSLATION_JP, "generation", "jp-bleu"),
            *js(
                "multilingual_description_generation",
                MULTILINGUAL,
                "generation",
                "multilingual-sent-transformer",
            ),
        ],
        "skill5_edge_cases": edge,
    }


def files() -> dict[str, str]:
    """Relative path -> text of every data file of the miniature release."""
    out: dict[str, str] = {}
    mc_header = ["question", "choices", "answer"]
    for name, rows in (
        ("product_category_selection", CATEGORY_SELECTION),
        ("odd_answer_index", ODD_ANSWER_INDEX),
    ):
        out[f"multiple_choice/{name}_dataset.csv"] = _csv(
            mc_header, [[q, repr(c), a] for q, c, a in rows]
        )
    # Review rating: no choices column; the answer is the rating.
    out["multiple_choice/review_rating_prediction_dataset.csv"] = _csv(
        ["question", "answer"], [[_review_question(t), r] for t, r in REVIEWS]
    )
    for folder, tasks in JSON_TASKS.items():
        for name, rows in tasks.items():
            records = [{"input_field": p, "target_field": t} for p, t in rows]
            if name == "query_keyword_retrieval":
                # A key between the two: the reference is still the last column.
                records = [{"input_field": p, "note": "", "target_field": t} for p, t in rows]
            text = _jsonl(records)
            if name == "query_product_ranking":
                text = text.replace("\n", "\n\n", 1)  # a blank line, skipped
            out[f"{folder}/{name}_dataset.json"] = text
    for skill, rows in _skills().items():
        out[f"skills/{skill}.json"] = _jsonl(rows)
    return out


def build_dir(root: Path) -> Path:
    """Write the extracted release under ``root``; returns ``root``."""
    for rel, text in files().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def build_zip(path: Path, prefix: str = "data/") -> Path:
    """Write the release as a zip archive (data folders under ``prefix``); returns ``path``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{prefix}README.txt", "Miniature Shopping MMLU release for tests.\n")
        z.writestr(f"__MACOSX/{prefix}ranking/._query_product_ranking_dataset.json", "junk")
        for rel, text in sorted(files().items()):
            z.writestr(prefix + rel, text.encode("utf-8"))
    return path


# --------------------------------------------------------------------------- predictions


def _mc_styles(label: str, other: str) -> list[str]:
    return [
        label,
        f" {label}",
        f"\n{label}",
        f"{label}. the option text",
        f"Answer: {label}",
        f"The answer is {label}.",
        f"({label})",
        f"**{label}**",
        "",
        "   ",
        "none of them",
        other,
        "١",
        "½",
        f"{label}{label}",
        "B",
        f" \n {label}",
    ]


def _retrieval_styles(truth: list[int]) -> list[str]:
    t = [str(x) for x in truth] or ["1"]
    return [
        ", ".join(t),
        ",".join(t),
        ", ".join([*t, "9", "8"]),
        "\n".join(t),
        f"{t[0]}\n" + ", ".join(t[1:] or ["2"]),
        ", ".join(t) + "\nThese are the relevant ones: 1, 2",
        "1, 2\n3, 4",
        "[" + ", ".join(t) + "]",
        " ".join(t),
        "",
        "no idea",
        f"  {t[0]} , 7 ,   5  ",
        "-1, 0",
        "1_0, 2",
        "٣, 1",
        f"{t[0]},{t[0]},{t[0]}",
        "Output: " + ", ".join(t),
    ]


def _ranking_styles(weights: list[float], rng: random.Random) -> list[str]:
    n = len(weights)
    ideal = sorted(range(1, n + 1), key=lambda i: -weights[i - 1])
    perm = list(range(1, n + 1))
    rng.shuffle(perm)

    def j(xs: list[int]) -> str:
        return ",".join(map(str, xs))

    return [
        j(ideal),
        ", ".join(map(str, ideal)),
        j(perm),
        j(ideal[::-1]),
        ",".join(["1"] * n),
        j([*ideal, *ideal[:2]]),
        "\n\n" + j(ideal) + "\n" + j(perm),
        "Ranking:\n" + j(ideal),
        j(ideal) + "\nbecause the first one matches best",
        "0, 9, 2",
        "-1, 2",
        "-9, 1",
        "",
        "abc",
        " > ".join(map(str, ideal)),
        j(ideal[:2]),
        "- " + j(ideal),
    ]


def _ner_styles(entities: list[str]) -> list[str]:
    first = entities[0]
    return [
        ", ".join(entities),
        ",".join(e.upper() for e in entities),
        "\n\n" + ", ".join(entities),
        ", ".join(entities) + "\nmore text, here",
        ",,".join(entities),
        " , ".join(f" {e} " for e in entities),
        "\n".join(f"- {e}" for e in entities),
        json.dumps(entities),
        "",
        "None",
        f"{first}, {first}",
        "\t" + first,
        first + ", unrelated",
    ]


def _generation_styles(truth: Any, japanese: bool) -> list[str]:
    t = truth if isinstance(truth, str) else truth[0]
    words = t.split()
    styles = [
        t,
        t + "\nsecond line with more words",
        "\n\n" + t,
        "",
        "   ",
        t.upper(),
        "Output: " + t,
        "some unrelated words here",
        " ".join(words[: max(1, len(words) // 2)]),
        "• " + t,
        "\n",
    ]
    if japanese:
        styles += ["水筒 です", "充電器"]
    return styles


def styled_predictions(task: Any, seed: int) -> list[str]:
    """One output per row of ``task`` (a loaded task or skill file), mixing styles.

    Args:
        task: A :class:`harness.shopbench.mmlu.TaskData` (only ``rows``, ``folder`` and
            ``metric`` are read).
        seed: Random seed.

    Returns:
        The outputs, in row order.
    """
    rng = random.Random(seed)
    out = []
    for row in task.rows:
        metric = row.metric if row.metric is not None else task.metric
        truth = row.target
        if metric == "accuracy":
            label = str(truth)
            other = str((int(truth) + 1) % 4)
            styles = _mc_styles(label, other)
        elif metric == "hit rate@3":
            styles = _retrieval_styles(list(truth))
        elif metric == "ndcg":
            styles = _ranking_styles(list(truth), rng)
        elif metric == "micro f1":
            styles = _ner_styles(list(truth))
        elif isinstance(truth, str | list):
            styles = _generation_styles(truth, metric == "jp-bleu")
        else:
            styles = ["", "1", "text"]
        out.append(rng.choice(styles))
    return out


def perfect_predictions(task: Any) -> list[str]:
    """The canonical right answer for each row (the first reference of a list)."""
    out = []
    for row in task.rows:
        metric = row.metric if row.metric is not None else task.metric
        truth = row.target
        if metric == "accuracy":
            out.append(str(truth))
        elif metric in ("hit rate@3", "micro f1"):
            out.append(", ".join(map(str, truth)))
        elif metric == "ndcg":
            order = sorted(range(1, len(truth) + 1), key=lambda i: -truth[i - 1])
            out.append(",".join(map(str, order)))
        else:
            out.append(truth if isinstance(truth, str) else truth[0])
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("data.zip")
    print(build_zip(target))
