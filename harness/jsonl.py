"""Reading JSON Lines with the line number of every value, for errors that name ``file:line``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def json_type(value: Any) -> str:
    """A JSON value's type as a user reads it in a message: ``null``, ``a boolean``, ``a
    number``, ``a string``, ``an array``, ``an object`` (not Python's ``NoneType``)."""
    if value is None:
        return "null"
    for kinds, name in (
        (bool, "a boolean"),
        ((int, float), "a number"),
        (str, "a string"),
        ((list, tuple), "an array"),
        (dict, "an object"),
    ):
        if isinstance(value, kinds):
            return name
    return type(value).__name__


def numbered_json_lines(
    lines: Iterable[str], source: str | Path, error: type[Exception]
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, value)`` for each non-blank line.

    Args:
        lines: The lines (a file handle, ``text.splitlines()``, or ``text.split("\\n")`` where
            other line separators may sit inside JSON strings).
        source: What the lines are read from, as errors name it.
        error: The exception class raised for a line that is not JSON.

    Raises:
        Exception: ``error("SOURCE:LINE: invalid JSON: ...")`` at the first bad line.
    """
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{source}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
        except RecursionError:
            raise error(f"{source}:{lineno}: invalid JSON: nested too deeply") from None
        yield lineno, value
