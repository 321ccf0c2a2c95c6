"""The ``mmlu_score`` stage: Shopping MMLU scores of the ``mmlu_infer`` answers, under every
profile.

Pairs ``mmlu_predictions.jsonl`` with the evaluated files (file by file, row by row: a
prediction for another file or row is an error naming its line) and scores them with the two
official Shopping MMLU evaluators and, for skill files, the ShopBench ``official`` and
``robust`` parsers (:mod:`harness.shopbench.mmlu.profiles`). Writes ``mmlu_scores.json``
(per profile: the leaderboard columns, skill and task scores, warnings; ``primary`` names
``shopping_mmlu.profile``), ``mmlu_<profile>.json`` (the full result of each Shopping MMLU
profile, rows included; its bootstrap intervals go into ``mmlu_scores.json`` as
``intervals``: tasks, leaderboard columns and overall) and ``mmlu_skills.png`` (per skill, the profiles side by side).
Metrics: ``<profile>/overall``, ``<profile>/skill/<column>``, ``overall`` (the primary
profile); NaN where the official code gives no number.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.atomic import read_json, write_json
from harness.core.artifacts import MMLU_PREDICTIONS, MMLU_SCORES
from harness.core.stage import (
    SpecSlice,
    StageContext,
    StageMetrics,
    StageResult,
    StageSummary,
    read,
    stage,
)
from harness.errors import HarnessError
from harness.spec.schema import ShoppingMMLUConfig


class MMLUScoreMetrics(StageMetrics):
    """The primary profile's overall score; per profile, the extra metrics
    ``<profile>/overall`` and ``<profile>/skill/<column>``."""

    overall: float


class MMLUScoreSummary(StageSummary):
    """The evaluation mode, the primary profile, each profile's leaderboard columns
    (the skills, then ``Overall``) and how many warnings the profiles gave."""

    mode: str
    primary: str
    leaderboard: dict[str, dict[str, float]]
    warnings: int


class MMLUScoreResult(StageResult):
    """What ``mmlu_score`` reports."""

    metrics: MMLUScoreMetrics
    summary: MMLUScoreSummary


class MMLUProfileScores(BaseModel):
    """One profile's scores in ``mmlu_scores.json``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    leaderboard: dict[str, float]
    skills: dict[str, float | None]
    tasks: dict[str, float | None]
    warnings: list[str]
    intervals: dict[str, Any] | None = None
    """Bootstrap intervals (``tasks``, ``skills``, ``overall``: ``{"score", "ci",
    "stderr"}``); only for the official profiles, which keep rows."""


class MMLUScores(BaseModel):
    """``mmlu_scores.json``: every profile's scores, ``primary`` naming the spec's."""

    model_config = ConfigDict(extra="allow", frozen=True)

    mode: str
    primary: str
    profiles: dict[str, MMLUProfileScores]

    @classmethod
    def read(cls, stage_dir: Path) -> MMLUScores:
        """The scores of a finished ``mmlu_score`` stage dir."""
        return cls.model_validate(read_json(MMLU_SCORES.file(stage_dir)))


def _predictions(path: Path, release: Any) -> dict[str, list[str]]:
    """Predictions per file, checked against the release's files and rows."""
    from harness.shopbench.data import load_prediction_rows
    from harness.shopbench.errors import ScoringError

    if not path.is_file():
        raise HarnessError(f"stage `mmlu_score`: {path} not found (mmlu_infer output)")
    expected = [(f.name, r.index) for f in release for r in f.rows]
    rows = load_prediction_rows(path)
    if len(rows) != len(expected):
        raise ScoringError(f"{path}: {len(rows)} predictions for {len(expected)} questions")
    out: dict[str, list[str]] = {}
    for (where, row), (name, index) in zip(rows, expected, strict=True):
        if (row.get("file"), row.get("index")) != (name, index):
            raise ScoringError(
                f"{where}: prediction for {row.get('file')!r} row {row.get('index')!r}, "
                f"expected {name!r} row {index}: predictions are out of data order"
            )
        text = row.get("prediction")
        if not isinstance(text, str):
            raise ScoringError(f"{where}: `prediction` must be a string")
        out.setdefault(name, []).append(text)
    return out


