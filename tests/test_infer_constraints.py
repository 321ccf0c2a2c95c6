"""Constraint grammars: they admit exactly the answers the official parsers accept."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.inference.constraints import (
    MAX_RULES,
    Constraint,
    choice_grammar,
    constraint_for,
    distinct_sequence_grammar,
)
from harness.shopbench.data import load_shopbench
from harness.shopbench.parsers import parse
from tests.support.paths import EVAL


@functools.cache
def _compiled(grammar: str) -> Any:
    import xgrammar as xgr

    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False)
    return compiler.compile_grammar(grammar)


def grammar_accepts(grammar: str, text: str) -> bool:
    """Whether xgrammar's matcher accepts ``text`` as a complete string of ``grammar``."""
    import xgrammar as xgr

    matcher = xgr.GrammarMatcher(_compiled(grammar), terminate_without_stop_token=True)
    return bool(matcher.accept_string(text)) and bool(matcher.is_terminated())


@pytest.mark.slow  # imports vllm
def test_choice_grammar_matches_vllms_choice_conversion() -> None:
    from vllm.v1.structured_output.utils import choice_as_grammar

    for choices in (["0", "1", "2", "3"], ["1", "2", "3", "4", "5"], ['a"b', "c\\d"]):
        assert choice_grammar(choices) == choice_as_grammar(choices)


def test_permutation_grammar_admits_exactly_the_permutations() -> None:
    items = ["1", "2", "3", "4"]
    grammar, exact = distinct_sequence_grammar(items, 4)
    assert exact
    perms = {",".join(p) for p in itertools.permutations(items)}
    every = {",".join(p) for p in itertools.product(items, repeat=4)}
    for text in every:
        assert grammar_accepts(grammar, text) == (text in perms), text
    for text in ("1,2,3", "1,2,3,4,", "1, 2,3,4", "12,3,4", ""):
        assert not grammar_accepts(grammar, text)


def test_multi_digit_items_are_unambiguous() -> None:
    items = [str(i) for i in range(1, 16)]
    grammar, exact = distinct_sequence_grammar(items, 3)
    assert exact
    for text, ok in {
        "1,10,15": True,
        "15,1,10": True,
        "1,1,15": False,
        "16,1,2": False,
        "1,10": False,
        "0,1,2": False,
        "11,1,12": True,
    }.items():
        assert grammar_accepts(grammar, text) is ok, text


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(2, 12),
    data=st.data(),
)
def test_grammar_and_accepts_agree(n: int, data: st.DataObject) -> None:
    items = [str(i) for i in range(1, n + 1)]
    k = data.draw(st.integers(1, min(n, 4)))
    grammar, exact = distinct_sequence_grammar(items, k)
    c = Constraint("retrieval", grammar, tuple(items), k, exact)
    parts = data.draw(st.lists(st.integers(0, n + 2).map(str), min_size=1, max_size=5))
    text = ",".join(parts)
    assert grammar_accepts(grammar, text) == c.accepts(text)


def test_large_lists_fall_back_to_a_repeating_grammar() -> None:
    items = [str(i) for i in range(1, 21)]
    grammar, exact = distinct_sequence_grammar(items, 20)
    assert not exact
    assert grammar.count("::=") == 2
    assert grammar_accepts(grammar, ",".join(["1"] * 20))
    grammar, exact = distinct_sequence_grammar(items[:8], 8)
    assert exact and grammar.count("::=") <= MAX_RULES + 1
    with pytest.raises(ValueError, match="between 1 and"):
        distinct_sequence_grammar(items[:3], 4)


def _first_answer(c: Constraint) -> str:
    if c.choice:
        return c.items[0]
    return ",".join(c.items[: c.length])


def _check_prompts(records: list) -> dict[str, int]:
    seen: dict[str, int] = {}
    for r in records:
        c = constraint_for(r.input_field, r.task_type)
        if r.task_type not in ("multiple-choice", "ranking", "retrieval"):
            assert c is None
            continue
        assert c is not None
        seen[r.task_type] = seen.get(r.task_type, 0) + 1
        answer = _first_answer(c)
        assert c.accepts(answer) and grammar_accepts(c.grammar, answer)
        assert parse(answer, r.task_type, "official").ok
        if r.task_type == "multiple-choice" and isinstance(r.output_field, int):
            assert str(r.output_field) in c.items, r.source
        if r.task_type == "ranking":
            assert c.exact and c.length == len(c.items)
        if r.task_type == "retrieval" and r.output_field:
            assert {str(x) for x in r.output_field} <= set(c.items), r.source
    return seen


def test_constraints_of_the_test_rows() -> None:
    seen = _check_prompts(load_shopbench(EVAL))
    assert seen == {"multiple-choice": 8, "ranking": 4, "retrieval": 6}
    ranking = next(r for r in load_shopbench(EVAL) if r.task_type == "ranking")
    c = constraint_for(ranking.input_field, "ranking")
    assert c is not None and c.items == ("1", "2", "3", "4", "5")


def test_constraints_of_the_shopbench_dev_prompts(dev_fixture: Path) -> None:
    records = load_shopbench(dev_fixture)
    seen = _check_prompts(records)
    assert set(seen) == {"multiple-choice", "ranking", "retrieval"}
    # task14 asks for 3 of 15 products: exactly three distinct numbers from 1..15.
    r = next(r for r in records if r.task_name == "task14")
    c = constraint_for(r.input_field, "retrieval")
    assert c is not None and c.length == 3 and c.items == tuple(str(i) for i in range(1, 16))
