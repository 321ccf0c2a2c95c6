"""Parse, score and aggregate: records + raw predictions -> per-row results and scores.

The scores dict (``scores.json``) is::

    {"parser": mode,
     "tasks": {task_name: {"task_type", "metric", "n", "score", "track"}},
     "tracks": {track: score, ..., "all-tracks": mean of the track scores},
     "overall": mean of the task scores}

Per task: the mean of its row scores (micro F1: F1 of the summed counts); a task whose rows
use different metrics (task17: ``bleu`` and one ``jp-bleu`` row) scores each row with its
own metric and reports ``"bleu+jp-bleu"``. Per track: the unweighted mean of its tasks.
``rows.jsonl`` holds one ``{"task_name", "parsed", "parse_ok", "score", "id"}`` object per
row, in data order (``id``: the row's line in the data file, else its 1-based position), with
``tp``, ``fp``, ``fn`` on micro F1 rows: the per-row units of :mod:`harness.shopbench.units`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import write_bytes, write_json, write_jsonl
from harness.shopbench import metrics
from harness.shopbench.errors import ScoringError, UnknownNameError
from harness.shopbench.parsers import ParsedValue, parse
from harness.shopbench.types import ALL_TRACKS, METRICS, TASK_TYPES, Record
from harness.shopbench.units import Units, shopbench_units

if TYPE_CHECKING:
    from harness.shopbench.embed_cache import EmbeddingCache


@dataclass(frozen=True)
class RowResult:
    """One scored row."""

    task_name: str
    parsed: ParsedValue
    parse_ok: bool
    score: float
    id: str = ""
    counts: metrics.Counts | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``rows.jsonl`` object."""
        out = {
            "task_name": self.task_name,
            "parsed": self.parsed,
            "parse_ok": self.parse_ok,
            "score": self.score,
            "id": self.id,
        }
        if self.counts is not None:
            out["tp"], out["fp"], out["fn"] = self.counts
        return out


@dataclass(frozen=True)
class EvalResult:
    """The outcome of :func:`evaluate`.

    Attributes:
        mode: Parser mode.
        rows: Per-row results in data order.
        scores: The ``scores.json`` dict.
        parse_rates: Task type -> share of rows whose parse is ok.
    """

    mode: str
    rows: list[RowResult]
    scores: dict[str, Any]
    parse_rates: dict[str, float]


def _where(record: Record, i: int) -> str:
    return record.source or f"row {i + 1}"


def row_id(record: Record, i: int) -> str:
    """A row's id for people: its line in the data file (``source`` is ``file:line``), else
    its 1-based position."""
    line = (record.source or "").rpartition(":")[2]
    return line if line.isdigit() else str(i + 1)


def _check(records: Sequence[Record], predictions: Sequence[str]) -> None:
    if len(records) != len(predictions):
        raise ScoringError(
            f"{len(predictions)} predictions for {len(records)} data rows: the predictions "
            "file must hold exactly one object per data row, in data order"
        )
    if not records:
        raise ScoringError("no rows to score")
    for i, r in enumerate(records):
        if not r.labelled:
            raise ScoringError(
                f"{_where(r, i)}: row has no answer/task_type/metric/task_name (hidden-test "
                "format?): cannot score it"
            )
        if r.task_type not in TASK_TYPES:
            raise UnknownNameError(f"{_where(r, i)}: unknown task type {r.task_type!r}")
        if r.metric not in METRICS:
            raise UnknownNameError(
                f"{_where(r, i)}: unknown metric {r.metric!r} (expected one of "
                f"{', '.join(METRICS)})"
            )
        if not isinstance(predictions[i], str):
            raise ScoringError(
                f"prediction {i + 1} must be a string, got {type(predictions[i]).__name__}"
            )


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return math.fsum(values) / len(values) if values else 0.0


