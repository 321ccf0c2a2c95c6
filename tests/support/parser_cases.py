"""The parser tests' fixed cases: prompts, the starter kit's documented parser cases, the
inputs of the parser golden file and bullet-list cases (also parsed by the official kit for
``golden/official``; see :mod:`tests.support.official_corpus`)."""

from __future__ import annotations

from typing import Any

PROMPTS = {
    "mc4": (
        "Which type of fabric is used in it?\n0. spandex, polyester\n1. cotton\n"
        "2. microfiber\n3. It cannot be inferred.\nAnswer: "
    ),
    "scale5": (
        "Instructions: Evaluate the following product review on a scale of 1 to 5, with 1 "
        "being very negative and 5 being very positive.\nInput: fine\nOutput:\nAnswer: "
    ),
    "rank5": (
        "Given the following numbered list of 5 products, please rank the products.\n"
        "1. a\n2. b\n3. c\n4. d\n5. e\nYou should output a permutation of 1 to 5.\nOutput: "
    ),
    "retr15": (
        "You are given a numbered list of 15 snippets. Please select 3 snippets.\n"
        + "".join(f"{i}. snippet {i}\n" for i in range(1, 16))
        + "Output: "
    ),
    "ner_brand": (
        "Please extract phrases from the query that correspond to the entity type 'brand'.\n"
        "Query: chocolate buttons cadbury xmas\nOutput: "
    ),
}

# The official kit's own unit tests (parsers.py 0.1.1): raw -> expected value.
OFFICIAL_DOCUMENTED: list[tuple[str, str, Any]] = [
    ("multiple-choice", "2", 2),
    ("multiple-choice", "a", -1),
    ("multiple-choice", "\n", -1),
    ("multiple-choice", " ", -1),
    ("multiple-choice", " 2", 2),
    ("multiple-choice", "\n1", 1),
    ("multiple-choice", "\n 3", 3),
    ("multiple-choice", "\n ", -1),
    ("ranking", "1, 2, 3, 4, 5", [1, 2, 3, 4, 5]),
    ("ranking", "[1, 2, 3, 4, 5]", [1, 2, 3, 4, 5]),
    ("ranking", "1, 2, 2, 3", []),
    ("ranking", "1, 2, 4, aicrowd, 5", [1, 2, 4, 5]),
    ("ranking", "\n", []),
    ("ranking", " \n", []),
    ("ranking", "The answer is: 1, 2, 3, 4, 5", [1, 2, 3, 4, 5]),
    ("ranking", ",1,2,3,4,5", [1, 2, 3, 4, 5]),
    ("ranking", "1 2", []),
    ("generation", "This is a generated response.", "This is a generated response."),
    ("generation", "\nThe answer is \n\n good.\n\n\n\n\n\n\n", "The answer is \n\n good."),
    ("generation", "\n \n", ""),
    ("retrieval", "100, 200, 300", [100, 200, 300]),
    ("retrieval", "100, 200", [100, 200]),
    ("retrieval", "100, 200, jjhg", [100, 200]),
    ("retrieval", "100,           200, \n\n\n 300", [100, 200, 300]),
    ("retrieval", "100, 200, 300, 400", [100, 200, 300]),
    ("retrieval", "\n 100, 200, 300", [100, 200, 300]),
    ("retrieval", "\n \n \n", []),
    (
        "named_entity_recognition",
        "['New York', 'ShopBench', 'Amazon']",
        ["New York", "ShopBench", "Amazon"],
    ),
    (
        "named_entity_recognition",
        "New York, ShopBench, Amazon",
        ["New York", "ShopBench", "Amazon"],
    ),
    (
        "named_entity_recognition",
        "[New York, ShopBench, Amazon]",
        ["[New York", "ShopBench", "Amazon]"],
    ),
    ("named_entity_recognition", "\n, New York, ShopBench", ["New York", "ShopBench"]),
    ("named_entity_recognition", " ", []),
    ("named_entity_recognition", "\n \n", []),
]

