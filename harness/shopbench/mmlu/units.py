"""Per-row scoring units of Shopping MMLU results (see :mod:`harness.shopbench.units`).

A task's units follow its profile's aggregation: ``np.mean`` of the scored rows' values
(a weight column of 0 for rows of a metric the evaluator does not know), or the F1 of the
summed counts (NaN where the official code divides by zero). The similarity metrics'
values are float32 in the official code, and so is its mean: the units' point estimate
repeats that (:attr:`~harness.shopbench.units.TaskUnits.float32`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from harness.shopbench.mmlu.scoring import (
    LEADERBOARD_COLUMNS,
    SENTENCE_MODEL_FOR_METRIC,
    SKILL_PROFILE,
    skill_column,
    task_results,
)
from harness.shopbench.units import (
    MEAN,
    MICRO_F1_STRICT,
    TaskUnits,
    Units,
    row_f1,
    task_units,
)


def _mmlu_task(name: str, group: str | None, t: Mapping[str, Any], profile: str) -> TaskUnits:
    metric = str(t.get("metric") or "")
    stats: list[tuple[float, ...]] = []
    ids: list[str] = []
    values: list[float] = []
    for row in t.get("rows", []):
        ids.append(str(row.get("line", row.get("index"))))
        score = row.get("score")
        if metric == "micro f1":
            if "tp" in row:
                counts = (row["tp"], row["fp"], row["fn"])
                stats.append(counts)
                values.append(row_f1(*counts))
            else:  # an error or a row of another metric: the official code fails
                stats.append((math.nan, math.nan, math.nan))
                values.append(math.nan)
        elif "tp" in row:  # a micro F1 row in a mean task: np.mean of a tuple fails
            stats.append((math.nan, 1.0))
            values.append(math.nan)
        elif score is None:  # a metric the evaluator does not score: no value
            stats.append((0.0, 0.0))
            values.append(math.nan)
        else:
            stats.append((float(score), 1.0))
            values.append(float(score))
    agg = MICRO_F1_STRICT if metric == "micro f1" else MEAN
    task = task_units(name, group, metric, agg, stats, ids, values)
    finite = [v for v in values if math.isfinite(v)]
    if metric in SENTENCE_MODEL_FOR_METRIC and all(float(np.float32(v)) == v for v in finite):
        kind = "mean" if profile == SKILL_PROFILE else "running"
        task = replace(task, float32=kind)
    return task


def mmlu_units(result: Mapping[str, Any]) -> Units:
    """Units of a Shopping MMLU result (:func:`~harness.shopbench.mmlu.score_benchmark`,
    or ``harness score``'s result for one skill or task file).

    Tasks group into leaderboard columns where the result has a leaderboard (the overall
    score is then the mean of the columns, as ``Overall`` is), else into their skill.

    Args:
        result: The result, with ``rows`` in each task.

    Returns:
        The units.
    """
    tasks_json = task_results(result)
    skill_of: dict[str, str] = {}
    for skill, s in result.get("skills", {}).items():
        names = s.get("tasks", {})
        for name in names:
            skill_of[name] = skill
    board = "leaderboard" in result
    column_of: dict[str, str] = {}
    if board:  # as the leaderboard fills its columns: the first skill of a column wins
        for skill in result.get("skills", {}):
            column = skill_column(skill)
            if column is not None and column not in column_of.values():
                column_of[skill] = column
    tasks = {}
    for name, t in tasks_json.items():
        skill = skill_of.get(name)
        group = column_of.get(skill or "") if board else skill
        tasks[name] = _mmlu_task(name, group, t, str(result.get("profile")))
    overall = "groups" if skill_of or board else "tasks"
    required = LEADERBOARD_COLUMNS if board else ()
    return Units(tasks, overall=overall, all_groups=None, required_groups=required)
