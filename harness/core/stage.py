"""Stage declarations: one ``@stage`` per stage is the single source of truth.

A stage is a pure function of its spec slice and its upstream artifacts. Its declaration
carries everything the rest of the harness derives from:

* ``name``; ``section``: the spec section that puts the stage in the default stage list when
  present, and that must be present when the stage is listed (None: the stage runs only
  when listed); a tuple names alternatives, any one of which will do (the report follows
  ``eval`` or ``shopping_mmlu``);
* its **slice model**, the annotation of the stage function's second parameter: a
  :class:`SpecSlice` whose fields each name the spec path they take (:func:`read`); the
  paths are its ``reads`` (everything it may look at), checked against the spec schema when
  the stage is declared (an unknown path is an error naming the stage, the path and the
  nearest valid one). The function receives the slice validated as that model;
* its **result model**, the function's return annotation: a :class:`StageResult` subclass
  whose ``metrics`` and ``summary`` are the stage's :class:`StageMetrics` and
  :class:`StageSummary` models, declaring (typed) every metric and summary fact that readers
  of the stage's result use (default: the plain :class:`StageResult`). The executor validates
  what the stage returns against it before publishing: a missing or mistyped declared field
  fails the stage. Readers of another stage's result get it typed
  (:func:`harness.core.results.stage_result`);
* ``files`` (derived): the input-file fields of the schema at or below its reads
  (:mod:`harness.spec.paths`), and ``derived_files``: label -> function of the slice giving a
  project path it reads that the spec names indirectly; the *content* of both enters the
  cache key;
* ``inputs`` / ``optional_inputs``: role -> candidate upstream stages, the first one in the
  plan wins (``infer`` takes its model from quantize, else pad, else finetune, else model);
  ``upstream_all``: the stage sees every stage before it (the report); ``baselines``: the
  stages of each ``report.baselines`` variant it reads (the planner adds the variants' stages
  to the plan and hands the stage their dirs by variant and stage name,
  ``ctx.baselines[variant][stage]``; their keys enter its key);
* ``outputs``: the artifacts it writes (:mod:`harness.core.artifacts`), checked by the executor
  before the stage dir is published;
* ``envs``: the environment roles it uses, the first being the one it runs in (``core``,
  ``serve``, ``train``, ``quant``, ``llmcompressor``); the executor resolves each for the
  run's platform; ``slice_envs``: a function of the slice giving further roles that slice
  uses (the quantize stage's ``llmcompressor`` backend runs in an environment of its own):
  only those enter the key and are created;
* ``code``: what imports cannot show of the code that computes its result (a module loaded
  through an entry point, say); the rest is derived: the import closure of the stage's module
  (:func:`~harness.core.codehash.code_closure`, which also follows module names written as
  strings: ``python -m`` children and lazily registered ``module:attr`` targets). The
  normalised source of every module in it is part of the key;
* ``version``: an optional marker of a semantic change (correctness never depends on it);
* ``warm``: modules the stage function imports when it runs (lazily, since planning imports
  every stage module) that a warm :mod:`~harness.core.stage_worker` imports once for all the
  stages it serves (a sweep's ``infer`` and ``score``); they never change a result or a key;
* ``engine``: for a stage that serves, a function of its validated slice, its input dirs by
  role and its output dir giving the engine spec it serves with: a sweep starts that engine
  ahead of its first trial (:mod:`harness.sweeps.prestart`);
* ``serves``: it generates through an inference engine; a run with several such stages (a
  spec and its baselines) shares one engine per model and engine settings
  (:mod:`harness.inference.engine_pool`), as a sweep's trials do.

Execution order is derived from the inputs (a topological order, ties broken by discovery
order); the report's sections, section checks and the default stage list likewise.

Stages are discovered, not listed: every module of this package defines stages, and plugins
come from the ``harness.stages`` entry-point group (a distribution's
``[project.entry-points."harness.stages"]``, naming a module) or, alternatively, from modules
named in ``$HARNESS_STAGE_PLUGINS`` (comma-separated). Adding a stage is one new module plus
its spec section.

Stage modules must not import heavy packages (torch, vllm, transformers) at module level:
planning imports every stage module.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, get_type_hints

from harness import config
from harness.core.artifacts import Artifact
from harness.core.codehash import code_closure
from harness.core.contract import (
    SpecSlice,
    StageContext,
    StageFn,
    StageMetrics,
    StageResult,
    StageSummary,
    read,
)
from harness.errors import HarnessError
from harness.registry import Registry
from harness.spec.paths import check_path, file_paths_under

__all__ = [
    "ENVS",
    "VLLM_PLUGINS",
    "SpecSlice",
    "StageContext",
    "StageDef",
    "StageMetrics",
    "StageResult",
    "StageSummary",
    "read",
    "stage",
    "stage_defs",
    "stage_order",
]

ENVS = ("core", "serve", "train", "quant", "llmcompressor")
PLUGIN_GROUP = "harness.stages"
PLUGIN_ENV = "HARNESS_STAGE_PLUGINS"

VLLM_PLUGINS = ("harness.quant.vllm_cpu_wna16",)
"""Modules vLLM loads in every process it starts, through the ``vllm.general_plugins`` entry
point of pyproject.toml: imports cannot show them, so a stage that serves with vLLM names them
in its ``code``."""


@dataclass(frozen=True)
class StageDef:
    """A declared stage (see the module docstring for the fields)."""

    name: str
    fn: StageFn
    module: str
    sections: tuple[str, ...]
    slice_model: type[SpecSlice]
    files: tuple[str, ...]
    derived_files: dict[str, Callable[[dict[str, Any]], str | None]]
    inputs: dict[str, tuple[str, ...]]
    optional_inputs: dict[str, tuple[str, ...]]
    upstream_all: bool
    outputs: tuple[Artifact, ...]
    envs: tuple[str, ...]
    code: tuple[str, ...]
    version: str
    serves: bool = False
    slice_envs: Callable[[dict[str, Any]], tuple[str, ...]] | None = None
    result_model: type[StageResult] = StageResult
    baselines: tuple[str, ...] = ()
    warm: tuple[str, ...] = ()
    engine: Callable[[Any, Mapping[str, Path], Path], Any] | None = None

    @property
    def reads(self) -> tuple[str, ...]:
        """The spec paths the stage reads: its slice model's fields."""
        return self.slice_model.paths()

    def call(self, ctx: StageContext, **kwargs: Any) -> StageResult:
        """Run the stage function on its context, with the slice validated as its model."""
        return self.fn(ctx, self.slice_model.model_validate(ctx.config), **kwargs)

    @property
    def section(self) -> str | None:
        """The section, or the alternatives joined by ``|``; None when the stage has none."""
        return "|".join(self.sections) or None

    def section_present(self, present: Callable[[str], bool]) -> bool:
        """Whether one of the stage's sections is present (False without sections)."""
        return any(present(s) for s in self.sections)

    @property
    def env(self) -> str:
        """The environment role the stage runs in."""
        return self.envs[0]

    def envs_for(self, slice_: dict[str, Any]) -> tuple[str, ...]:
        """Every environment role the stage uses with this slice: ``envs``, then the roles
        ``slice_envs`` adds."""
        extra = self.slice_envs(slice_) if self.slice_envs is not None else ()
        bad = [e for e in extra if e not in ENVS]
        if bad:
            raise ValueError(f"stage {self.name!r}: slice_envs gave unknown roles {bad}")
        return (*self.envs, *(e for e in extra if e not in self.envs))

    @property
    def target(self) -> str:
        """``module:function`` used to run the stage in a subprocess."""
        return f"{self.module}:{self.fn.__name__}"

    @property
    def code_modules(self) -> tuple[str, ...]:
        """Every project module whose code computes the stage's result: the import closure
        of its module and of what it declares in ``code``
        (:func:`~harness.core.codehash.code_closure`)."""
        return code_closure((self.module, *self.code))


