"""Parsers: the official kit's documented cases, golden files for both modes, the official
mode against the kit's own parsers on a fixed corpus (``golden/official/kit_parsers.json``),
and properties (never raise, declared types, robust == official on clean valid outputs, no
invented answers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from tests.support import official_corpus, paths
from tests.support.goldens import check_file, official_golden
from tests.support.parser_cases import BULLET_CASES, GOLDEN_INPUTS, OFFICIAL_DOCUMENTED, PROMPTS

GOLDEN = paths.GOLDEN / "parsers" / "cases.json"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def kit_parse() -> dict[tuple[str, str], Any]:
    """(task type, raw) -> the starter kit's parse, from the official golden."""
    golden = official_golden("kit_parsers")
    check_file("kit_parsers", golden["corpus"], official_corpus.PARSER_INPUTS)
    cases = json.loads(official_corpus.PARSER_INPUTS.read_text("utf-8"))
    assert len(cases) == len(golden["cases"])
    return {
        (t, case["raw"]): value
        for case, parsed in zip(cases, golden["cases"], strict=True)
        for t, value in parsed.items()
    }


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


@pytest.mark.parametrize(("task_type", "prompt_key", "raw", "expected"), BULLET_CASES)
def test_robust_reads_bullet_lists(
    task_type: str, prompt_key: str, raw: str, expected: Any, kit_parse: dict
) -> None:
    prompt = PROMPTS[prompt_key]
    r = parse(raw, task_type, "robust", prompt)
    assert r.ok and r.value == expected, r
    # The official parser keeps the kit's behaviour: the bullet stays, the list is lost.
    assert parse(raw, task_type, "official", prompt).value == kit_parse[(task_type, raw)]


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


def test_official_mode_is_the_kit_on_the_corpus(kit_parse: dict) -> None:
    """Every case of the fixed corpus (the cases above, generated Unicode text, answer-like
    text, number lists, Python literals and bulleted lists under each task type) parses as
    the kit's own parser parses it."""
    assert len(kit_parse) > 2000
    for (task_type, raw), want in kit_parse.items():
        assert not (isinstance(want, dict) and "raises" in want), (task_type, raw, want)
        assert parse(raw, task_type, "official").value == want, (task_type, raw)


def test_the_parser_corpus_is_what_its_builder_makes() -> None:
    want = official_corpus.dump(official_corpus.parser_inputs())
    assert official_corpus.PARSER_INPUTS.read_text("utf-8") == want
