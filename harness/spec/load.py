"""Reading specs: OmegaConf composition (``base:``), ``${...}`` interpolation, ``key=value``
overrides, then strict pydantic validation. All problems are collected into one
:class:`~harness.errors.SpecError` naming each dotted key, its file:line and a suggestion."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError

from harness.errors import SpecError
from harness.registry import did_you_mean
from harness.spec.schema import Spec

BASE_KEY = "base"


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with its provenance.

    Attributes:
        spec: The validated model.
        resolved: The resolved plain dict (interpolations done, aliases as in YAML).
        path: The spec file.
        files: Every YAML file that contributed, the spec file last.
        overrides: The ``key=value`` overrides applied.
    """

    spec: Spec
    resolved: dict[str, Any]
    path: Path
    files: tuple[Path, ...]
    overrides: tuple[str, ...] = field(default=())


def read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise SpecError([f"file not found: {path}"])
    try:
        cfg = OmegaConf.load(path)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecError([f"{where}: {e.problem or e}"]) from None
    except (yaml.YAMLError, OmegaConfBaseException) as e:
        raise SpecError([f"{path}: {e}"]) from None
    if not isinstance(cfg, DictConfig):
        raise SpecError([f"{path}: a spec must be a mapping at the top level"])
    return cfg


