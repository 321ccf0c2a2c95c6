"""The stage contract.

A stage is a pure function of its spec slice and its upstream artifacts. It declares:

* ``name`` and ``version`` (bump the version when the stage's semantics change),
* ``reads``: dotted spec paths whose values form its slice (everything it may look at),
* ``files``: dotted paths inside the slice whose values are input files/dirs; their *content*
  fingerprints enter the cache key (so editing a data file re-runs the stage),
* ``derived_files``: label -> function of the slice giving a project path the stage reads
  that the spec names indirectly (a registry name such as ``prompts.variant``); fingerprinted
  like ``files``,
* ``inputs``: role -> candidate upstream stages, the first one present in the plan wins
  (``infer`` takes its model from quantize, else pad, else finetune, else model),
* ``env``: the environment it runs in (``core``, ``serve``, ``train``, ``quant``).

The stage function receives a :class:`StageContext` and returns a :class:`StageResult`. It
writes only into ``ctx.out`` (a temporary dir the executor renames on success) and never
touches W&B: the executor logs what the result names.

Stage modules must not import heavy packages (torch, vllm, transformers) at module level:
planning imports every stage module.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from harness.spec import schema

ENVS = ("core", "serve", "train", "quant")
STAGE_MODULES = (
    "harness.stages.model",
    "harness.stages.synthesize",
    "harness.stages.mix",
    "harness.stages.finetune",
    "harness.stages.pad",
    "harness.stages.quantize",
    "harness.stages.infer",
    "harness.stages.score",
    "harness.stages.report",
)


@dataclass(frozen=True)
class StageResult:
    """What a stage reports back to the executor.

    Attributes:
        metrics: Flat scalar metrics (logged as ``<stage>/<name>``).
        tables: Table name -> JSONL file (relative to the stage dir) logged as W&B tables.
        images: Image name -> PNG file (relative to the stage dir).
        series: Series name -> JSONL file of per-step rows with a ``step`` key (training logs).
        summary: Free-form JSON-able facts recorded in the manifest.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    series: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "metrics": self.metrics,
            "tables": self.tables,
            "images": self.images,
            "series": self.series,
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StageResult:
        """Inverse of :meth:`to_json`."""
        return cls(**d)


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class StageContext:
    """Everything a stage may use. Serialised to JSON for stages in other environments.

    Attributes:
        stage: Stage name.
        key: Its content-addressed key.
        config: Its slice: dotted spec path -> resolved JSON value.
        out: The (temporary) directory it writes into.
        inputs: Role -> finished upstream stage dir.
        upstream: Upstream stage name -> finished dir (all of them, for the report).
        root: The project root (relative paths in the spec resolve against it).
        run_dir: The run's directory (logs), outside the content-addressed store.
    """

    stage: str
    key: str
    config: dict[str, Any]
    out: Path
    inputs: dict[str, Path]
    upstream: dict[str, Path]
    root: Path
    run_dir: Path

    def value(self, dotted: str) -> Any:
        """The raw value at a dotted spec path the stage declared in ``reads``."""
        if dotted not in self.config:
            raise KeyError(f"stage `{self.stage}` did not declare `{dotted}` in its reads")
        return self.config[dotted]

    def section(self, dotted: str, model: type[M]) -> M:
        """A declared spec path validated as a section model (e.g. ``PadConfig``)."""
        return model.model_validate(self.value(dotted))

    def path(self, p: str | Path) -> Path:
        """A spec path resolved against the project root."""
        p = Path(p)
        return p if p.is_absolute() else self.root / p

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "stage": self.stage,
            "key": self.key,
            "config": self.config,
            "out": str(self.out),
            "inputs": {k: str(v) for k, v in self.inputs.items()},
            "upstream": {k: str(v) for k, v in self.upstream.items()},
            "root": str(self.root),
            "run_dir": str(self.run_dir),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StageContext:
        """Inverse of :meth:`to_json`."""
        return cls(
            stage=d["stage"],
            key=d["key"],
            config=d["config"],
            out=Path(d["out"]),
            inputs={k: Path(v) for k, v in d["inputs"].items()},
            upstream={k: Path(v) for k, v in d["upstream"].items()},
            root=Path(d["root"]),
            run_dir=Path(d["run_dir"]),
        )

    def write(self, path: Path) -> None:
        """Write the context as JSON (for a stage subprocess)."""
        path.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")


StageFn = Callable[[StageContext], StageResult]


@dataclass(frozen=True)
class StageDef:
    """A registered stage."""

    name: str
    version: str
    env: str
    reads: tuple[str, ...]
    files: tuple[str, ...]
    derived_files: dict[str, Callable[[dict[str, Any]], str | None]]
    inputs: dict[str, tuple[str, ...]]
    optional_inputs: dict[str, tuple[str, ...]]
    fn: StageFn
    module: str

    @property
    def target(self) -> str:
        """``module:function`` used to run the stage in a subprocess."""
        return f"{self.module}:{self.fn.__name__}"


REGISTRY: dict[str, StageDef] = {}


def stage(
    *,
    name: str,
    version: str,
    env: str,
    reads: tuple[str, ...],
    files: tuple[str, ...] = (),
    derived_files: dict[str, Callable[[dict[str, Any]], str | None]] | None = None,
    inputs: dict[str, tuple[str, ...]] | None = None,
    optional_inputs: dict[str, tuple[str, ...]] | None = None,
) -> Callable[[StageFn], StageFn]:
    """Register a stage function (decorator). See the module docstring for the fields.

    Stages outside :data:`~harness.spec.schema.STAGE_ORDER` come from plugin modules named in
    ``$HARNESS_STAGE_PLUGINS`` (comma-separated) and run after the built-in ones, in
    registration order.
    """
    if env not in ENVS:
        raise ValueError(f"stage {name!r}: env {env!r} is not one of {ENVS}")

    def deco(fn: StageFn) -> StageFn:
        REGISTRY[name] = StageDef(
            name=name,
            version=version,
            env=env,
            reads=reads,
            files=files,
            derived_files=dict(derived_files or {}),
            inputs=dict(inputs or {}),
            optional_inputs=dict(optional_inputs or {}),
            fn=fn,
            module=fn.__module__,
        )
        return fn

    return deco


def load_registry() -> dict[str, StageDef]:
    """Import every stage module and plugin (light imports only); return the registry."""
    for mod in STAGE_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    plugins = os.environ.get("HARNESS_STAGE_PLUGINS", "")
    for mod in filter(None, (m.strip() for m in plugins.split(","))):
        importlib.import_module(mod)
    return REGISTRY


def stage_order() -> list[str]:
    """Every known stage name in execution order (built-ins, then plugins)."""
    registry = load_registry()
    return list(schema.STAGE_ORDER) + [n for n in registry if n not in schema.STAGE_ORDER]


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))
