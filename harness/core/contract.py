"""The stage contract's data: what the executor gives a stage and what a stage gives back.

Neutral ground: the executor, the tracker and the stage bodies import it; the library
packages (data, training, inference, quant, shopbench, kernels) never do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.atomic import write_json
from harness.public_data import resolve_path


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


BASELINE_INPUTS = {
    "baseline": "score",
    "baseline_mmlu": "mmlu_score",
    "baseline_infer": "infer",
    "baseline_quantize": "quantize",
}
"""The report's input role prefix for each stage of a ``report.baselines`` variant it reads
(at least one scoring stage must be there): the planner wires ``<prefix>:<baseline>`` inputs,
the report reads them."""


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
        )

    def write(self, path: Path) -> None:
        """Write the context as JSON (for a stage subprocess)."""
        write_json(path, self.to_json(), sort_keys=False, durable=False)


StageFn = Callable[..., StageResult]
"""``fn(ctx, slice)``: a stage function takes its context and its validated slice model."""
