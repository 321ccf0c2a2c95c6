"""The stage contract's data: what the executor gives a stage and what a stage gives back.

A stage gets a :class:`StageContext` (its config slice, validated as its :class:`SpecSlice`
model; its inputs' finished dirs; for the report, each baseline's) and returns a
:class:`StageResult`: metrics, tables, images, series and summary. Each stage declares its
result model, a :class:`StageResult` subclass with typed :class:`StageMetrics` and
:class:`StageSummary` models; the executor checks what the stage returned against it
(:func:`check_result`) before publishing, and readers of finished stages get the typed model
back (:mod:`harness.core.results`). A manifest's ``result`` is the model's JSON
(:meth:`StageResult.to_json`).

Neutral ground: the executor, the tracker and the stage bodies import it; the library
packages (data, training, inference, quant, shopbench, kernels) never do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.atomic import write_json
from harness.errors import StageError
from harness.public_data import resolve_path


class ResultPart(BaseModel):
    """Base of a result's metrics and summary models.

    A subclass declares, as typed fields, what readers of the result use (a field whose name
    is no identifier, ``official/overall``, takes it as its alias); a declared field without
    a default must be there. Everything else the stage reports is kept too (extra fields).
    Fields are read as attributes (``result.metrics.wall_s``) and, declared or not, by name as
    in a read-only mapping (``result.metrics["official/overall"]``, ``.items()``): the way to
    the names a stage makes up at run time (one metric per task).
    """

    model_config = ConfigDict(
        extra="allow",
        strict=True,
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @classmethod
    def declared_names(cls) -> tuple[str, ...]:
        """The names (aliases where set) of the declared fields, in declaration order."""
        return tuple(f.alias or n for n, f in cls.model_fields.items())

    def to_dict(self) -> dict[str, Any]:
        """What the stage reported, by name (as the manifest holds it)."""
        return self.model_dump(exclude_unset=True)

    def declared(self) -> dict[str, Any]:
        """The declared fields the stage reported, by name."""
        names = set(self.declared_names())
        return {k: v for k, v in self.to_dict().items() if k in names}

    def keys(self) -> Any:
        """The reported names."""
        return self.to_dict().keys()

    def items(self) -> Any:
        """``(name, value)`` of everything reported."""
        return self.to_dict().items()

    def values(self) -> Any:
        """The reported values."""
        return self.to_dict().values()

    def get(self, name: str, default: Any = None) -> Any:
        """A reported value by name, or ``default``."""
        return self.to_dict().get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.to_dict()[name]

    def __contains__(self, name: object) -> bool:
        return name in self.to_dict()

    def __iter__(self) -> Any:  # type: ignore[override]  # the names, as a mapping iterates
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


class StageMetrics(ResultPart):
    """Base of a stage's metrics model: every metric, declared or not, is a number."""

    __pydantic_extra__: dict[str, float] = Field(init=False)


class StageSummary(ResultPart):
    """Base of a stage's summary model: JSON-able facts recorded in the manifest (only the
    declared fields are typed)."""


