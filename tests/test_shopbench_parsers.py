"""Parsers: the official kit's documented cases, golden files for both modes, and properties
(never raise, declared types, robust == official on clean valid outputs, no invented
answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_evaluator import ref_parse

from harness.shopbench.errors import DataError, UnknownNameError
from harness.shopbench.parsers import (
    MAX_RESPONSE_CHARACTERS,
    MODES,
    ParseResult,
    parse,
    register,
    registered,
)
from harness.shopbench.types import TASK_TYPES
from harness.shopbench.validators import valid_answer

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "parsers" / "cases.json"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

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


def _result_json(r: ParseResult) -> dict[str, Any]:
    return {"value": r.value, "ok": r.ok, "reason": r.reason}


def _golden_cases() -> list[dict[str, Any]]:
    out = []
    for task_type, prompt_key, raw in GOLDEN_INPUTS:
        prompt = PROMPTS[prompt_key] if prompt_key else None
        out.append(
            {
                "task_type": task_type,
                "prompt": prompt_key,
                "raw": raw,
                "official": _result_json(parse(raw, task_type, "official", prompt)),
                "robust": _result_json(parse(raw, task_type, "robust", prompt)),
            }
        )
    return out


def test_golden_parser_cases(update_golden: bool) -> None:
    cases = _golden_cases()
    if update_golden:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n", "utf-8")
    golden = json.loads(GOLDEN.read_text("utf-8"))
    assert [(c["task_type"], c["prompt"], c["raw"]) for c in golden] == [
        (c["task_type"], c["prompt"], c["raw"]) for c in cases
    ], "case list changed: rerun with --update-golden and review the diff"
    for got, want in zip(cases, golden, strict=True):
        assert got == want, f"{got['task_type']} {got['raw']!r}"


@pytest.mark.parametrize(("task_type", "raw", "expected"), OFFICIAL_DOCUMENTED)
def test_official_documented_cases(task_type: str, raw: str, expected: Any) -> None:
    assert parse(raw, task_type, "official").value == expected


def test_official_truncates_at_5000_characters() -> None:
    long = " " * MAX_RESPONSE_CHARACTERS + "1, 2, 3"
    assert parse(long, "retrieval", "official").value == []
    assert parse(" " * (MAX_RESPONSE_CHARACTERS - 1) + "2", "multiple-choice").value == 2
    assert parse("x" * 4999 + "\n3", "generation", "robust").value == "x" * 4999


def test_official_quirks_kept() -> None:
    # Unicode digits count (str.isnumeric / int), ints > 5 are dropped in ranking.
    assert parse("٣", "multiple-choice").value == 3
    assert parse("１,２", "ranking").value == [1, 2]
    assert parse("6, 7, 1", "ranking").value == [1]
    assert parse("3, 3, 3", "retrieval").value == [3, 3, 3]
    assert parse("['a', 1]", "named_entity_recognition").value == ["['a'", "1]"]


def test_robust_rejects_ambiguous_outputs() -> None:
    p = PROMPTS["mc4"]
    for raw in ("1 or 2", "Answer: 1. Actually the answer is 3", "2, 3", "I don't know"):
        r = parse(raw, "multiple-choice", "robust", p)
        assert not r.ok and r.value == -1 and r.reason
    for raw in ("1, 2, 3, 4, 5 or 5, 4, 3, 2, 1", "3, 3, 1, 2, 4", "no idea"):
        assert not parse(raw, "ranking", "robust", PROMPTS["rank5"]).ok
    assert not parse("1, 2, 3. Alternatively 4, 5, 6", "retrieval", "robust").ok
    assert not parse("None", "named_entity_recognition", "robust").ok


def test_registry_and_errors() -> None:
    assert {m for m, _ in registered()} >= set(MODES)
    assert {(m, t) for m in MODES for t in TASK_TYPES} <= set(registered())
    with pytest.raises(UnknownNameError, match="unknown task type 'classification'"):
        parse("1", "classification")
    with pytest.raises(UnknownNameError, match="unknown parser mode `lenient`"):
        parse("1", "ranking", "lenient")
    with pytest.raises(UnknownNameError, match=r"did you mean `robust`\?\); known: official"):
        parse("1", "ranking", "robst")
    with pytest.raises(DataError, match="must be a string"):
        parse(None, "ranking")  # type: ignore[arg-type]

    @register("test-upper", "generation")
    def _upper(raw: str, prompt: str | None) -> ParseResult:
        return ParseResult(raw.upper(), True)

    assert parse("ab", "generation", "test-upper").value == "AB"


# --------------------------------------------------------------------------- properties

_TYPES = {
    "multiple-choice": int,
    "ranking": list,
    "retrieval": list,
    "named_entity_recognition": list,
    "generation": str,
}
_ELEMENT = {"ranking": int, "retrieval": int, "named_entity_recognition": str}

_ANY_TEXT = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="0123456789 ,.[]()>\n'\"*_`:-abcAnswerOutput٣１", max_size=120),
    st.lists(st.integers(-3, 30), max_size=8).map(lambda xs: ", ".join(map(str, xs))),
)


def _check_type(task_type: str, r: ParseResult) -> None:
    assert isinstance(r.ok, bool)
    assert isinstance(r.value, _TYPES[task_type])
    if task_type == "multiple-choice":
        assert not isinstance(r.value, bool)
    if task_type in _ELEMENT:
        assert all(isinstance(v, _ELEMENT[task_type]) for v in r.value)
        assert all(not isinstance(v, bool) for v in r.value)
    assert r.ok or r.reason


@SETTINGS
@given(
    raw=_ANY_TEXT,
    task_type=st.sampled_from(TASK_TYPES),
    prompt=st.sampled_from([None, *PROMPTS.values()]),
)
def test_parsers_never_raise_and_return_declared_type(
    raw: str, task_type: str, prompt: str | None
) -> None:
    for mode in MODES:
        _check_type(task_type, parse(raw, task_type, mode, prompt))


@SETTINGS
@given(raw=_ANY_TEXT, task_type=st.sampled_from(["multiple-choice", "ranking", "retrieval"]))
def test_robust_never_invents_numbers(raw: str, task_type: str) -> None:
    r = parse(raw, task_type, "robust")
    if r.ok:
        values = r.value if isinstance(r.value, list) else [r.value]
        ascii_raw = "".join(str(int(c)) if c.isdecimal() else c for c in raw)
        assert all(str(v) in ascii_raw for v in values)


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8).filter(
    lambda w: w not in {"none", "na", "nil", "null"}
)
_PHRASE = st.lists(_WORD, min_size=1, max_size=3).map(" ".join)


@st.composite
def _clean_output(draw: st.DrawFn) -> tuple[str, str, str | None]:
    task_type = draw(st.sampled_from(TASK_TYPES))
    if task_type == "multiple-choice":
        n = draw(st.integers(0, 3))
        tail = draw(st.sampled_from(["", ".", f". {draw(_PHRASE)}", "\n"]))
        pad = draw(st.sampled_from(["", " ", "\n"]))
        return task_type, f"{pad}{n}{tail}", PROMPTS["mc4"]
    if task_type == "ranking":
        perm = draw(st.permutations([1, 2, 3, 4, 5]))
        sep = draw(st.sampled_from([", ", ","]))
        text = sep.join(map(str, perm))
        return task_type, draw(st.sampled_from([text, f"[{text}]"])), PROMPTS["rank5"]
    if task_type == "retrieval":
        picks = draw(st.lists(st.integers(1, 15), min_size=1, max_size=3, unique=True))
        return task_type, ", ".join(map(str, picks)), PROMPTS["retr15"]
    if task_type == "named_entity_recognition":
        ents = draw(st.lists(_PHRASE, min_size=1, max_size=4, unique=True))
        form = draw(st.sampled_from(["comma", "repr"]))
        return task_type, ", ".join(ents) if form == "comma" else repr(ents), PROMPTS["ner_brand"]
    first = draw(_PHRASE)
    rest = draw(st.sampled_from(["", ".", f"\n{draw(_PHRASE)}"]))
    return task_type, f"{first}{rest}", None


@SETTINGS
@given(case=_clean_output())
def test_robust_agrees_with_official_on_clean_valid_outputs(
    case: tuple[str, str, str | None],
) -> None:
    task_type, raw, prompt = case
    official = parse(raw, task_type, "official", prompt)
    robust = parse(raw, task_type, "robust", prompt)
    assert valid_answer(task_type, official.value, prompt) is None, (raw, official)
    assert robust.ok and robust.value == official.value, (raw, official, robust)


# --------------------------------------------------------------------------- bullet lists

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


@pytest.mark.parametrize(("task_type", "prompt_key", "raw", "expected"), BULLET_CASES)
def test_robust_reads_bullet_lists(
    task_type: str, prompt_key: str, raw: str, expected: Any
) -> None:
    prompt = PROMPTS[prompt_key]
    r = parse(raw, task_type, "robust", prompt)
    assert r.ok and r.value == expected, r
    # The official parser keeps the kit's behaviour: the bullet stays, the list is lost.
    assert parse(raw, task_type, "official", prompt).value == ref_parse(task_type, raw)


def test_official_keeps_the_bullet() -> None:
    assert parse("- tablette", "named_entity_recognition", "official").value == ["- tablette"]
    assert parse("- 6\n- 9\n- 15", "retrieval", "official").value == []


def test_bullet_lists_that_name_no_answer_stay_unparsed() -> None:
    # Items that start with no number and repeat no candidate: nothing to read.
    assert not parse("- good\n- better", "ranking", "robust", PROMPTS["rank5"]).ok
    # An enumeration of texts without a prompt to map them.
    assert not parse("1. red boots\n2. blue shoes", "retrieval", "robust").ok
    # Two different bulleted rankings.
    two = "- 1\n- 2\n- 3\n\nOr:\n- 3\n- 2\n- 1"
    assert not parse(two, "ranking", "robust", PROMPTS["rank5"]).ok
    # Bullets holding lists on one line are read as the list they hold, not as [3, 5].
    assert parse("- 3, 1, 2\n- 5, 4", "ranking", "robust", PROMPTS["rank5"]).value == [
        3,
        1,
        2,
        5,
        4,
    ]


_SYMBOL_STYLES = ["- ", "* ", "• ", "+ "]
_NUMBER_STYLES = ["{i}. ", "{i}) ", "({i}) "]


@st.composite
def _bulleted(draw: st.DrawFn, items: list[str]) -> str:
    """``items`` rendered as one list: a bullet style, one per line, or an enumeration."""
    style = draw(st.sampled_from([*_SYMBOL_STYLES, *_NUMBER_STYLES, ""]))
    indent = draw(st.sampled_from(["", "  "]))
    gap = draw(st.sampled_from(["\n", "\n\n"]))
    lines = [indent + style.format(i=i) + item for i, item in enumerate(items, start=1)]
    return gap.join(lines) + draw(st.sampled_from(["", "\n"]))


@st.composite
def _number_list(draw: st.DrawFn) -> tuple[str, str, list[int]]:
    task_type = draw(st.sampled_from(["ranking", "retrieval"]))
    pool = range(1, 6) if task_type == "ranking" else range(1, 16)
    most = 5 if task_type == "ranking" else 3
    numbers = draw(st.lists(st.sampled_from(list(pool)), min_size=2, max_size=most, unique=True))
    label = draw(st.sampled_from(["", "Product ", "Item ", "#", "Snippet "]))
    notes = [
        draw(
            st.sampled_from(["", ": " + draw(_PHRASE), " - " + draw(_PHRASE), f" ({draw(_WORD)})"])
        )
        for _ in numbers
    ]
    raw = draw(_bulleted([f"{label}{n}{note}" for n, note in zip(numbers, notes, strict=True)]))
    if draw(st.booleans()):
        raw = draw(st.sampled_from(["Output:\n", "Here is the list:\n", "Ranking: "])) + raw
    return task_type, raw, numbers


@SETTINGS
@given(case=_number_list())
def test_any_bulleted_number_list_parses_to_its_items(case: tuple[str, str, list[int]]) -> None:
    task_type, raw, numbers = case
    prompt = PROMPTS["rank5"] if task_type == "ranking" else PROMPTS["retr15"]
    r = parse(raw, task_type, "robust", prompt)
    assert r.ok and r.value == numbers, (raw, r)
    assert parse(raw, task_type, "official", prompt).value == ref_parse(task_type, raw)


@SETTINGS
@given(
    entities=st.lists(_PHRASE, min_size=1, max_size=5, unique_by=str.lower),
    data=st.data(),
)
def test_any_bulleted_entity_list_parses_to_its_items(
    entities: list[str], data: st.DataObject
) -> None:
    raw = data.draw(_bulleted(entities))
    if data.draw(st.booleans()):
        raw = data.draw(st.sampled_from(["Entities:\n", "Here are the brand entities:\n"])) + raw
    r = parse(raw, "named_entity_recognition", "robust", PROMPTS["ner_brand"])
    assert r.ok and r.value == entities, (raw, r)
    assert parse(raw, "named_entity_recognition", "official").value == ref_parse(
        "named_entity_recognition", raw
    )


@SETTINGS
@given(raw=_ANY_TEXT, task_type=st.sampled_from(TASK_TYPES))
def test_official_mode_is_the_kit_on_any_text(raw: str, task_type: str) -> None:
    assert parse(raw, task_type, "official").value == ref_parse(task_type, raw)
