"""Loaders: ShopBench JSONL (development and hidden-test formats), EC-Guide JSON arrays and
prediction files, into typed :class:`~harness.shopbench.types.Record` lists.

Every malformed row fails with a :class:`~harness.shopbench.errors.DataError` that names
``file:line`` and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.jsonl import json_type, numbered_json_lines
from harness.shopbench.errors import DataError
from harness.shopbench.types import METRIC_TASK_TYPE, METRICS, TASK_TYPES, Record

# EC-Guide labels some yes/no rows with this metric; it is kept for training data but cannot
# be scored by the ShopBench metrics.
EC_GUIDE_EXTRA_METRICS = ("bool",)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _iter_jsonl(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    return numbered_json_lines(text.splitlines(), path, DataError)


def _iter_json_array(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line, element) of a top-level JSON array, keeping each element's line."""
    decoder = json.JSONDecoder()
    n = len(text)
    line, counted = 1, 0

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    def skip_ws(pos: int) -> int:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        return pos

    def fail(pos: int, msg: str) -> DataError:
        return DataError(f"{path}:{line_at(pos)}: invalid JSON: {msg}")

    i = skip_ws(0)
    if i >= n or text[i] != "[":
        raise fail(i, "expected a JSON array")
    i = skip_ws(i + 1)
    if i < n and text[i] == "]":
        return
    while True:
        if i >= n:
            raise fail(i, "unterminated array")
        start = i
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from e
        yield line_at(start), obj
        i = skip_ws(i)
        if i < n and text[i] == ",":
            i = skip_ws(i + 1)
            continue
        if i < n and text[i] == "]":
            if skip_ws(i + 1) != n:
                raise fail(i + 1, "extra data after the array")
            return
        raise fail(i, "expected ',' or ']' between array elements")


def _iter_rows(path: Path) -> Iterator[tuple[int, Any]]:
    text = _read_text(path)
    head = text.lstrip()[:1]
    if head == "[":
        yield from _iter_json_array(text, path)
    else:
        yield from _iter_jsonl(text, path)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_output_field(task_type: str, metric: str, value: Any) -> str | None:
    """Why ``value`` is not a well-formed reference answer for the task type, or None.

    Args:
        task_type: One of :data:`TASK_TYPES`.
        metric: The row's metric (``bool`` rows hold ``yes``/``no`` strings).
        value: The ``output_field``.

    Returns:
        None when well-formed, else the reason.
    """
    if metric == "bool":
        return None if isinstance(value, str) else "output_field of a `bool` row must be a string"
    if task_type == "multiple-choice":
        return None if _is_int(value) else "output_field must be an integer option index"
    if task_type == "retrieval":
        if not isinstance(value, list) or not all(_is_int(v) for v in value):
            return "output_field must be a list of integer indices"
        return None
    if task_type == "ranking":
        if not isinstance(value, list) or not value or not all(_is_number(v) for v in value):
            return "output_field must be a non-empty list of relevance weights"
        return None
    if task_type == "named_entity_recognition":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "output_field must be a list of strings"
        return None
    if isinstance(value, str):
        return None
    if metric in ("rougel", "bleu", "jp-bleu"):
        return f"output_field of a {metric!r} row must be a string"
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return None
    return "output_field must be a string or a non-empty list of strings"


def _str_field(row: dict[str, Any], key: str, where: str, required: bool) -> str | None:
    if key not in row or row[key] is None:
        if required:
            raise DataError(f"{where}: missing field `{key}`")
        return None
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field `{key}` must be a string, got {json_type(value)}")
    return value