def evaluate(
    records: Sequence[Record],
    predictions: Sequence[str],
    mode: str = "official",
    sentence_models: Mapping[str, str] | None = None,
    *,
    per_row_embeddings: bool = False,
    embedding_cache: EmbeddingCache | bool | None = True,
) -> EvalResult:
    """Parse and score predictions against labelled records.

    Args:
        records: Labelled rows (development format).
        predictions: Raw model outputs, one per record, same order.
        mode: Parser mode: ``official`` scores every parse as the kit does; ``robust``
            scores unparsed rows 0.
        sentence_models: Local paths of sentence-transformer models, by model name.
        per_row_embeddings: Encode one text per call like the official kit (for the
            benchmark); default: one batch per task.
        embedding_cache: The on-disk embedding cache: True, the configured one
            (``HARNESS_EMBEDDING_CACHE``); an ``EmbeddingCache``; False, none.

    Returns:
        The :class:`EvalResult`.

    Raises:
        ScoringError: Count mismatch, unlabelled rows, a task mixing tracks, or micro F1
            mixed with another metric in one task.
        UnknownNameError: Unknown task type, metric or parser mode.
        SentenceModelNotFoundError: An embedding model cannot be found offline.
    """
    _check(records, predictions)
    parsed = [
        parse(p, r.task_type or "", mode, prompt=r.input_field)
        for r, p in zip(records, predictions, strict=True)
    ]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        assert r.task_name is not None
        groups.setdefault(r.task_name, []).append(i)
    row_scores = [0.0] * len(records)
    row_counts: list[metrics.Counts | None] = [None] * len(records)
    tasks: dict[str, dict[str, Any]] = {}
    task_tracks: dict[str, str | None] = {}
    for name, idx in groups.items():
        first = records[idx[0]]
        for i in idx[1:]:
            if records[i].track != first.track:
                raise ScoringError(
                    f"{_where(records[i], i)}: task {name!r} mixes tracks "
                    f"({records[i].track!r} and {first.track!r})"
                )
        by_metric: dict[str, list[int]] = {}
        for i in idx:
            by_metric.setdefault(records[i].metric or "", []).append(i)
        if "micro f1" in by_metric and len(by_metric) > 1:
            raise ScoringError(
                f"{_where(first, idx[0])}: task {name!r} mixes 'micro f1' with other metrics "
                f"({', '.join(by_metric)}); micro F1 needs a task of its own"
            )
        task_score = None
        for metric, sub in by_metric.items():
            result = metrics.score_task(
                metric,
                [parsed[i].value for i in sub],
                [records[i].output_field for i in sub],
                None if mode == "official" else [parsed[i].ok for i in sub],
                sentence_models=sentence_models,
                per_row_embeddings=per_row_embeddings,
                embedding_cache=embedding_cache,
            )
            for i, s in zip(sub, result.rows, strict=True):
                row_scores[i] = float(s)
            if metric == "micro f1":
                task_score = result.score
                for i, c in zip(sub, result.counts or [], strict=True):
                    row_counts[i] = c
        if task_score is None:
            # Rows of one task may use different metrics (task17: bleu and jp-bleu); the
            # task's score is the mean over its rows, as in the official kit.
            task_score = _mean(row_scores[i] for i in idx)
        tasks[name] = {
            "task_type": "+".join(dict.fromkeys(records[i].task_type or "" for i in idx)),
            "metric": "+".join(by_metric),
            "n": len(idx),
            "score": float(task_score),
            "track": first.track,
        }
        task_tracks[name] = first.track
    tracks: dict[str, float] = {}
    for track in dict.fromkeys(t for t in task_tracks.values() if t is not None):
        tracks[track] = _mean(tasks[n]["score"] for n, t in task_tracks.items() if t == track)
    if tracks:
        tracks[ALL_TRACKS] = _mean(tracks.values())
    scores = {
        "parser": mode,
        "tasks": tasks,
        "tracks": tracks,
        "overall": _mean(t["score"] for t in tasks.values()),
    }
    rows = [
        RowResult(r.task_name or "", p.value, p.ok, row_scores[i], row_id(r, i), row_counts[i])
        for i, (r, p) in enumerate(zip(records, parsed, strict=True))
    ]
    by_type: dict[str, list[bool]] = {}
    for r, p in zip(records, parsed, strict=True):
        by_type.setdefault(r.task_type or "", []).append(p.ok)
    parse_rates = {t: sum(oks) / len(oks) for t, oks in by_type.items()}
    return EvalResult(mode, rows, scores, parse_rates)


def units_of(result: EvalResult) -> Units:
    """The per-row scoring units of an evaluation (see :mod:`harness.shopbench.units`)."""
    return shopbench_units(
        (r.to_json() for r in result.rows),
        result.scores,
        {n: t.get("track") for n, t in result.scores["tasks"].items()},
    )


# --------------------------------------------------------------------------- writing


def write_scores(
    result: EvalResult,
    out_dir: str | Path,
    scores_name: str = "scores.json",
    rows_name: str = "rows.jsonl",
) -> tuple[Path, Path]:
    """Write ``scores.json`` and ``rows.jsonl`` into ``out_dir``, each atomically.

    Args:
        result: The evaluation.
        out_dir: Directory (created when missing).
        scores_name: File name of the scores.
        rows_name: File name of the rows.

    Returns:
        (scores path, rows path).
    """
    out = Path(out_dir)
    scores = write_json(out / scores_name, result.scores, sort_keys=False, allow_nan=False)
    rows = out / rows_name
    write_jsonl(rows, (r.to_json() for r in result.rows), allow_nan=False)
    return scores, rows


def _scores_of(x: EvalResult | Mapping[str, Any]) -> Mapping[str, Any]:
    return x.scores if isinstance(x, EvalResult) else x


def plot_scores(
    official: EvalResult | Mapping[str, Any],
    robust: EvalResult | Mapping[str, Any],
    path: str | Path,
) -> Path:
    """A per-task bar chart, official and robust side by side, written as PNG atomically.

    Args:
        official: Official-mode result (or its scores dict).
        robust: Robust-mode result (or its scores dict).
        path: Destination PNG.

    Returns:
        The path.
    """
    from io import BytesIO

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    a, b = _scores_of(official), _scores_of(robust)
    names = list(dict.fromkeys([*a["tasks"], *b["tasks"]]))
    va = [a["tasks"].get(n, {}).get("score", 0.0) for n in names]
    vb = [b["tasks"].get(n, {}).get("score", 0.0) for n in names]
    fig = Figure(figsize=(max(6.0, 0.55 * len(names) + 2), 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.4
    xs = range(len(names))
    ax.bar([x - width / 2 for x in xs], va, width, label=f"official ({a['overall']:.3f})")
    ax.bar([x + width / 2 for x in xs], vb, width, label=f"robust ({b['overall']:.3f})")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("score")
    ax.set_ylim(0, max(1.0, *va, *vb) * 1.05)
    ax.set_title("ShopBench per-task scores: official vs robust parsing (overall in legend)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes(Path(path), buf.getvalue())