STAGES: Registry[StageDef] = Registry("stage")
"""Every declared stage, by name (the registry the harness uses for every named vocabulary)."""
_IMPORTED: set[str] = set()
"""Stage modules (built-in and plugins) imported so far."""


def stage(
    *,
    name: str,
    section: str | tuple[str, ...] | None = None,
    derived_files: dict[str, Callable[[dict[str, Any]], str | None]] | None = None,
    inputs: dict[str, tuple[str, ...]] | None = None,
    optional_inputs: dict[str, tuple[str, ...]] | None = None,
    upstream_all: bool = False,
    outputs: tuple[Artifact, ...] = (),
    envs: tuple[str, ...] = ("core",),
    code: tuple[str, ...] = (),
    version: str = "1",
    serves: bool = False,
    slice_envs: Callable[[dict[str, Any]], tuple[str, ...]] | None = None,
    baselines: tuple[str, ...] = (),
    warm: tuple[str, ...] = (),
    engine: Callable[[Any, Mapping[str, Path], Path], Any] | None = None,
) -> Callable[[StageFn], StageFn]:
    """Declare a stage (decorator). See the module docstring for the fields."""
    bad = [e for e in envs if e not in ENVS]
    if not envs or bad:
        raise ValueError(f"stage {name!r}: envs {envs!r} must be a non-empty subset of {ENVS}")
    sections = (section,) if isinstance(section, str) else tuple(section or ())

    def deco(fn: StageFn) -> StageFn:
        slice_model = _slice_model(name, fn)
        result_model = _result_model(name, fn)
        reads = slice_model.paths()
        read_heads = {r.split(".")[0] for r in reads}
        for sec in sections:
            if sec.split(".")[0] not in read_heads:
                raise ValueError(f"stage {name!r}: section `{sec}` is outside its reads")
        files = tuple(dict.fromkeys(f for r in reads for f in file_paths_under(r)))
        definition = StageDef(
            name=name,
            fn=fn,
            module=fn.__module__,
            sections=sections,
            slice_model=slice_model,
            files=files,
            derived_files=dict(derived_files or {}),
            inputs=dict(inputs or {}),
            optional_inputs=dict(optional_inputs or {}),
            upstream_all=upstream_all,
            outputs=outputs,
            envs=envs,
            code=code,
            version=version,
            serves=serves,
            slice_envs=slice_envs,
            result_model=result_model,
            baselines=baselines,
            warm=warm,
            engine=engine,
        )
        STAGES.add(name, definition)
        return fn

    return deco


