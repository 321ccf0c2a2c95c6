"""From a finished run's stage dirs to its page: the glue of the report stage.

Reads what the upstream stages wrote (their manifests, the score files, the infer stage's
prompts and outputs, the eval data the score stage read) and hands plain values to
:func:`~harness.explorer.run_page.build_run_page`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.atomic import read_json
from harness.core import artifacts
from harness.core.artifacts import SCORES
from harness.core.results import stage_result
from harness.explorer.rows import MODES, ExplorerRow, load_rows
from harness.explorer.run_page import build_run_page
from harness.stages.infer import InferResult


def header(run_json: dict[str, Any] | None, upstream: dict[str, Path]) -> dict[str, Any]:
    """The page header: spec, platform, engine, model, each stage's key and time, the digests
    of the data files the stages read.

    Args:
        run_json: The run manifest (``run.json``) of the run that writes the report, or None.
        upstream: Stage name -> finished stage dir (the report's upstream).
    """
    run_json = run_json or {}
    spec = run_json.get("spec") or {}
    out: dict[str, Any] = {
        "spec": spec.get("name"),
        "description": spec.get("description"),
        "platform": run_json.get("platform"),
        "started": run_json.get("started"),
        "stages": [],
        "data": [],
    }
    model = spec.get("model")
    if isinstance(model, dict):
        shown = {
            k: v for k, v in model.items() if k in ("source", "name", "path", "revision") and v
        }
        out["model"] = ", ".join(f"{k}: {v}" for k, v in shown.items()) or None
    seen: set[tuple[str, str]] = set()
    for name, d in upstream.items():
        m = artifacts.manifest(d)
        out["stages"].append(
            {
                "name": name,
                "key": m.get("key", d.name),
                "wall_s": m.get("wall_s"),
                "env": m.get("env"),
            }
        )
        if name == "infer":
            out["engine"] = stage_result(d, InferResult).summary.engine
        slice_ = m.get("slice") or {}
        for label, digest in (m.get("files") or {}).items():
            if not isinstance(digest, str) or (label, digest) in seen:
                continue
            seen.add((label, digest))
            out["data"].append({"name": label, "path": _path_of(slice_, label), "sha256": digest})
    return out


def _path_of(slice_: dict[str, Any], dotted: str) -> str | None:
    """The value at a dotted path of a stage's slice (its keys are dotted prefixes)."""
    for head, value in slice_.items():
        if dotted == head:
            return value if isinstance(value, str) else None
        if dotted.startswith(head + "."):
            for part in dotted[len(head) + 1 :].split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value if isinstance(value, str) else None
    return None


def _with_intervals(scores: dict[str, Any], extra: Any) -> dict[str, Any]:
    """A score file with what the report's facts add per task (``ci``, ``stderr``, ...)
    and at the top level (``overall_ci``, ...), the score file's values kept."""
    if not isinstance(extra, dict):
        return scores
    out = {**{k: v for k, v in extra.items() if k not in ("tasks", "tracks")}, **scores}
    tasks = extra.get("tasks")
    if isinstance(tasks, dict):
        out["tasks"] = {
            t: {**tasks[t], **v} if isinstance(tasks.get(t), dict) else v
            for t, v in scores.get("tasks", {}).items()
        }
    return out


def explorer_rows(
    root: Path,
    score_dir: Path,
    infer_dir: Path | None,
    baselines: dict[str, tuple[Path, Path | None]],
) -> list[ExplorerRow]:
    """The rows of a run from its score and infer dirs and the eval data its score stage
    read (``eval.data``, ``eval.tracks`` and ``infer.limit`` from the score manifest)."""
    from harness.public_data.cache import resolve_path
    from harness.shopbench.data import load_eval_data

    slice_ = artifacts.manifest(score_dir).get("slice") or {}
    ev = slice_.get("eval") or {}
    records = load_eval_data(resolve_path(ev["data"], root))
    return load_rows(
        records,
        score_dir,
        infer_dir,
        baselines,
        limit=slice_.get("infer.limit"),
        tracks=ev.get("tracks"),
    )


def run_page(
    *,
    root: Path,
    run_json: dict[str, Any] | None,
    upstream: dict[str, Path],
    score_dir: Path | None,
    infer_dir: Path | None,
    baselines: dict[str, tuple[Path, Path | None]],
    facts: dict[str, Any],
    parser: str,
) -> str:
    """The run's ``report.html``.

    Args:
        root: The project root (the eval data path resolves against it).
        run_json: The run manifest, for the header (None: no spec name or platform).
        upstream: Stage name -> finished dir, for the header.
        score_dir: The score stage dir (None: no scores, no rows).
        infer_dir: The infer stage dir (None: rows without prompts and outputs).
        baselines: Baseline name -> ``(score dir, infer dir or None)``.
        facts: The report's ``report.json`` content.
        parser: ``eval.parser``.
    """
    head = header(run_json, upstream)
    scores: dict[str, Any] = {}
    rows: list[ExplorerRow] = []
    if score_dir is not None:
        for mode in MODES:
            p = SCORES.file(score_dir, mode)
            if p.is_file():
                scores[mode] = _with_intervals(read_json(p), (facts.get("scores") or {}).get(mode))
        rows = explorer_rows(root, score_dir, infer_dir, baselines)
    title = head.get("spec") or "run"
    return build_run_page(
        title=str(title),
        header=head,
        scores=scores,
        facts=json.loads(json.dumps(facts, default=str)),
        rows=rows,
        parser=parser,
        baselines=list(baselines),
    )
