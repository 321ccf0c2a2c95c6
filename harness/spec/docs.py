"""The spec reference, generated from the schema's field descriptions (README embeds it)."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from harness.errors import HarnessError
from harness.spec.load import submodel
from harness.spec.schema import Spec


def _type_name(annotation: typing.Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    text = text.replace("typing.", "").replace("harness.spec.schema.", "")
    return text.replace(" | ", " or ")


def _default(field: typing.Any, given: typing.Any = PydanticUndefined) -> str:
    """The default shown for a field; ``given`` is the value its section's own default
    sets (a section built by a default factory may set other values than its fields')."""
    doc = (field.json_schema_extra or {}).get("doc_default")
    if doc:
        return str(doc)
    if given is not PydanticUndefined:
        return "(section)" if isinstance(given, BaseModel) else f"`{given!r}`"
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


def _is_input_file(field: typing.Any) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("input_file"))


def _section_default(field: typing.Any) -> BaseModel | None:
    """The section instance a field defaults to, if its default is one."""
    if field.default_factory is not None:
        value = field.default_factory()
        return value if isinstance(value, BaseModel) else None
    return field.default if isinstance(field.default, BaseModel) else None


def _rows(
    model: type[BaseModel], prefix: str, seen: set[str], defaults: BaseModel | None = None
) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        given = getattr(defaults, name) if defaults is not None else PydanticUndefined
        note = " *Input file: its content is part of the key.*" if _is_input_file(field) else ""
        rows.append(
            f"| `{key}` | {_type_name(field.annotation)} | {_default(field, given)} | "
            f"{(field.description or '').replace('|', '/')}{note} |"
        )
        sub = submodel(field.annotation)
        if sub is not None and f"{key}:{sub.__name__}" not in seen:
            seen.add(f"{key}:{sub.__name__}")
            list_like = typing.get_origin(field.annotation) is list or "list[" in str(
                field.annotation
            )
            if list_like:
                rows += _rows(sub, f"{key}[].", seen)
            else:
                inner = given if isinstance(given, BaseModel) else _section_default(field)
                rows += _rows(sub, f"{key}.", seen, inner)
    return rows


def spec_reference() -> str:
    """The Markdown table of every spec key, its type, default and description."""
    head = ["| key | type | default | description |", "|---|---|---|---|"]
    return "\n".join(head + _rows(Spec, "", set())) + "\n"


def generated_sections() -> dict[str, str]:
    """Marker name -> generated Markdown, for every generated part of the README."""
    from harness.config import reference

    return {"spec-reference": spec_reference(), "environment": reference()}


def section_markers(name: str) -> tuple[str, str]:
    """The start and end markers of a generated section."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def splice_reference(text: str, where: Path | str) -> str:
    """``text`` with every generated section (between its markers) regenerated.

    Args:
        text: A Markdown document holding the markers.
        where: Its path, for the error message.

    Returns:
        The updated document.

    Raises:
        HarnessError: A marker is missing or a pair is out of order.
    """
    for name, body in generated_sections().items():
        start_marker, end_marker = section_markers(name)
        start, end = text.find(start_marker), text.find(end_marker)
        if start < 0 or end < start:
            raise HarnessError(f"{where}: needs {start_marker} followed by {end_marker}")
        text = f"{text[: start + len(start_marker)]}\n{body.strip()}\n{text[end:]}"
    return text
