"""Cleaning: each rejection reason on a crafted row; valid rows kept; duplicates dropped."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from harness.data.clean import (
    answer_value,
    check_row,
    clean,
    normalize_prompt,
    ranking_permutation,
)
from harness.data.lang import guess_language, has_japanese

C = "amazon-kdd-cup-24-understanding-shopping-concepts"
M = "amazon-kdd-cup-24-multi-lingual-abilities"
MC = {
    "input_field": "The product 'Norvik Mug NO-1 - Red, Ceramic' appears on an e-commerce "
    "website.  What color is it?\n0. blue\n1. red\n2. green\n3. black\nAnswer: ",
    "output_field": 1,
    "task_name": "task5",
    "task_type": "multiple-choice",
    "metric": "accuracy",
    "is_multiple_choice": True,
    "track": C,
    "meta": {"locale": "US"},
}
RANK = {
    "input_field": "A user has made a query with keyword 'norvik mug'. Given the following "
    "numbered list of 3 products, please rank the products according their relevance with the "
    "query. \nProduct List: \n1. Alto Mug\n2. Norvik Mug NO-1\n3. Norvik Pan\nYou should output "
    "a permutation of 1 to 3. There should be a comma separating two numbers.\nOutput: ",
    "output_field": [0.1, 1, 0.01],
    "task_name": "task12",
    "task_type": "ranking",
    "metric": "ndcg",
    "is_multiple_choice": False,
    "track": "amazon-kdd-cup-24-user-behavior-alignment",
}
NER = {
    "input_field": "A customer on an online shopping platform has made the following query. "
    "Please extract phrases from the query that correspond to the entity type 'brand'. \n"
    "Query: norvik mug red\nOutput: ",
    "output_field": ["norvik"],
    "task_name": "task4",
    "task_type": "named_entity_recognition",
    "metric": "micro f1",
    "is_multiple_choice": False,
    "track": C,
    "meta": {"locale": "US"},
}
GEN = {
    "input_field": "A product entitled 'Norvik Mug NO-1 - Red' exists on an online shopping "
    "website. Generate an adequate title for the product when it appears on a(n) German online "
    "shopping website.\nOutput: ",
    "output_field": "Norvik Kaffeebecher NO-1 - Rot",
    "task_name": "task17",
    "task_type": "generation",
    "metric": "bleu",
    "is_multiple_choice": False,
    "track": M,
}


def _with(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(row)
    out.update(changes)
    return out


def test_valid_rows_of_every_shape_pass() -> None:
    for row in (MC, RANK, NER, GEN):
        assert check_row(row) is None, row["task_name"]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (_with(MC, input_field=""), "schema"),
        (_with(MC, metric="ndcg"), "schema"),
        (_with(MC, is_multiple_choice=False), "schema"),
        ({k: v for k, v in MC.items() if k != "output_field"}, "schema"),
        (_with(MC, output_field="1"), "output_shape"),
        (_with(RANK, output_field=[]), "output_shape"),
        (_with(MC, input_field=MC["input_field"].replace("Answer: ", "")), "prompt_suffix"),
        (_with(NER, input_field=NER["input_field"] + "Thanks"), "prompt_suffix"),
        (_with(MC, output_field=7), "invalid_answer"),
        (_with(RANK, output_field=[1, 0.1]), "invalid_answer"),
        (_with(NER, output_field=["alto"]), "ungrounded_entity"),
        (_with(GEN, output_field="ノルヴィク マグカップ"), "locale_mismatch"),
        (_with(GEN, output_field="The red mug for the kitchen and the office"), "locale_mismatch"),
        (_with(MC, meta={"locale": "JP"}), "locale_mismatch"),
        (
            _with(
                GEN,
                input_field="Please rank the products by price.\n1. mug\n2. pan\n"
                "You should output a permutation of 1 to 2.\nOutput: ",
                output_field="1, 2",
                metric="rougel",
            ),
            "route_mismatch",
        ),
    ],
)
def test_each_problem_has_its_reason(row: dict[str, Any], reason: str) -> None:
    problem = check_row(row)
    assert problem is not None and problem[0] == reason, problem


def test_clean_keeps_first_of_duplicate_prompts_and_counts_reasons() -> None:
    spaced = _with(MC, input_field=MC["input_field"].replace("  What", " \n What"))
    rows = [MC, spaced, _with(MC, output_field=9), NER, GEN]
    res = clean(rows)
    assert res.kept == [MC, NER, GEN]
    assert res.reasons == {"duplicate": 1, "invalid_answer": 1}
    assert res.rejected[0]["example"] is spaced and res.rejected[0]["detail"]
    assert normalize_prompt(spaced["input_field"]) == normalize_prompt(MC["input_field"])


def test_answers_are_checked_in_their_parsed_form() -> None:
    assert ranking_permutation([0.1, 1, 0.01, 1, 0]) == [2, 4, 1, 3, 5]
    assert answer_value("ranking", [0, 1]) == [2, 1]
    assert answer_value("generation", ["a", "b"]) == "a"
    assert answer_value("retrieval", [3, 1]) == [3, 1]


def test_language_checks() -> None:
    assert has_japanese("Norvik フライパン") and not has_japanese("Norvik Bratpfanne")
    assert guess_language("Der Becher ist aus Keramik und für die Küche") == "de"
    assert guess_language("The mug is made of ceramic and it is great for the kitchen") == "en"
    assert guess_language("Norvik NO-141 28 cm") is None
    assert guess_language("NorvikのフライパンNO-141。素材はステンレスです。") == "ja"
