"""Reading finished stages' results.

Readers of another stage's outputs (the report, sweeps, the GPU check, ``harness compare``) go
through these functions, which know the stage dirs' layout (:mod:`harness.core.artifacts`),
so that library code takes plain files. A stage's result comes back as the result model its
stage declares, validated (:func:`stage_result`): a reader uses typed attributes
(``stage_result(d, InferResult).metrics.wall_s``), never metric names spelled as strings, so a
renamed field fails where it is read instead of silently dropping out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, overload

from pydantic import ValidationError

from harness.core import artifacts
from harness.core.artifacts import SCORES
from harness.core.contract import StageMetrics, StageResult, check_result

if TYPE_CHECKING:
    from harness.shopbench.units import Units

R = TypeVar("R", bound=StageResult)
M = TypeVar("M", bound=StageMetrics)


def stage_name(stage_dir: Path) -> str:
    """The name of the stage that made a finished stage dir (the store holds it as
    ``<root>/stages/<stage>/<key>/``, whatever the stage is called in a plan)."""
    return stage_dir.parent.name


def result_model(stage: str) -> type[StageResult]:
    """The result model a stage declares (:class:`StageResult` for a stage this process does
    not know: a plugin that is not loaded)."""
    from harness.core.stage import stage_defs

    d = stage_defs().get(stage)
    return d.result_model if d is not None else StageResult


@overload
def stage_result(stage_dir: Path) -> StageResult: ...
@overload
def stage_result(stage_dir: Path, model: type[R]) -> R: ...
def stage_result(stage_dir: Path, model: type[StageResult] | None = None) -> StageResult:
    """The result of a finished stage dir (its manifest's), validated as a result model.

    Args:
        stage_dir: The finished stage dir.
        model: The result model to read it as (default: the one its stage declares).

    Raises:
        ResultError: The result does not match the model (the message names the field).
        OSError: The dir has no manifest.
    """
    stage = stage_name(stage_dir)
    model = model or result_model(stage)
    return check_result(stage, model, artifacts.manifest(stage_dir)["result"], str(stage_dir))


def metrics_of(metrics: Mapping[str, float], stage: str, model: type[M]) -> M | None:
    """One stage's metrics out of a run's flat ``<stage>/<metric>`` metrics (what the
    tracker logs and a sweep's trial records), as the stage's metrics model.

    Returns:
        The typed metrics, or None when the stage's metrics are not there or do not match
        the model (a record of another harness version).
    """
    head = f"{stage}/"
    mine = {k[len(head) :]: v for k, v in metrics.items() if k.startswith(head)}
    if not mine:
        return None
    try:
        return model.model_validate(mine)
    except ValidationError:
        return None


def score_units(score_dir: Path, mode: str) -> Units:
    """The per-row scoring units of a ``score`` stage dir under a parser mode.

    Args:
        score_dir: The stage dir.
        mode: ``official`` or ``robust``.

    Raises:
        HarnessError: The files are missing or lack per-row units.
    """
    from harness.shopbench.units import units_from_files

    return units_from_files(SCORES.file(score_dir, mode), SCORES.rows(score_dir, mode))