# Raw outputs for the golden file: (task type, prompt key or None, raw).
GOLDEN_INPUTS: list[tuple[str, str | None, str]] = [
    (t, None, raw) for t, raw, _ in OFFICIAL_DOCUMENTED
] + [
    ("multiple-choice", "mc4", "Answer: 2"),
    ("multiple-choice", "mc4", "The correct option is 3."),
    ("multiple-choice", "mc4", "**1**"),
    ("multiple-choice", "mc4", "(2)"),
    ("multiple-choice", "mc4", "1. cotton"),
    ("multiple-choice", "mc4", "cotton"),
    ("multiple-choice", "mc4", "```\n2\n```"),
    ("multiple-choice", "mc4", "Output: 3"),
    ("multiple-choice", "mc4", "<answer>1</answer>"),
    ("multiple-choice", "mc4", "1 or 2"),
    ("multiple-choice", "mc4", "Answer: 1. On second thought, the answer is 3."),
    ("multiple-choice", "mc4", "I am not sure."),
    ("multiple-choice", "mc4", ""),
    ("multiple-choice", "scale5", "4 stars"),
    ("multiple-choice", "scale5", "Rating: 4/5"),
    ("multiple-choice", "scale5", "I would rate it 2."),
    ("multiple-choice", "scale5", "1 being very negative, I'd give it a 3"),
    ("ranking", "rank5", "Ranking: 2 > 1 > 3 > 5 > 4"),
    ("ranking", "rank5", "2\n1\n3\n5\n4"),
    ("ranking", "rank5", "```json\n[2, 1, 3, 5, 4]\n```"),
    ("ranking", "rank5", "1. Product 3\n2. Product 1\n3. Product 2\n4. Product 5\n5. Product 4"),
    ("ranking", "rank5", "Output: 3, 1, 2, 5, 4\nProduct 3 fits the 2.5 inch lift best."),
    ("ranking", "rank5", "2 1 3 5 4"),
    ("ranking", "rank5", "1, 2, 3, 4, 5 or 5, 4, 3, 2, 1"),
    ("ranking", "rank5", "3, 3, 1, 2, 4"),
    ("ranking", "rank5", "6, 1, 2"),
    ("ranking", "rank5", "I cannot rank these."),
    ("retrieval", "retr15", "Output: 6, 9, 15"),
    ("retrieval", "retr15", "6\n9\n15"),
    ("retrieval", "retr15", "[6, 9, 15]"),
    ("retrieval", "retr15", "6, 9, 15\nI chose 6 because 9 and 15 are about size."),
    ("retrieval", "retr15", "1, 2, 3. Alternatively 4, 5, 6"),
    ("retrieval", "retr15", "6, 6, 9, 15"),
    ("retrieval", "retr15", "16, 17, 3"),
    ("retrieval", "retr15", "none of them"),
    ("named_entity_recognition", "ner_brand", "- cadbury\n- nestle"),
    ("named_entity_recognition", "ner_brand", "Output: cadbury"),
    ("named_entity_recognition", "ner_brand", "brand: cadbury"),
    ("named_entity_recognition", "ner_brand", '["cadbury"]'),
    ("named_entity_recognition", "ner_brand", "None"),
    ("named_entity_recognition", "ner_brand", "cadbury, Cadbury, 'cadbury'"),
    (
        "named_entity_recognition",
        "ner_brand",
        "cadbury\nThe brand in the query is cadbury, a chocolate maker.",
    ),
    ("generation", None, 'Output: "Fimo Soft Starter Pack"'),
    ("generation", None, "Here is the translated title:\nFimo Soft Starter Pack"),
    ("generation", None, "```\nA watch band straps a watch to the wrist.\n```"),
    ("generation", None, "“comfortable”"),
    ("generation", None, "Answer: "),
]

BULLET_CASES: list[tuple[str, str, str, Any]] = [
    # (task type, prompt key, raw, robust value)
    ("named_entity_recognition", "ner_brand", "- tablette", ["tablette"]),
    ("named_entity_recognition", "ner_brand", "1. cadbury", ["cadbury"]),
    ("named_entity_recognition", "ner_brand", "* cadbury\n* nestle", ["cadbury", "nestle"]),
    ("named_entity_recognition", "ner_brand", "1) cadbury\n2) milka", ["cadbury", "milka"]),
    (
        "named_entity_recognition",
        "ner_brand",
        "Here are the brand entities:\n• cadbury\n• nestle",
        ["cadbury", "nestle"],
    ),
    (
        "named_entity_recognition",
        "ner_brand",
        "- cadbury\n- nestle\nThese are the brands that the query above mentions by name.",
        ["cadbury", "nestle"],
    ),
    ("named_entity_recognition", "ner_brand", "- brand: cadbury", ["cadbury"]),
    (
        "ranking",
        "rank5",
        "- Product 3: the best fit\n- Product 1: good value\n- Product 2 (too small)\n"
        "- Product 5\n- Product 4",
        [3, 1, 2, 5, 4],
    ),
    ("ranking", "rank5", "1) 2\n2) 1\n3) 3\n4) 5\n5) 4", [2, 1, 3, 5, 4]),
    (
        "ranking",
        "rank5",
        "3 - best fit\n1 - good value\n2 - fine\n5 - meh\n4 - no",
        [3, 1, 2, 5, 4],
    ),
    # Candidates echoed in ranked order keep their own numbers.
    ("ranking", "rank5", "3. c\n1. a\n2. b\n5. e\n4. d", [3, 1, 2, 5, 4]),
    # An enumeration of candidate texts names the candidates it repeats.
    ("ranking", "rank5", "1. c\n2. a\n3. b\n4. e\n5. d", [3, 1, 2, 5, 4]),
    ("retrieval", "retr15", "- 6\n- 9\n- 15", [6, 9, 15]),
    ("retrieval", "retr15", "* Snippet 6 (size)\n* Snippet 9\n* Snippet 15", [6, 9, 15]),
    ("retrieval", "retr15", "6. snippet 6\n9. snippet 9\n15. snippet 15", [6, 9, 15]),
    (
        "retrieval",
        "retr15",
        "1. 6\n2. 9\n3. 15\nI chose 6 because 9 and 15 are about size.",
        [6, 9, 15],
    ),
]
