"""The ``score`` stage: ShopBench scores of the ``infer`` stage's predictions.

Reads the ``eval`` section (data, primary parser mode, track filter, sentence-model paths)
and ``infer.limit`` (infer scores only the first N rows), pairs ``predictions.jsonl`` with
the evaluation rows in data order, and scores them with both parsers. Writes
``scores_official.json``, ``scores_robust.json``, ``scores.json`` (the primary mode),
``rows_official.jsonl``, ``rows_robust.jsonl``, ``rows.jsonl`` (primary) and ``scores.png``
(per task, official vs robust). Metrics: ``<mode>/overall``, ``<mode>/track/<track>``,
``<mode>/task/<task>``, ``<mode>/parse_rate/<task type>``, and ``overall`` for the primary
mode.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.atomic import write_json, write_jsonl
from harness.core.artifacts import PREDICTIONS, SCORES
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
from harness.spec.schema import EvalConfig

MODES = ("official", "robust")
"""The parser modes every score stage scores with."""


class ScoreMetrics(StageMetrics):
    """The overall scores; per parser mode, the extra metrics ``<mode>/track/<track>``,
    ``<mode>/task/<task>`` and ``<mode>/parse_rate/<task type>`` (named by :meth:`name`, read
    by :meth:`per`)."""

    overall: float
    """The primary parser mode's overall score."""
    official_overall: float = Field(alias="official/overall")
    robust_overall: float = Field(alias="robust/overall")

    @staticmethod
    def name(mode: str, kind: str, key: str) -> str:
        """The metric of one track, task or task type (``kind``: ``track``, ``task`` or
        ``parse_rate``) under a parser mode."""
        return f"{mode}/{kind}/{key}"

    def per(self, kind: str) -> dict[str, float]:
        """Every metric of a kind, both modes, by metric name."""
        heads = tuple(self.name(m, kind, "") for m in MODES)
        return {k: v for k, v in self.items() if k.startswith(heads)}


class ScoreSummary(StageSummary):
    """The primary parser mode, the rows scored, and overall and per-track scores per mode."""

    parser: str
    rows: int
    overall: dict[str, float]
    tracks: dict[str, dict[str, float]]


class ScoreResult(StageResult):
    """What ``score`` reports."""

    metrics: ScoreMetrics
    summary: ScoreSummary


def _pair(ctx: StageContext, cfg: EvalConfig, limit: int | None) -> tuple[list[Any], list[str]]:
    from harness.shopbench.data import load_eval_data, load_prediction_rows
    from harness.shopbench.errors import ScoringError

    data = ctx.path(cfg.data)
    records = load_eval_data(data)
    if limit is not None:
        records = records[:limit]
    pred_path = PREDICTIONS.file(ctx.inputs["predictions"])
    if not pred_path.is_file():
        raise HarnessError(f"stage `score`: {pred_path} not found (infer output)")
    rows = load_prediction_rows(pred_path)
    if len(rows) != len(records):
        raise ScoringError(
            f"{pred_path}: {len(rows)} predictions but {data} has {len(records)} rows"
            + (f" (first {limit}, infer.limit)" if limit is not None else "")
        )
    predictions: list[str] = []
    for (where, row), rec in zip(rows, records, strict=True):
        raw = row.get("prediction")
        if not isinstance(raw, str):
            raise ScoringError(f"{where}: `prediction` must be a string")
        named = row.get("task_name")
        if named is not None and rec.task_name is not None and named != rec.task_name:
            raise ScoringError(
                f"{where}: prediction is for task {named!r} but the data row "
                f"({rec.source}) is {rec.task_name!r}: predictions are out of data order"
            )
        predictions.append(raw)
    if cfg.tracks is not None:
        keep = [i for i, r in enumerate(records) if r.track in cfg.tracks]
        if not keep:
            raise ScoringError(f"eval.tracks {cfg.tracks} selects no rows of {data}")
        records = [records[i] for i in keep]
        predictions = [predictions[i] for i in keep]
    return records, predictions


class ScoreSlice(SpecSlice):
    """What ``score`` reads: the eval section and how many rows infer answered."""

    eval: EvalConfig = read("eval")
    limit: int | None = read("infer.limit")


PLOT_IMPORTS = ("matplotlib.figure", "matplotlib.backends.backend_agg")
"""What drawing a score plot imports: a warm stage worker does it once."""


@stage(
    name="score",
    section="eval",
    inputs={"predictions": ("infer",)},
    outputs=(SCORES,),
    warm=("rouge_score.rouge_scorer", "sacrebleu.metrics", *PLOT_IMPORTS),
)
def run(ctx: StageContext, spec: ScoreSlice) -> ScoreResult:
    """Score the predictions with the official and the robust parser."""
    from harness.shopbench.evaluate import evaluate, plot_scores

    cfg = spec.eval
    records, predictions = _pair(ctx, cfg, spec.limit)
    results = {mode: evaluate(records, predictions, mode, cfg.sentence_models) for mode in MODES}
    metrics: dict[str, float] = {}
    for mode, result in results.items():
        write_json(SCORES.file(ctx.out, mode), result.scores, sort_keys=False)
        write_jsonl(SCORES.rows(ctx.out, mode), (r.to_json() for r in result.rows))
        metrics[f"{mode}/overall"] = result.scores["overall"]
        for track, score in result.scores["tracks"].items():
            metrics[ScoreMetrics.name(mode, "track", track)] = score
        for task, t in result.scores["tasks"].items():
            metrics[ScoreMetrics.name(mode, "task", task)] = t["score"]
        for task_type, rate in result.parse_rates.items():
            metrics[ScoreMetrics.name(mode, "parse_rate", task_type)] = rate
    primary = results[cfg.parser]
    write_json(SCORES.file(ctx.out), primary.scores, sort_keys=False)
    write_jsonl(SCORES.rows(ctx.out), (r.to_json() for r in primary.rows))
    plot_scores(results["official"], results["robust"], ctx.out / "scores.png")
    metrics["overall"] = primary.scores["overall"]
    return ScoreResult(
        metrics=ScoreMetrics.model_validate(metrics),
        tables={f"rows_{mode}": f"rows_{mode}.jsonl" for mode in results},
        images={"scores": "scores.png"},
        summary=ScoreSummary(
            parser=cfg.parser,
            rows=len(records),
            overall={mode: r.scores["overall"] for mode, r in results.items()},
            tracks={mode: r.scores["tracks"] for mode, r in results.items()},
        ),
    )