def _check_type_and_metric(
    task_type: str | None, metric: str | None, where: str, extra_metrics: tuple[str, ...] = ()
) -> None:
    if task_type is not None and task_type not in TASK_TYPES:
        raise DataError(
            f"{where}: unknown task_type {task_type!r} (expected one of {', '.join(TASK_TYPES)})"
        )
    if metric is not None:
        if metric not in METRICS and metric not in extra_metrics:
            known = ", ".join(repr(m) for m in (*METRICS, *extra_metrics))
            raise DataError(f"{where}: unknown metric {metric!r} (expected one of {known})")
        expected = METRIC_TASK_TYPE.get(metric)
        if task_type is not None and expected is not None and expected != task_type:
            raise DataError(
                f"{where}: metric {metric!r} scores {expected!r} tasks, "
                f"but the row's task_type is {task_type!r}"
            )


def _shopbench_record(row: Any, where: str) -> Record:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {json_type(row)}")
    prompt = _str_field(row, "input_field", where, required=True)
    if "is_multiple_choice" not in row:
        raise DataError(f"{where}: missing field `is_multiple_choice`")
    is_mc = row["is_multiple_choice"]
    if not isinstance(is_mc, bool):
        raise DataError(f"{where}: field `is_multiple_choice` must be true or false")
    labelled = row.get("output_field") is not None
    task_type = _str_field(row, "task_type", where, required=labelled)
    metric = _str_field(row, "metric", where, required=labelled)
    task_name = _str_field(row, "task_name", where, required=labelled)
    track = _str_field(row, "track", where, required=False)
    _check_type_and_metric(task_type, metric, where)
    if task_type is not None and is_mc != (task_type == "multiple-choice"):
        raise DataError(
            f"{where}: is_multiple_choice is {str(is_mc).lower()} but task_type is {task_type!r}"
        )
    output = row.get("output_field")
    if labelled:
        assert task_type is not None and metric is not None
        reason = check_output_field(task_type, metric, output)
        if reason:
            raise DataError(f"{where}: {reason} for task_type {task_type!r}, got {output!r:.80}")
    assert prompt is not None
    return Record(
        input_field=prompt,
        output_field=output,
        task_name=task_name,
        task_type=task_type,  # type: ignore[arg-type]
        metric=metric,
        is_multiple_choice=is_mc,
        track=track,
        source=where,
    )


def load_shopbench(path: str | Path) -> list[Record]:
    """Load ShopBench rows: the development format or the hidden-test format.

    The development format (JSON Lines) has ``input_field, output_field, task_name,
    task_type, metric, is_multiple_choice, track``; the test format only ``input_field`` and
    ``is_multiple_choice``. A JSON array of such objects is accepted too.

    Args:
        path: The file.

    Returns:
        The records in file order.

    Raises:
        DataError: Unreadable file, invalid JSON, missing/ill-typed field, unknown task type
            or metric, or an answer of the wrong shape; the message names ``file:line``.
    """
    path = Path(path)
    records = [_shopbench_record(row, f"{path}:{line}") for line, row in _iter_rows(path)]
    if not records:
        raise DataError(f"{path}: no rows")
    return records


def _ec_guide_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not files:
            raise DataError(f"{path}: no *.json files")
        return files
    return [path]


def _ec_guide_task_name(file: Path, root: Path) -> str:
    if root.is_dir():
        rel = file.relative_to(root).with_suffix("")
        return "ec_guide/" + "/".join(rel.parts)
    return f"ec_guide/{file.parent.name}/{file.stem}"


def _ec_guide_row(row: Any, where: str) -> tuple[str, str, str, Any, str]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {json_type(row)}")
    prompt = _str_field(row, "input_field", where, required=True)
    task_type = _str_field(row, "task_type", where, required=True)
    metric = _str_field(row, "metric", where, required=True)
    if "output_field" not in row or row["output_field"] is None:
        raise DataError(f"{where}: missing field `output_field`")
    _check_type_and_metric(task_type, metric, where, EC_GUIDE_EXTRA_METRICS)
    assert prompt is not None and task_type is not None and metric is not None
    reason = check_output_field(task_type, metric, row["output_field"])
    if reason:
        raise DataError(f"{where}: {reason} for task_type {task_type!r}")
    return prompt, task_type, metric, row["output_field"], where


