"""The spec reference, generated from the schema's field descriptions (README embeds it)."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from harness.errors import HarnessError
from harness.spec.load import _submodel
from harness.spec.schema import Spec


def _type_name(annotation: typing.Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    text = text.replace("typing.", "").replace("harness.spec.schema.", "")
    return text.replace(" | ", " or ")


def _default(field: typing.Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
        return f"`{value!r}`"
    if field.default is PydanticUndefined:
        return ""
    return f"`{field.default!r}`"


def _rows(model: type[BaseModel], prefix: str, seen: set[str]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        rows.append(
            f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | "
            f"{(field.description or '').replace('|', '/')} |"
        )
        sub = _submodel(field.annotation)
        if sub is not None and f"{key}:{sub.__name__}" not in seen:
            seen.add(f"{key}:{sub.__name__}")
            list_like = typing.get_origin(field.annotation) is list or "list[" in str(
                field.annotation
            )
            rows += _rows(sub, f"{key}[].", seen) if list_like else _rows(sub, f"{key}.", seen)
    return rows


def spec_reference() -> str:
    """The Markdown table of every spec key, its type, default and description."""
    head = ["| key | type | default | description |", "|---|---|---|---|"]
    return "\n".join(head + _rows(Spec, "", set())) + "\n"


START_MARKER = "<!-- spec-reference:start -->"
END_MARKER = "<!-- spec-reference:end -->"


def splice_reference(text: str, where: Path | str) -> str:
    """``text`` with the part between the spec-reference markers replaced by the reference.

    Args:
        text: A Markdown document holding both markers.
        where: Its path, for the error message.

    Returns:
        The updated document.

    Raises:
        HarnessError: A marker is missing or they are out of order.
    """
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start < 0 or end < start:
        raise HarnessError(f"{where}: needs {START_MARKER} followed by {END_MARKER}")
    head = text[: start + len(START_MARKER)]
    return f"{head}\n{spec_reference().strip()}\n{text[end:]}"