def compose(path: Path, chain: tuple[Path, ...] = ()) -> tuple[DictConfig, list[Path]]:
    """Merge ``base:`` files (relative to the including file) under ``path``."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise SpecError([f"`base` cycle: {cycle}"])
    cfg = read_yaml(path)
    bases = cfg.pop(BASE_KEY, None)
    if bases is None:
        return cfg, [path]
    if isinstance(bases, str):
        bases = [bases]
    merged: DictConfig = OmegaConf.create({})
    files: list[Path] = []
    for i, b in enumerate(bases):
        where = line_of([path], (BASE_KEY, i) if len(bases) > 1 else (BASE_KEY,)) or str(path)
        if not isinstance(b, str):
            raise SpecError([f"{where}: `base` must be a file name or a list of file names"])
        if not (path.parent / b).is_file():
            raise SpecError(
                [f"{where}: `base`: file not found: {b} (resolved to {path.parent / b})"]
            )
        base_cfg, base_files = compose(path.parent / b, (*chain, path))
        merged = OmegaConf.merge(merged, base_cfg)  # type: ignore[assignment]
        files.extend(base_files)
    return OmegaConf.merge(merged, cfg), [*files, path]  # type: ignore[return-value]


def line_of(files: list[Path], loc: tuple[str | int, ...]) -> str | None:
    """``file:line`` of the last file defining the key path ``loc``, if any."""
    for f in reversed(files):
        try:
            node = yaml.compose(f.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue
        found = None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                match = [(k, v) for k, v in node.value if k.value == str(part)]
                if not match:
                    break
                found, node = match[-1][0], match[-1][1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    break
                node = node.value[part]
                found = node
            else:
                break
        else:
            if found is not None:
                return f"{f}:{found.start_mark.line + 1}"
    return None


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (Optional, list, dict values), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            m = submodel(arg)
            if m is not None:
                return m
    return None


def fields_at(loc: tuple[str | int, ...]) -> list[str]:
    """The YAML key names valid at the mapping addressed by ``loc``."""
    model: type[BaseModel] | None = Spec
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        hit = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias)),
            None,
        )
        model = submodel(hit.annotation) if hit else None
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


suggest = did_you_mean


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _full_path_hint(loc: tuple[str | int, ...]) -> str:
    """`` (did you mean `full.path`?)`` for an unknown key at ``loc``, or empty."""
    hint = suggest(str(loc[-1]), fields_at(loc[:-1]))
    if not hint:
        return ""
    leaf = hint.split("`")[1]
    return f" (did you mean `{_dotted((*loc[:-1], leaf))}`?)"


def _format_errors(err: ValidationError, files: list[Path], overrides: list[str]) -> list[str]:
    problems = []
    override_keys = {o.split("=", 1)[0] for o in overrides}
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # Drop the union-branch markers pydantic adds (e.g. 'int', "literal['auto']").
        loc = tuple(
            p
            for p in loc
            if not (isinstance(p, str) and (p in ("int", "str", "float", "bool") or "[" in p))
        )
        key = _dotted(loc)
        if e["type"] == "extra_forbidden":
            msg = f"unknown key `{key}`" + _full_path_hint(loc)
        elif e["type"] == "missing":
            msg = f"missing required key `{key}`"
        else:
            got = e.get("input")
            shown = (
                "null" if got is None else repr(got) if not isinstance(got, dict) else "a mapping"
            )
            text = e["msg"].removeprefix("Value error, ")
            msg = f"`{key}`: {text} (got {shown})" if key else text
        where = "command-line override" if key in override_keys else line_of(files, loc)
        problems.append(f"{where}: {msg}" if where else msg)
    return problems


def _stage_name_problems(raw: dict[str, Any], files: list[Path]) -> list[str]:
    stages = raw.get("stages")
    if not isinstance(stages, list):
        return []
    from harness.core.stage import stage_order

    known = stage_order()
    problems = []
    for i, name in enumerate(stages):
        if isinstance(name, str) and name not in known:
            where = line_of(files, ("stages", i)) or line_of(files, ("stages",))
            msg = f"unknown stage `{name}` in `stages`" + suggest(name, known)
            problems.append(f"{where}: {msg}" if where else msg)
    return problems


def _section_problems(spec: Spec, files: list[Path]) -> list[str]:
    """Every listed stage whose declared section is missing."""
    from harness.core.stage import stage_defs

    defs = stage_defs()
    problems = []

    def present(dotted: str) -> bool:
        obj: Any = spec
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
        return obj is not None

    for i, name in enumerate(spec.stages):
        d = defs.get(name)
        if d is None or not d.sections or d.section_present(present):
            continue
        where = line_of(files, ("stages", i)) or line_of(files, ("stages",))
        need = " or ".join(f"`{s}`" for s in d.sections)
        msg = f"stage `{name}` is listed in `stages` but section {need} is missing"
        problems.append(f"{where}: {msg}" if where else msg)
    if len(set(spec.stages)) != len(spec.stages):
        problems.append("`stages` lists a stage twice")
    return problems


def _tp_problems(spec: Spec) -> list[str]:
    """Tensor-parallel problems knowable from the spec alone (tiny or local models)."""
    try:
        from harness.inference.validate import spec_tp_problems
    except ModuleNotFoundError as e:  # an installation without the inference package
        if (e.name or "").startswith("harness"):
            return []
        raise
    return spec_tp_problems(spec)


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """Load, compose, override, resolve and validate a spec.

    Args:
        path: The spec YAML file.
        overrides: ``dotted.key=value`` strings (OmegaConf dotlist syntax).

    Returns:
        The validated spec with its resolved dict and provenance.

    Raises:
        SpecError: Listing every problem found, each with its key path and file:line.
    """
    path = Path(path)
    cfg, files = compose(path)
    overrides = list(overrides)
    bad = [o for o in overrides if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise SpecError([f"override `{o}` is not of the form key=value" for o in bad], str(path))
    if overrides:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))  # type: ignore[assignment]
        except OmegaConfBaseException as e:
            raise SpecError([f"command-line override: {e}"], str(path)) from None
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        full_key = str(getattr(e, "full_key", None) or "")
        loc = tuple(
            int(p[1:-1]) if p.startswith("[") else p
            for p in re.findall(r"\[\d+\]|[^.\[\]]+", full_key)
        )
        override_keys = {o.split("=", 1)[0].strip() for o in overrides}
        if full_key and full_key in override_keys:
            where = "command-line override"
        else:
            where = (line_of(files, loc) if loc else None) or str(path)
        msg = str(e).splitlines()[0]
        cause = re.match(r"\w+ raised while resolving interpolation: (.*)", msg)
        if cause:
            msg = cause.group(1).strip("\"'")
        key = f"`{full_key}`: " if full_key else ""
        raise SpecError([f"{where}: {key}interpolation failed: {msg}"], str(path)) from None
    assert isinstance(resolved, dict)
    problems = _stage_name_problems(resolved, files)
    try:
        spec = Spec.model_validate(resolved)
    except ValidationError as e:
        raise SpecError(_format_errors(e, files, overrides) + problems, str(path)) from None
    problems += _section_problems(spec, files)
    if not problems:
        problems += _tp_problems(spec)
    if problems:
        raise SpecError(problems, str(path))
    return LoadedSpec(spec, resolved, path, tuple(files), tuple(overrides))