def load_ec_guide(path: str | Path, skipped: list[str] | None = None) -> list[Record]:
    """Load EC-Guide instruction data: one JSON array file, or a directory of them.

    Rows have ``input_field, output_field, task_type, metric``. The task name is derived from
    the file (``ec_guide/<Type>/<Subtask>``); files that mix task types or metrics (e.g.
    ``MCQ/ACR.json``) get ``[<task_type>,<metric>]`` appended so every task has one metric.
    Rows with EC-Guide's ``bool`` metric are kept (they are training data) but cannot be
    scored.

    Args:
        path: A JSON file or a directory searched recursively for ``*.json``.
        skipped: When given, malformed rows (EC-Guide has a few, e.g. string answers in
            ``MCQ/SAP.json``) are not an error: their ``file:line: reason`` is appended here
            and the row is left out. Invalid JSON is always an error.

    Returns:
        The records, files in sorted order, rows in file order.

    Raises:
        DataError: As :func:`load_shopbench`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    out: list[Record] = []
    for file in _ec_guide_files(path):
        base = _ec_guide_task_name(file, path)
        rows: list[tuple[str, str, str, Any, str]] = []
        for line, row in _iter_rows(file):
            where = f"{file}:{line}"
            try:
                rows.append(_ec_guide_row(row, where))
            except DataError as e:
                if skipped is None:
                    raise
                skipped.append(str(e))
        mixed = len({(t, m) for _, t, m, _, _ in rows}) > 1
        for prompt, task_type, metric, output, where in rows:
            name = f"{base}[{task_type},{metric}]" if mixed else base
            out.append(
                Record(
                    input_field=prompt,
                    output_field=output,
                    task_name=name,
                    task_type=task_type,  # type: ignore[arg-type]
                    metric=metric,
                    is_multiple_choice=task_type == "multiple-choice",
                    track=None,
                    source=where,
                )
            )
    return out


def load_eval_data(path: str | Path) -> list[Record]:
    """Load evaluation rows from ShopBench JSONL or from EC-Guide JSON (file or directory).

    A directory, or a JSON array whose first element lacks ``is_multiple_choice``, is read as
    EC-Guide; everything else as ShopBench.

    Args:
        path: The data file or directory.

    Returns:
        The records.

    Raises:
        DataError: See :func:`load_shopbench`.
    """
    path = Path(path)
    if path.is_dir():
        return load_ec_guide(path)
    text = _read_text(path)
    if text.lstrip()[:1] == "[":
        for _, first in _iter_json_array(text, path):
            if isinstance(first, dict) and "is_multiple_choice" not in first:
                return load_ec_guide(path)
            break
    return load_shopbench(path)


def load_predictions(path: str | Path, key: str = "prediction") -> list[str]:
    """Load raw predictions: JSON Lines, one object per data row with the raw text at ``key``.

    Args:
        path: The JSONL file.
        key: The field holding the raw model output.

    Returns:
        The raw outputs in file order.

    Raises:
        DataError: Unreadable file, invalid JSON, or a row without a string ``key``.
    """
    path = Path(path)
    text = _read_text(path)
    out: list[str] = []
    for line, row in _iter_jsonl(text, path):
        where = f"{path}:{line}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {json_type(row)}")
        if key not in row:
            raise DataError(f"{where}: missing field `{key}`")
        if not isinstance(row[key], str):
            raise DataError(f"{where}: field `{key}` must be a string, got {json_type(row[key])}")
        out.append(row[key])
    return out


def load_prediction_rows(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """Like :func:`load_predictions` but keeps each row's object (its metadata).

    Args:
        path: The JSONL file.

    Returns:
        ``(where, row)`` pairs, ``where`` being ``file:line``.

    Raises:
        DataError: Unreadable file, invalid JSON or a non-object row.
    """
    path = Path(path)
    out: list[tuple[str, dict[str, Any]]] = []
    for line, row in _iter_jsonl(_read_text(path), path):
        where = f"{path}:{line}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {json_type(row)}")
        out.append((where, row))
    return out
