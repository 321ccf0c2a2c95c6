"""Dotted paths into the spec schema: which exist, which name input files.

A path is a chain of field names (their YAML spelling, i.e. the alias where a field has one)
from the top of :class:`~harness.spec.schema.Spec`; ``[*]`` steps into the items of a list of
sections (``data.mix.sources[*].path``). Only sections are entered: the keys of a mapping
(``decoding.tasks``) and the items of a plain list are values, not paths.

A field marked with :func:`~harness.spec.schema.input_file` names a file or directory whose
*content* is part of the key of every stage that reads the field (directly or through a
section that holds it).
"""

from __future__ import annotations

import difflib
import types
import typing
from functools import cache
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from harness.errors import HarnessError


def _sections(annotation: Any) -> tuple[list[type[BaseModel]], list[type[BaseModel]]]:
    """The section models a field holds directly, and those it holds as list items."""
    direct: list[type[BaseModel]] = []
    items: list[type[BaseModel]] = []
    todo = [annotation]
    while todo:
        t = todo.pop()
        origin = get_origin(t)
        if origin is typing.Annotated:
            todo.append(get_args(t)[0])
        elif origin in (typing.Union, types.UnionType):
            todo.extend(get_args(t))
        elif origin is list:
            for arg in get_args(t):
                for inner in _union_members(arg):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        items.append(inner)
        elif isinstance(t, type) and issubclass(t, BaseModel):
            direct.append(t)
    return direct, items


def _union_members(t: Any) -> list[Any]:
    return list(get_args(t)) if get_origin(t) in (typing.Union, types.UnionType) else [t]


def _walk(model: type[BaseModel], prefix: str, out: dict[str, bool], depth: int) -> None:
    if depth > 8:  # recursive schemas are not expected; stop rather than loop
        return
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        extra = field.json_schema_extra
        out[path] = bool(isinstance(extra, dict) and extra.get("input_file"))
        direct, items = _sections(field.annotation)
        for sub in direct:
            _walk(sub, path + ".", out, depth + 1)
        for sub in items:
            _walk(sub, path + "[*].", out, depth + 1)


@cache
def spec_paths() -> dict[str, bool]:
    """Every dotted path of the spec schema -> whether it names an input file."""
    from harness.spec.schema import Spec

    out: dict[str, bool] = {}
    _walk(Spec, "", out, 0)
    return out


def file_paths_under(path: str) -> tuple[str, ...]:
    """The input-file paths at or below ``path`` (in schema order)."""
    return tuple(p for p, is_file in spec_paths().items() if is_file and under(p, path))


def under(p: str, path: str) -> bool:
    """Whether spec path ``p`` is ``path`` or lies below it (``[*]`` steps included)."""
    return p == path or p.startswith(path + ".") or p.startswith(path + "[*].")


def check_path(path: str, *, where: str) -> None:
    """Raise unless ``path`` is a path of the spec schema.

    Args:
        path: The dotted path.
        where: Who names it, for the message (``stage `pad```).

    Raises:
        HarnessError: Naming ``where``, the path and the closest valid path.
    """
    paths = spec_paths()
    if path in paths:
        return
    close = difflib.get_close_matches(path, list(paths), n=1, cutoff=0.6)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    raise HarnessError(f"{where} reads spec path `{path}`, which the spec schema has not{hint}")
