"""Per-row scoring units: what the official aggregation needs, row by row.

Every task score is an aggregate ``f(sum of the rows' statistics)``, so a resample of rows is
scored by summing its rows' statistics and applying ``f`` again, without re-running a metric:

* ``mean`` (accuracy, hit rate@3, NDCG, ROUGE-L, BLEU and jp-BLEU, which the kit scores per
  row, the embedding similarities): one column, the row's value; the task score is the
  mean. With a second column (a weight, 0 for a row the official evaluator leaves out: the
  Shopping MMLU skill evaluator skips rows of a metric it does not know) it is
  ``sum(value) / sum(weight)``.
* ``micro_f1`` (ShopBench): columns ``tp, fp, fn``; the F1 of the summed counts, 0 when
  precision or recall has a zero denominator.
* ``micro_f1_strict`` (Shopping MMLU): the same, NaN where the official code divides by
  zero.

A task's rows are grouped into a ``group`` (the ShopBench track, the Shopping MMLU skill or
leaderboard column). The overall score is the mean of the task scores (ShopBench) or of the
group scores (Shopping MMLU's ``Overall``); ShopBench also reports the mean of its tracks
under ``all-tracks``. With no resampling, :func:`aggregate` reproduces the scorers' numbers
(to float rounding: a sum in another order).

Units are built from the scorers' own per-row output (``rows.jsonl`` objects plus the scores
dict), so a stage dir on disk and an in-memory result give the same units.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.shopbench.errors import ScoringError
from harness.shopbench.types import ALL_TRACKS

MEAN, MICRO_F1, MICRO_F1_STRICT = "mean", "micro_f1", "micro_f1_strict"
AGGREGATES = (MEAN, MICRO_F1, MICRO_F1_STRICT)


@dataclass(frozen=True)
class TaskUnits:
    """One task's per-row statistics.

    Attributes:
        name: Task name.
        group: Track (ShopBench) or skill / leaderboard column (Shopping MMLU); None: none.
        metric: The task's metric label (``accuracy``, ``bleu+jp-bleu``...).
        aggregate: One of :data:`AGGREGATES`.
        stats: ``(n, k)`` float64 statistics (see the module docstring).
        ids: Per row, an id for people (the data line, or the row number).
        row_scores: Per row, the row's own score (micro F1: the row's F1), for "which rows
            got better".
        float32: The official code averages these values as float32 (Shopping MMLU's
            similarities): ``mean`` (``np.mean``) or ``running`` (a running total divided by
            the count); the point estimate repeats it, resamples sum in float64.
    """

    name: str
    group: str | None
    metric: str
    aggregate: str
    stats: np.ndarray
    ids: tuple[str, ...]
    row_scores: np.ndarray
    float32: str | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.stats.shape[0])


@dataclass(frozen=True)
class Units:
    """All tasks' units and how task scores combine.

    Attributes:
        tasks: Task name -> units, in report order.
        overall: ``tasks``: the overall score is the mean of the task scores; ``groups``:
            of the group scores.
        all_groups: Key under which the mean of the group scores joins the groups (ShopBench:
            ``all-tracks``); None: not reported.
        required_groups: Groups the overall score needs (the leaderboard columns): with one
            missing, the overall score is NaN, as ``Overall`` is.
    """

    tasks: dict[str, TaskUnits]
    overall: str = "tasks"
    all_groups: str | None = ALL_TRACKS
    required_groups: tuple[str, ...] = ()
    groups: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        groups: dict[str, list[str]] = {}
        for name, t in self.tasks.items():
            if t.group is not None:
                groups.setdefault(t.group, []).append(name)
        object.__setattr__(self, "groups", groups)


def task_scores(aggregate: str, sums: np.ndarray, n: int) -> np.ndarray:
    """Task scores from summed statistics, vectorised over leading axes.

    Args:
        aggregate: One of :data:`AGGREGATES`.
        sums: ``(..., k)`` sums of the rows' statistics.
        n: Rows per (re)sample.

    Returns:
        ``(...)`` scores.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if aggregate == MEAN:
            if sums.shape[-1] == 1:
                return sums[..., 0] / n
            return np.where(sums[..., 1] > 0, sums[..., 0] / sums[..., 1], np.nan)
        tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
        fill = np.nan if aggregate == MICRO_F1_STRICT else 0.0
        precision = np.where(tp + fp > 0, tp / (tp + fp), fill)
        recall = np.where(tp + fn > 0, tp / (tp + fn), fill)
        total = precision + recall
        return np.where(total == 0, 0.0, 2 * precision * recall / total)


