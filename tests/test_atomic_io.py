"""The one JSON/JSONL writer (:mod:`harness.atomic`) and the one JSON Lines reader
(:mod:`harness.jsonl`): all or nothing on write, ``file:line`` on a bad read."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.atomic import read_json, write_bytes, write_json, write_jsonl
from harness.errors import HarnessError
from harness.jsonl import numbered_json_lines

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@given(rows=st.lists(JSON_VALUES, max_size=8))
def test_jsonl_written_then_read_back_with_line_numbers(tmp_path_factory, rows) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "rows.jsonl"
    assert write_jsonl(path, rows) == len(rows)
    with path.open(encoding="utf-8") as f:
        back = list(numbered_json_lines(f, path, HarnessError))
    assert [v for _, v in back] == rows
    assert [n for n, _ in back] == list(range(1, len(rows) + 1))


def test_failed_jsonl_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    write_jsonl(path, [{"prediction": "old"}])

    def rows() -> Iterator[dict[str, str]]:
        yield {"prediction": "new"}
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        write_jsonl(path, rows())
    assert path.read_text(encoding="utf-8") == '{"prediction": "old"}\n'
    assert _leftovers(tmp_path) == []


def test_unserialisable_json_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "scores.json"
    write_json(path, {"overall": 0.5})
    with pytest.raises(ValueError):
        write_json(path, {"overall": math.nan}, allow_nan=False)
    assert read_json(path) == {"overall": 0.5}
    assert _leftovers(tmp_path) == []


def test_write_json_keeps_text_and_order_when_asked(tmp_path: Path) -> None:
    path = write_json(tmp_path / "sub" / "config.json", {"b": "ü", "a": 1}, sort_keys=False)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and "ü" in text
    assert list(json.loads(text)) == ["b", "a"]


def test_write_bytes_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    write_bytes(path, b"x" * 1000)
    write_bytes(path, b"short")
    assert path.read_bytes() == b"short"
    assert _leftovers(tmp_path) == []


def test_blank_lines_are_skipped_and_a_bad_line_is_named(tmp_path: Path) -> None:
    lines = ['{"a": 1}', "", "   ", '{"a": 2}', '{"a": ']
    values = numbered_json_lines(lines, "train.jsonl", HarnessError)
    assert next(values) == (1, {"a": 1})
    assert next(values) == (4, {"a": 2})
    with pytest.raises(HarnessError, match=r"^train\.jsonl:5: invalid JSON: .*\(column \d+\)$"):
        next(values)


def test_too_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(HarnessError, match=r"^x\.jsonl:1: invalid JSON: nested too deeply$"):
        list(numbered_json_lines(["[" * 100_000], "x.jsonl", HarnessError))


def test_separators_inside_strings_survive_a_newline_only_split() -> None:
    text = '{"q": "a\u2028b"}\n{"q": "c"}\n'
    rows = list(numbered_json_lines(text.split("\n"), "t.json", HarnessError))
    assert rows == [(1, {"q": "a\u2028b"}), (2, {"q": "c"})]