def _embedders(release: Any, cfg: ShoppingMMLUConfig) -> tuple[dict[str, Any], list[str]]:
    """Stand-ins for the sentence models that are missing (``missing_sentence_model: nan``),
    and the metrics they cover."""
    from harness.shopbench.errors import SentenceModelNotFoundError
    from harness.shopbench.mmlu.profiles import nan_embedders, unavailable_models

    missing = unavailable_models(release, cfg.sentence_models)
    if missing and cfg.missing_sentence_model == "error":
        e = next(iter(missing.values()))
        raise SentenceModelNotFoundError(
            f"shopping_mmlu.sentence_models: {e} (or set "
            "shopping_mmlu.missing_sentence_model: nan for a smoke run)"
        )
    return nan_embedders(missing), list(missing)


def _plot(scores: dict[str, dict[str, Any]], path: Path) -> None:
    from io import BytesIO

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from harness.atomic import write_bytes

    profiles = list(scores)
    skills = list(next(iter(scores.values()))["skills"])
    fig = Figure(figsize=(max(6.0, 1.6 * len(skills) + 2), 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(profiles))
    for k, profile in enumerate(profiles):
        values = [scores[profile]["skills"].get(s, math.nan) for s in skills]
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(skills))]
        ax.bar(xs, [0.0 if math.isnan(v) else v for v in values], width, label=profile)
    ax.set_xticks(range(len(skills)))
    ax.set_xticklabels(skills, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("score")
    ax.set_title("Shopping MMLU per skill (NaN drawn as 0)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png")
    write_bytes(path, buf.getvalue())


def _intervals(result: dict[str, Any]) -> dict[str, Any]:
    """Bootstrap intervals of a Shopping MMLU result's tasks, leaderboard columns (or skills)
    and overall score: ``{"tasks", "skills", "overall": {"score", "ci", "stderr"}, ...}``."""
    from harness.shopbench.mmlu.units import mmlu_units
    from harness.shopbench.uncertainty import intervals, json_safe

    ci = json_safe(intervals(mmlu_units(result)))
    ci["skills"] = ci.pop("groups")
    return ci


class MMLUScoreSlice(SpecSlice):
    """What ``mmlu_score`` reads."""

    shopping_mmlu: ShoppingMMLUConfig = read("shopping_mmlu")


@stage(
    name="mmlu_score",
    section="shopping_mmlu",
    inputs={"predictions": ("mmlu_infer",)},
    outputs=(MMLU_SCORES,),
    warm=("matplotlib.figure", "matplotlib.backends.backend_agg"),
)
def run(ctx: StageContext, spec: MMLUScoreSlice) -> MMLUScoreResult:
    """Score the Shopping MMLU answers with every profile."""
    from harness.shopbench.mmlu import evaluated_files
    from harness.shopbench.mmlu.profiles import score_profiles

    cfg = spec.shopping_mmlu
    release = evaluated_files(ctx.path(cfg.data), cfg.mode, cfg.files, cfg.limit_per_file)
    predictions = _predictions(MMLU_PREDICTIONS.file(ctx.inputs["predictions"]), release)
    stand_ins, missing = _embedders(release, cfg)
    results = score_profiles(
        release,
        predictions,
        embed=stand_ins or None,
        sentence_models=cfg.sentence_models,
        letter_choices=cfg.letter_choices,
        leave_out_metrics=missing,
    )
    note = [f"metric {m!r}: sentence model not available, its tasks score NaN" for m in missing]
    summary: dict[str, Any] = {"mode": cfg.mode, "primary": cfg.profile, "profiles": {}}
    metrics: dict[str, float] = {}
    for profile, r in results.items():
        detail = r.pop("detail", None)
        if detail is not None:
            write_json(MMLU_SCORES.file(ctx.out, f"mmlu_{profile}.json"), detail, sort_keys=False)
            r["intervals"] = _intervals(detail)
        r["warnings"] = note + r["warnings"]
        summary["profiles"][profile] = r
        metrics[f"{profile}/overall"] = float(r["leaderboard"]["Overall"])
        for column, v in r["leaderboard"].items():
            if column != "Overall":
                metrics[f"{profile}/skill/{column}"] = float(v)
    metrics["overall"] = metrics[f"{cfg.profile}/overall"]
    write_json(MMLU_SCORES.file(ctx.out), summary, sort_keys=False)
    _plot(summary["profiles"], ctx.out / "mmlu_skills.png")
    return MMLUScoreResult(
        metrics=MMLUScoreMetrics.model_validate(metrics),
        images={"mmlu_skills": "mmlu_skills.png"},
        summary=MMLUScoreSummary(
            mode=cfg.mode,
            primary=cfg.profile,
            leaderboard={p: r["leaderboard"] for p, r in summary["profiles"].items()},
            warnings=sum(len(r["warnings"]) for r in summary["profiles"].values()),
        ),
    )