def combine(units: Units, tasks: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """Group and overall scores from task scores (floats or arrays of replicates).

    Args:
        units: The structure.
        tasks: Task name -> score (float or ndarray, all the same shape).

    Returns:
        ``(groups, overall)``: group name (and :attr:`Units.all_groups`) -> score.
    """
    groups: dict[str, Any] = {
        g: sum(tasks[n] for n in names) / len(names) for g, names in units.groups.items()
    }
    group_mean = sum(groups.values()) / len(groups) if groups else None
    if units.overall == "groups":
        missing = any(g not in groups for g in units.required_groups)
        overall = group_mean if group_mean is not None and not missing else math.nan
    else:
        overall = sum(tasks.values()) / len(tasks)
    if units.all_groups is not None and group_mean is not None:
        groups[units.all_groups] = group_mean
    return groups, overall


def point(task: TaskUnits) -> float:
    """A task's score from all its rows, as the official code computes it."""
    if task.float32 is not None and np.all(np.isfinite(task.stats)):
        keep = task.stats[:, 1] > 0 if task.stats.shape[1] == 2 else slice(None)
        values = task.stats[keep, 0].astype(np.float32)
        if len(values) == 0:
            return math.nan
        if task.float32 == "mean":
            # A clamped row is the int 0, which makes np.mean's array float64.
            return float(np.mean(values if np.all(values != 0) else values.astype(np.float64)))
        total: Any = 0
        for v in values:
            total += v
        return float(total / len(values))
    return float(task_scores(task.aggregate, task.stats.sum(axis=0), task.n))


def aggregate(units: Units) -> dict[str, Any]:
    """The scores the units give with no resampling.

    Returns:
        ``{"tasks": {name: score}, "groups": {group: score}, "overall": score}``.
    """
    tasks = {n: point(t) for n, t in units.tasks.items()}
    groups, overall = combine(units, tasks)
    return {
        "tasks": tasks,
        "groups": {g: float(v) for g, v in groups.items()},
        "overall": float(overall),
    }


def row_f1(tp: float, fp: float, fn: float) -> float:
    """A row's own micro F1 (0 where it has no entity)."""
    return float(task_scores(MICRO_F1, np.array([tp, fp, fn], dtype=np.float64), 1))


def task_units(
    name: str,
    group: str | None,
    metric: str,
    agg: str,
    stats: Sequence[Sequence[float]],
    ids: Sequence[str],
    row_scores: Sequence[float],
) -> TaskUnits:
    """A task's units from per-row statistics (a weight column of ones is dropped)."""
    width = 3 if agg != MEAN else (max((len(s) for s in stats), default=1))
    array = np.array(stats, dtype=np.float64).reshape(len(stats), width)
    if agg == MEAN and width == 2 and bool(np.all(array[:, 1] == 1)):
        array = array[:, :1].copy()
    return TaskUnits(
        name, group, metric, agg, array, tuple(ids), np.array(row_scores, dtype=np.float64)
    )


def shopbench_units(
    rows: Iterable[Mapping[str, Any]], scores: Mapping[str, Any], tracks: Mapping[str, Any]
) -> Units:
    """Units of a ShopBench evaluation, from its ``rows.jsonl`` objects and ``scores.json``.

    Args:
        rows: Row objects in data order (``task_name``, ``score``, ``id``, and ``tp``,
            ``fp``, ``fn`` for micro F1).
        scores: The scores dict (task metric per task).
        tracks: Task name -> track (None: no track).

    Returns:
        The units, tasks in the scores dict's order.

    Raises:
        ScoringError: A row of a task the scores do not have, or a micro F1 row without
            counts.
    """
    acc: dict[str, tuple[list[Any], list[str], list[float]]] = {
        n: ([], [], []) for n in scores["tasks"]
    }
    for i, row in enumerate(rows):
        name = row["task_name"]
        if name not in acc:
            raise ScoringError(f"row {i + 1}: task {name!r} is not in the scores")
        stats, ids, values = acc[name]
        if scores["tasks"][name]["metric"] == "micro f1":
            if "tp" not in row:
                raise ScoringError(f"row {i + 1}: a micro F1 row without tp/fp/fn counts")
            stats.append((row["tp"], row["fp"], row["fn"]))
        else:
            stats.append((row["score"],))
        ids.append(str(row.get("id", i + 1)))
        values.append(float(row["score"]))
    tasks = {}
    for name, (stats, ids, values) in acc.items():
        metric = scores["tasks"][name]["metric"]
        agg = MICRO_F1 if metric == "micro f1" else MEAN
        tasks[name] = task_units(name, tracks.get(name), metric, agg, stats, ids, values)
    return Units(tasks, overall="tasks", all_groups=ALL_TRACKS)


def units_from_files(scores_file: Path, rows_file: Path) -> Units:
    """Units of a scored prediction set from its files (a ``score`` stage writes them).

    Args:
        scores_file: The per-task scores (JSON).
        rows_file: The per-row results with their units (JSONL).

    Returns:
        The units.

    Raises:
        HarnessError: The files are missing or lack per-row units (scored by an older
            harness).
    """
    from harness.atomic import read_json
    from harness.errors import HarnessError
    from harness.jsonl import numbered_json_lines

    for f in (scores_file, rows_file):
        if not f.is_file():
            raise HarnessError(f"{f}: not found (a finished `score` stage writes it)")
    scores = read_json(scores_file)
    tracks = {n: t.get("track") for n, t in scores["tasks"].items()}
    try:
        with rows_file.open(encoding="utf-8") as fh:
            rows = [v for _, v in numbered_json_lines(fh, rows_file, HarnessError)]
        return shopbench_units(rows, scores, tracks)
    except (KeyError, ScoringError) as e:
        raise HarnessError(
            f"{rows_file}: rows without per-row units ({e}); score the run again with this harness"
        ) from e
