"""Writes the ECInstruct-format fixtures of the fine-tuning tests (deterministic).

Run from the repo root: ``python tests/data/finetune/make_fixtures.py``. The files are
committed; this script documents how they were made.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent

CATEGORIES = {
    "kitchen": ["frying pan", "chef knife", "cutting board", "tea kettle", "spice rack"],
    "garden": ["garden hose", "pruning shears", "flower pot", "lawn sprinkler", "rake"],
    "office": ["stapler", "desk lamp", "paper shredder", "file folder", "ballpoint pen"],
    "sports": ["yoga mat", "tennis racket", "jump rope", "water bottle", "dumbbell"],
}
COLORS = ["red", "blue", "black", "white", "green"]
SENTIMENT = {
    "positive": ["works great", "very sturdy", "love it", "good value", "easy to use"],
    "negative": ["broke quickly", "too small", "poor quality", "waste of money", "hard to use"],
}


def mc_record(rng: random.Random) -> dict[str, object]:
    cats = sorted(CATEGORIES)
    cat = rng.choice(cats)
    product = f"{rng.choice(COLORS)} {rng.choice(CATEGORIES[cat])}"
    options = cats[:]
    rng.shuffle(options)
    return {
        "instruction": "Which category does the product belong to?",
        "input": f"Product: {product}",
        "options": options,
        "output": str(options.index(cat)),
        "task": "category_mc",
        "task_type": "multiple-choice",
    }


def sentiment_record(rng: random.Random) -> dict[str, object]:
    label = rng.choice(sorted(SENTIMENT))
    product = rng.choice(CATEGORIES[rng.choice(sorted(CATEGORIES))])
    return {
        "instruction": "Is the sentiment of the review positive or negative?",
        "input": f"Review of a {product}: {rng.choice(SENTIMENT[label])}.",
        "options": [],
        "output": label,
        "task": "review_sentiment",
        "task_type": "generation",
    }


def ner_record(rng: random.Random) -> dict[str, object]:
    color = rng.choice(COLORS)
    product = rng.choice(CATEGORIES[rng.choice(sorted(CATEGORIES))])
    return {
        "instruction": "Extract the color mentioned in the product title.",
        "input": f"Title: {color} {product} for home",
        "options": [],
        "output": color,
        "task": "color_ner",
        "task_type": "named_entity_recognition",
    }


def records(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    makers = [mc_record, sentiment_record, ner_record]
    return [makers[i % len(makers)](rng) for i in range(n)]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    train = records(96, seed=0)
    write_jsonl(HERE / "mix" / "train.jsonl", train)
    write_jsonl(HERE / "mix" / "heldout.jsonl", records(12, seed=1))
    # Tokenizer corpus: the same vocabulary as the records, in a plain text file.
    lines = [
        " ".join(str(v) for k, v in r.items() if k not in ("task", "task_type"))
        for r in records(200, seed=2)
    ]
    lines += [
        "You are a helpful online shopping assistant.",
        "Answer: Output: Instructions: Input: positive negative 0 1 2 3",
    ]
    (HERE / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Bad inputs.
    (HERE / "bad" / "empty").mkdir(parents=True, exist_ok=True)
    (HERE / "bad" / "empty" / "train.jsonl").write_text("\n", encoding="utf-8")
    missing = records(3, seed=3)
    del missing[1]["output"]
    (HERE / "bad" / "missing_output").mkdir(parents=True, exist_ok=True)
    write_jsonl(HERE / "bad" / "missing_output" / "train.jsonl", missing)
    long = records(3, seed=4)
    long[2]["input"] = "Review: " + " ".join(["very sturdy frying pan"] * 200)
    (HERE / "bad" / "too_long").mkdir(parents=True, exist_ok=True)
    write_jsonl(HERE / "bad" / "too_long" / "train.jsonl", long)


if __name__ == "__main__":
    (HERE / "mix").mkdir(parents=True, exist_ok=True)
    main()
