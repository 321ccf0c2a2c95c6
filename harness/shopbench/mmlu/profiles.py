"""The same Shopping MMLU answers under every scorer the harness has, side by side.

Four profiles: the two official Shopping MMLU evaluators (``shopping-mmlu-skill``,
``shopping-mmlu-task``) and the KDD Cup starter kit's parsing and metrics, ``official`` and
``robust`` (:mod:`harness.shopbench.evaluate`). The Shopping MMLU profiles score the answers
to skill files or task files alike; the ShopBench profiles score skill-file rows, which carry
the KDD development schema (task name, type and metric per row), with each skill as a
track. A row the starter kit cannot score (a metric it does not know, a reference of the wrong
shape) is left out of the ShopBench profiles and counted in a warning.

The result of :func:`score_profiles` gives, per profile, the leaderboard columns (the four
skills and ``Overall``), the score of every skill and of every task, and the warnings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.shopbench.data import check_output_field
from harness.shopbench.errors import ScoringError, SentenceModelNotFoundError
from harness.shopbench.mmlu.data import Benchmark, TaskData
from harness.shopbench.mmlu.scoring import (
    PROFILES,
    SENTENCE_MODEL_FOR_METRIC,
    EmbedArg,
    leaderboard,
    score_benchmark,
    task_results,
)
from harness.shopbench.parsers import MODES
from harness.shopbench.types import METRIC_TASK_TYPE, Record

SHOPBENCH_PROFILES = MODES
ALL_PROFILES = (*PROFILES, *SHOPBENCH_PROFILES)


def skill_records(
    skill: TaskData, leave_out_metrics: Sequence[str] = ()
) -> tuple[list[tuple[int, Record]], list[str]]:
    """The rows of a skill file as ShopBench records (track = the skill's name).

    Args:
        skill: A ``skills/`` file.
        leave_out_metrics: Metrics whose rows are left out (e.g. an embedding model that is
            not available).

    Returns:
        ``(index, record)`` pairs of the scorable rows, and one warning per kind of row left
        out.
    """
    kept: list[tuple[int, Record]] = []
    left: dict[str, int] = {}
    for row in skill.rows:
        reason = None
        if row.metric in leave_out_metrics:
            reason = f"metric {row.metric!r} has no embedding model"
        elif row.metric not in METRIC_TASK_TYPE or METRIC_TASK_TYPE[row.metric] != row.task_type:
            reason = f"metric {row.metric!r} with task type {row.task_type!r} is not ShopBench's"
        else:
            reason = check_output_field(str(row.task_type), str(row.metric), row.target)
        if reason is not None:
            left[reason] = left.get(reason, 0) + 1
            continue
        kept.append(
            (
                row.index,
                Record(
                    input_field=row.input,
                    output_field=row.target,
                    task_name=row.task_name,
                    task_type=row.task_type,  # type: ignore[arg-type]
                    metric=row.metric,
                    is_multiple_choice=row.task_type == "multiple-choice",
                    track=skill.name,
                    source=f"{skill.source} line {row.line}",
                ),
            )
        )
    warns = [
        f"{skill.name}: {n} row(s) left out of the ShopBench profiles ({why})"
        for why, n in left.items()
    ]
    return kept, warns


def _shopbench(
    benchmark: Benchmark,
    predictions: Mapping[str, Sequence[str]],
    mode: str,
    sentence_models: Mapping[str, str] | None,
    leave_out_metrics: Sequence[str],
) -> dict[str, Any]:
    from harness.shopbench.evaluate import evaluate

    warns: list[str] = []
    tasks: dict[str, float] = {}
    skills: dict[str, float] = {}
    for skill in benchmark.skills:  # one skill at a time: a task may recur in several
        kept, w = skill_records(skill, leave_out_metrics)
        warns += w
        skills[skill.name] = math.nan
        answers = predictions.get(skill.name)
        if answers is None:
            warns.append(f"{skill.name}: no predictions")
            continue
        by_task: dict[str, list[tuple[int, Record]]] = {}
        for i, rec in kept:
            by_task.setdefault(str(rec.task_name), []).append((i, rec))
        scores: list[float] = []
        for name, rows in by_task.items():
            try:
                result = evaluate(
                    [r for _, r in rows], [answers[i] for i, _ in rows], mode, sentence_models
                )
                score = float(result.scores["tasks"][name]["score"])
            except ScoringError as e:  # where the starter kit itself would stop
                warns.append(f"{skill.name}/{name}: NaN, the starter kit cannot score it: {e}")
                score = math.nan
            tasks[name] = score
            scores.append(score)
        if scores:  # a track's score is the plain mean of its tasks, as the kit's
            skills[skill.name] = float(sum(scores) / len(scores))
    board, w = leaderboard(skills)
    return {"leaderboard": board, "skills": skills, "tasks": tasks, "warnings": warns + w}


def score_profiles(
    benchmark: Benchmark,
    predictions: Mapping[str, Sequence[str]],
    *,
    embed: EmbedArg = None,
    sentence_models: Mapping[str, str] | None = None,
    letter_choices: bool = False,
    leave_out_metrics: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Score the answers to a release's skill files, or to its task files, with every
    profile that applies.

    Args:
        benchmark: The evaluated files (skill files, or task files; see
            :func:`harness.shopbench.mmlu.select_files`).
        predictions: Raw outputs per file name, one per row in file order.
        embed: As for :func:`harness.shopbench.mmlu.score_benchmark`.
        sentence_models: Local paths of the sentence models, by name.
        letter_choices: Multiple choice answered with letters (task files).
        leave_out_metrics: ShopBench profiles: metrics whose rows are left out.

    Returns:
        Profile -> ``{"leaderboard", "skills", "tasks", "warnings"}`` (skills and tasks map
        names to scores), plus ``"detail"`` for the Shopping MMLU profiles: the full
        :func:`score_benchmark` result. The ShopBench profiles appear for skill files only.
    """
    files = "skills" if benchmark.skills else "tasks"
    out: dict[str, dict[str, Any]] = {}
    for profile in PROFILES:
        result = score_benchmark(
            benchmark,
            predictions,
            profile,
            embed=embed,
            sentence_models=sentence_models,
            letter_choices=letter_choices,
            files=files,
        )
        tasks = {t: d["score"] for t, d in task_results(result).items()}
        out[profile] = {
            "leaderboard": result["leaderboard"],
            "skills": {k: v["score"] for k, v in result["skills"].items()},
            "tasks": tasks,
            "warnings": result["warnings"],
            "detail": result,
        }
    if files == "skills":
        for mode in SHOPBENCH_PROFILES:
            out[mode] = _shopbench(benchmark, predictions, mode, sentence_models, leave_out_metrics)
    return out


class _Unavailable:
    """The "vector" of a text whose sentence model is missing: any arithmetic with it raises,
    so each of its rows is NaN with the reason (a stand-in of zeros or NaN would be clamped
    to 0 by the skill-wise evaluator and look like a real score)."""

    def __init__(self, model: str) -> None:
        self.model = model

    def __mul__(self, other: Any) -> Any:
        raise RuntimeError(f"sentence model {self.model!r} is not available offline")

    __rmul__ = __mul__


def unavailable_models(
    benchmark: Benchmark, sentence_models: Mapping[str, str] | None = None
) -> dict[str, SentenceModelNotFoundError]:
    """The embedding metrics the evaluated files use whose sentence model is not available
    offline, with the error that says so.

    Args:
        benchmark: The evaluated files.
        sentence_models: Configured local model paths (name -> directory).

    Returns:
        Metric -> the error of its model.
    """
    from harness.shopbench.metrics import resolve_sentence_model

    missing: dict[str, SentenceModelNotFoundError] = {}
    for metric, model in embedding_metrics(benchmark).items():
        try:
            resolve_sentence_model(model, sentence_models)
        except SentenceModelNotFoundError as e:
            missing[metric] = e
    return missing


def nan_embedders(missing: Mapping[str, SentenceModelNotFoundError]) -> dict[str, Any]:
    """Embedding functions (by model name) that make the rows of missing models NaN."""
    return {
        SENTENCE_MODEL_FOR_METRIC[m]: lambda texts, model=SENTENCE_MODEL_FOR_METRIC[m]: [
            _Unavailable(model) for _ in texts
        ]
        for m in missing
    }


def embedding_metrics(benchmark: Benchmark) -> dict[str, str]:
    """The embedding metrics the evaluated files use, with their sentence model."""
    used: dict[str, str] = {}
    for f in benchmark:
        metrics = {r.metric for r in f.rows} if f.is_skill else {f.metric}
        for m in metrics:
            if m in SENTENCE_MODEL_FOR_METRIC:
                used[str(m)] = SENTENCE_MODEL_FOR_METRIC[str(m)]
    return used