class StageResult(BaseModel):
    """What a stage reports back to the executor.

    A stage declares its result model as its function's return annotation: this class, or a
    subclass whose ``metrics`` and ``summary`` are the stage's :class:`StageMetrics` and
    :class:`StageSummary` models. The executor validates what the stage returned against it
    before publishing the stage dir (:func:`check_result`); readers of a finished stage get
    it back typed (:func:`harness.core.results.stage_result`).

    Attributes:
        metrics: Flat scalar metrics (logged as ``<stage>/<name>``).
        tables: Table name -> JSONL file (relative to the stage dir) logged as W&B tables.
        images: Image name -> PNG file (relative to the stage dir).
        series: Series name -> JSONL file of per-step rows with a ``step`` key (training logs).
        summary: JSON-able facts recorded in the manifest.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: StageMetrics = Field(default_factory=StageMetrics)
    tables: dict[str, str] = Field(default_factory=dict)
    images: dict[str, str] = Field(default_factory=dict)
    series: dict[str, str] = Field(default_factory=dict)
    summary: StageSummary = Field(default_factory=StageSummary)

    @classmethod
    def metrics_model(cls) -> type[StageMetrics]:
        """The declared metrics model."""
        return cls.model_fields["metrics"].annotation  # type: ignore[return-value]

    @classmethod
    def summary_model(cls) -> type[StageSummary]:
        """The declared summary model."""
        return cls.model_fields["summary"].annotation  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: what the stage reported, in the manifest's shape."""
        return {
            "metrics": self.metrics.to_dict(),
            "tables": dict(self.tables),
            "images": dict(self.images),
            "series": dict(self.series),
            "summary": self.summary.to_dict(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_json`, validated as this model.

        Raises:
            pydantic.ValidationError: A declared field is missing or mistyped.
        """
        return cls.model_validate(d)


R = TypeVar("R", bound=StageResult)


class ResultError(StageError):
    """A stage's result does not match the result model it declares."""


def check_result(stage: str, model: type[R], data: dict[str, Any], where: str = "") -> R:
    """A stage's result JSON validated as its result model.

    Args:
        stage: The stage's name (for the message).
        model: Its result model.
        data: The result as JSON (:meth:`StageResult.to_json`).
        where: Where the result was read (a stage dir), for the message.

    Raises:
        ResultError: A declared field is missing or mistyped, or a metric is not a number;
            the message names the stage, each field and the model declaring it.
    """
    try:
        return model.from_json(data)
    except ValidationError as e:
        problems = "; ".join(_problem(model, err) for err in e.errors())
        raise ResultError(
            f"stage `{stage}`{f' ({where})' if where else ''}: its result does not match "
            f"its result model `{model.__name__}`: {problems}"
        ) from None


def _problem(model: type[StageResult], err: Any) -> str:
    """One validation error as ``field: what is wrong (the model declaring the field)``."""
    loc = [str(p) for p in err["loc"]]
    where = ".".join(loc) or "(the result)"
    owner = model.__name__
    if len(loc) > 1 and loc[0] in ("metrics", "summary"):
        part = model.metrics_model() if loc[0] == "metrics" else model.summary_model()
        declared = loc[1] in part.declared_names()
        owner = f"{part.__name__}.{loc[1]}" if declared else f"{part.__name__} (undeclared)"
    if err["type"] == "missing":
        return f"`{where}` is missing (declared by `{owner}`)"
    return f"`{where}`: {err['msg'][0].lower()}{err['msg'][1:]}, got {err['input']!r} (`{owner}`)"


class SpecSlice(BaseModel):
    """Base of a stage's slice model: what the stage reads of the spec, typed.

    Each field takes the value at the spec path its :func:`read` names (a whole section
    validates as its section model); the paths are the stage's ``reads``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def paths(cls) -> tuple[str, ...]:
        """The spec path of every field, in field order."""
        return tuple(str(f.validation_alias) for f in cls.model_fields.values())


def read(path: str, **kwargs: Any) -> Any:
    """A field of a :class:`SpecSlice` taking the value at the dotted spec ``path``."""
    return Field(validation_alias=path, **kwargs)


@dataclass(frozen=True)
class StageContext:
    """Everything a stage may use. Serialised to JSON for stages in other environments.

    Attributes:
        stage: Stage name.
        key: Its content-addressed key.
        config: Its slice as JSON: dotted spec path -> resolved value (the stage function
            receives it validated as its slice model).
        out: The (temporary) directory it writes into.
        inputs: Role -> finished upstream stage dir.
        upstream: Upstream stage name -> finished dir (all of them, for the report).
        root: The project root (relative paths in the spec resolve against it).
        run_dir: The run's directory (logs), outside the content-addressed store.
        pythons: Environment role -> the interpreter of that environment, for every
            environment the stage declared (resolved by the executor for the platform).
        platform: ``cpu`` or ``gpu``: the run's platform (``run.platform`` resolved).
        baselines: For a stage that reads ``report.baselines`` variants (its declaration's
            ``baselines``): variant name -> stage name -> that variant's finished stage dir,
            for each declared stage the variant has.
    """

    stage: str
    key: str
    config: dict[str, Any]
    out: Path
    inputs: dict[str, Path]
    upstream: dict[str, Path]
    root: Path
    run_dir: Path
    pythons: dict[str, str] = field(default_factory=dict)
    platform: str = "cpu"
    baselines: dict[str, dict[str, Path]] = field(default_factory=dict)

    def path(self, p: str | Path) -> Path:
        """A spec path: a named dataset (``data://NAME[/inner]``, from the local dataset
        cache) or a file path resolved against the project root."""
        return resolve_path(p, self.root)

    def python(self, role: str) -> str:
        """The interpreter of a declared environment role (``serve``, ``train``, ...)."""
        if role not in self.pythons:
            raise KeyError(f"stage `{self.stage}` did not declare environment `{role}`")
        return self.pythons[role]

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
            "pythons": self.pythons,
            "platform": self.platform,
            "baselines": {
                n: {s: str(d) for s, d in dirs.items()} for n, dirs in self.baselines.items()
            },
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
            pythons=dict(d.get("pythons", {})),
            platform=d.get("platform", "cpu"),
            baselines={
                n: {s: Path(p) for s, p in dirs.items()}
                for n, dirs in d.get("baselines", {}).items()
            },
        )

    def write(self, path: Path) -> None:
        """Write the context as JSON (for a stage subprocess)."""
        write_json(path, self.to_json(), sort_keys=False, durable=False)


StageFn = Callable[..., StageResult]
"""``fn(ctx, slice) -> result``: a stage function takes its context and its validated slice
model, and returns its result model."""