def _slice_model(name: str, fn: StageFn) -> type[SpecSlice]:
    """The stage function's slice model (its second parameter's annotation), its spec paths
    checked against the schema."""
    params = list(inspect.signature(fn).parameters)
    hints = get_type_hints(fn)
    model = hints.get(params[1]) if len(params) > 1 else None
    if not (isinstance(model, type) and issubclass(model, SpecSlice)):
        raise HarnessError(
            f"stage `{name}` ({fn.__module__}.{fn.__name__}): its second parameter must be "
            "annotated with its slice model (a SpecSlice subclass)"
        )
    for field, info in model.model_fields.items():
        if not isinstance(info.validation_alias, str):
            raise HarnessError(
                f"stage `{name}`: slice field `{model.__name__}.{field}` names no spec path "
                '(declare it with `read("section.key")`)'
            )
        check_path(info.validation_alias, where=f"stage `{name}` ({fn.__module__})")
    return model


def _result_model(name: str, fn: StageFn) -> type[StageResult]:
    """The stage function's result model: its return annotation (default
    :class:`StageResult`)."""
    model = get_type_hints(fn).get("return", StageResult)
    if not (isinstance(model, type) and issubclass(model, StageResult)):
        raise HarnessError(
            f"stage `{name}` ({fn.__module__}.{fn.__name__}): its return annotation must be "
            f"its result model (a StageResult subclass), not {model!r}"
        )
    for part, base in (
        (model.metrics_model(), StageMetrics),
        (model.summary_model(), StageSummary),
    ):
        if not (isinstance(part, type) and issubclass(part, base)):
            raise HarnessError(
                f"stage `{name}`: `{model.__name__}` must declare its metrics and summary as "
                f"{StageMetrics.__name__} and {StageSummary.__name__} subclasses, not {part!r}"
            )
    return model


@cache
def _builtin_modules() -> tuple[str, ...]:
    package = Path(__file__).parents[1] / "stages"
    return tuple(
        f"harness.stages.{m.name}"
        for m in sorted(pkgutil.iter_modules([str(package)]), key=lambda m: m.name)
    )


@cache
def _entry_point_modules() -> tuple[str, ...]:
    # Installed distributions do not change while the process runs: scanned once.
    return tuple(ep.value.partition(":")[0] for ep in metadata.entry_points(group=PLUGIN_GROUP))


def _plugin_modules() -> list[str]:
    named = (config.get(PLUGIN_ENV) or "").split(",")
    return list(dict.fromkeys([*_entry_point_modules(), *(m.strip() for m in named if m.strip())]))


def _discover() -> None:
    """Import every built-in stage module, then the plugins, each once."""
    for mod in _builtin_modules():
        if mod not in _IMPORTED:
            importlib.import_module(mod)
            _IMPORTED.add(mod)
    for mod in _plugin_modules():
        if mod in _IMPORTED:
            continue
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise HarnessError(f"stage plugin module `{mod}` cannot be imported: {e}") from None
        _IMPORTED.add(mod)


def stage_defs() -> dict[str, StageDef]:
    """Every declared stage by name, in execution order."""
    _discover()
    defs = {n: STAGES[n] for n in STAGES.names()}
    return {n: defs[n] for n in _topological(defs)}


def _topological(defs: dict[str, StageDef]) -> list[str]:
    """Stages ordered so that every possible upstream comes first; among stages that are
    ready, the first declared goes first (built-ins in module-name order, then plugins)."""
    names = list(defs)
    deps: dict[str, set[str]] = {}
    for n, d in defs.items():
        cands = {c for cs in (*d.inputs.values(), *d.optional_inputs.values()) for c in cs}
        deps[n] = {c for c in cands if c in defs and c != n}
    for n, d in defs.items():  # a stage that sees everything before it comes after the rest
        if d.upstream_all:
            others = [m for m in names if m != n and not defs[m].upstream_all]
            deps[n] |= {m for m in others if n not in _reach(m, deps)}
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names if n not in order and deps[n] <= set(order)]
        if not ready:
            stuck = [n for n in names if n not in order]
            raise HarnessError(f"stage inputs form a cycle among: {', '.join(stuck)}")
        order.append(ready[0])
    return order


def _reach(start: str, deps: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for m in deps[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def stage_order() -> list[str]:
    """Every known stage name in execution order."""
    return list(stage_defs())


def default_stages(present: Callable[[str], bool]) -> list[str]:
    """The default stage list: every stage whose section is present, in order.

    Args:
        present: Whether a dotted spec section is present.
    """
    return [n for n, d in stage_defs().items() if d.section_present(present)]
