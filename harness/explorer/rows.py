"""The explorer's rows: one per scored evaluation row, joined from a run's stage files.

A row joins the eval data (task, type, track, truth), the infer stage's ``requests.jsonl``
(the prompt: its chat turns) and ``predictions.jsonl`` (the raw output), and the score stage's
``rows_<mode>.jsonl`` (the parsed answer, whether it parsed, the row's metric value) under
each parser mode; then the same row of each baseline (its output and scores).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.artifacts import PREDICTIONS, SCORES
from harness.errors import HarnessError
from harness.jsonl import numbered_json_lines

MODES = ("official", "robust")


@dataclass
class Scored:
    """One row's output and its scoring under each parser mode (this run's or a baseline's).

    Attributes:
        output: The raw model output (None when the infer stage is not at hand).
        parsed: Mode -> the parsed answer.
        parse_ok: Mode -> whether the answer parsed.
        score: Mode -> the row's metric value.
    """

    output: str | None
    parsed: dict[str, Any] = field(default_factory=dict)
    parse_ok: dict[str, bool] = field(default_factory=dict)
    score: dict[str, float] = field(default_factory=dict)


@dataclass
class ExplorerRow:
    """One evaluation row as the explorer shows it.

    Attributes:
        index: The row's position among the scored rows.
        task: Task name.
        type: Task type.
        track: KDD Cup track ("" when unknown).
        messages: The chat turns the model was sent (``{"role", "content"}``); when unknown,
            one ``user`` turn with the prompt text.
        truth: The reference answer.
        run: This run's output and scores.
        baselines: Baseline name -> its output and scores on the same row.
    """

    index: int
    task: str
    type: str
    track: str
    messages: list[dict[str, str]]
    truth: Any
    run: Scored
    baselines: dict[str, Scored] = field(default_factory=dict)


def _jsonl(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [v for _, v in numbered_json_lines(f, path, HarnessError)]


def scored(score_dir: Path, infer_dir: Path | None, keep: Sequence[int] | None) -> list[Scored]:
    """The scored rows of a score stage dir, with the raw outputs of its infer dir.

    Args:
        score_dir: The score stage dir (``rows_<mode>.jsonl``).
        infer_dir: Its infer stage dir (``predictions.jsonl``), or None.
        keep: The indices of the predictions that were scored (``eval.tracks``), or None for
            all of them.

    Returns:
        One :class:`Scored` per scored row, in data order.
    """
    modes = {
        m: _jsonl(SCORES.rows(score_dir, m)) for m in MODES if SCORES.rows(score_dir, m).is_file()
    }
    n = len(next(iter(modes.values()))) if modes else 0
    outputs: list[str | None] = [None] * n
    if infer_dir is not None and PREDICTIONS.file(infer_dir).is_file():
        preds = [p.get("prediction") for p in _jsonl(PREDICTIONS.file(infer_dir))]
        if keep is not None:
            preds = [preds[i] for i in keep if i < len(preds)]
        if len(preds) == n:
            outputs = preds
    out = []
    for i in range(n):
        s = Scored(outputs[i])
        for mode, rows in modes.items():
            s.parsed[mode] = rows[i].get("parsed")
            s.parse_ok[mode] = bool(rows[i].get("parse_ok"))
            s.score[mode] = rows[i].get("score")
        out.append(s)
    return out


def prompts(infer_dir: Path | None) -> list[list[dict[str, str]]]:
    """Each row's chat turns from ``requests.jsonl`` (the prompt text as one user turn when
    the turns were not recorded); empty without an infer dir."""
    path = PREDICTIONS.file(infer_dir, "requests.jsonl") if infer_dir is not None else None
    if path is None or not path.is_file():
        return []
    turns = []
    for r in _jsonl(path):
        msgs = r.get("messages")
        if isinstance(msgs, list) and msgs:
            turns.append(
                [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in msgs]
            )
        else:
            turns.append([{"role": "user", "content": str(r.get("prompt", ""))}])
    return turns


def load_rows(
    records: Sequence[Any],
    score_dir: Path,
    infer_dir: Path | None,
    baselines: dict[str, tuple[Path, Path | None]] | None = None,
    *,
    limit: int | None = None,
    tracks: Sequence[str] | None = None,
) -> list[ExplorerRow]:
    """Join a run's eval data and stage files into explorer rows.

    Args:
        records: The eval data (:class:`~harness.shopbench.types.Record`), all of it.
        score_dir: This run's score stage dir.
        infer_dir: This run's infer stage dir (None: no prompts or outputs).
        baselines: Baseline name -> ``(score dir, infer dir or None)``.
        limit: ``infer.limit``: the first rows were inferred.
        tracks: ``eval.tracks``: the tracks that were scored (None: all).

    Returns:
        The rows in data order; a baseline whose row count differs is left out.
    """
    inferred = list(records[:limit] if limit is not None else records)
    keep = [i for i, r in enumerate(inferred) if tracks is None or r.track in tracks]
    sel = None if tracks is None else keep
    mine = scored(score_dir, infer_dir, sel)
    turns = prompts(infer_dir)
    others = {name: scored(sdir, idir, sel) for name, (sdir, idir) in (baselines or {}).items()}
    if len(mine) != len(keep):
        raise HarnessError(
            f"{SCORES.rows(score_dir)}: {len(mine)} scored rows but the eval data has "
            f"{len(keep)} rows to score"
        )
    rows = []
    for j, i in enumerate(keep):
        rec = inferred[i]
        msgs = turns[i] if i < len(turns) else [{"role": "user", "content": rec.input_field}]
        rows.append(
            ExplorerRow(
                index=j,
                task=rec.task_name or "",
                type=rec.task_type or "",
                track=rec.track or "",
                messages=msgs,
                truth=rec.output_field,
                run=mine[j],
                baselines={n: s[j] for n, s in others.items() if len(s) == len(mine)},
            )
        )
    return rows


def show(value: Any) -> str:
    """A parsed answer or a truth as display text: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
