"""Quantisation backends side by side: the report's comparison of quantize stages.

A run whose ``report.baselines`` quantise the same padded model another way (e.g.
``quantize.backend=autoawq`` beside this run's ``llmcompressor``) has several quantize stage
dirs: this run's ``quantize`` and each baseline's (``ctx.baselines[<name>]["quantize"]`` of
the report; a baseline sharing this run's stage is not repeated). Everything here is read
from their finished dirs (their manifests name the upstream model, by key): the typed stage
result (:class:`~harness.stages.quantize.QuantizeResult`: backend, format and the mean
absolute token log-prob difference from the unquantised model on the check sequences, greedy
agreement, size, quantisation time) and ``reconstruction.jsonl`` (the per-layer relative
error). Scores of the runs are in the report's baseline section. No heavy
imports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.core import artifacts
from harness.core.results import stage_result
from harness.stages.quantize import QuantizeResult

COLUMNS = (
    ("recon_error_mean", "recon. error mean"),
    ("recon_error_max", "recon. error max"),
    ("logprob_gap_mean", "mean abs Δ log-prob"),
    ("logprob_gap_p95", "p95 abs Δ log-prob"),
    ("agreement_sequence", "greedy agreement"),
    ("output_bytes", "output bytes"),
    ("size_ratio", "size ratio"),
    ("quantize_s", "quantise s"),
)
"""Stage metrics compared (fields of :class:`~harness.stages.quantize.QuantizeMetrics`, read as
attributes: a renamed one fails, it does not drop out), with their column titles."""


def quantize_dirs(mine: Path | None, baselines: dict[str, Path]) -> dict[str, Path]:
    """``this run``'s quantize stage dir and each baseline's that differs from it."""
    out = {"this run": mine} if mine is not None else {}
    for name, d in baselines.items():
        if d not in out.values():
            out[name] = d
    return out


def per_kind_errors(stage_dir: Path) -> dict[str, float]:
    """Mean relative reconstruction error per linear kind (``q_proj`` ... ``down_proj``)."""
    path = stage_dir / "reconstruction.jsonl"
    by_kind: dict[str, list[float]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                by_kind.setdefault(row["kind"], []).append(float(row["rel_error"]))
    return {k: sum(v) / len(v) for k, v in by_kind.items()}


def compare(dirs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Run name -> backend, format, the :data:`COLUMNS` metrics and per-kind errors."""
    out: dict[str, dict[str, Any]] = {}
    for name, d in dirs.items():
        result = stage_result(d, QuantizeResult)
        out[name] = {
            "backend": result.summary.backend,
            "format": result.summary.format,
            "stage_key": d.name,
            "model": artifacts.manifest(d).get("upstream_keys", {}).get("model"),
            **{k: getattr(result.metrics, k) for k, _ in COLUMNS},
            "per_kind_error": per_kind_errors(d),
        }
    return out


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4f}"
    return str(v)


def section(mine: Path | None, baselines: dict[str, Path], facts: dict[str, Any]) -> list[str]:
    """The report's "Quantisation backends" section: this run's quantize stage (``mine``)
    beside the baselines' (empty unless there are two or more); the table goes into
    ``facts["quantize_backends"]``."""
    dirs = quantize_dirs(mine, baselines)
    if len(dirs) < 2:
        return []
    table = compare(dirs)
    facts["quantize_backends"] = table
    lines = [
        "## Quantisation backends",
        "",
        "Rows with the same model (the upstream stage's key) quantise the same weights on the "
        "same calibration blocks. Δ log-prob: against the unquantised model on each quantize "
        "stage's check sequences (teacher-forced). Scores: see the baseline comparison.",
        "",
        "| run | model | backend | format | " + " | ".join(t for _, t in COLUMNS) + " |",
        "|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for name, row in table.items():
        cells = " | ".join(_cell(row[k]) for k, _ in COLUMNS)
        model = f"`{row['model']}`" if row["model"] else "-"
        lines.append(f"| {name} | {model} | {row['backend']} | {row['format']} | {cells} |")
    kinds = sorted({k for row in table.values() for k in row["per_kind_error"]})
    if kinds:
        lines += [
            "",
            "Mean relative reconstruction error per linear kind:",
            "",
            "| run | " + " | ".join(kinds) + " |",
            "|---|" + "---|" * len(kinds),
        ]
        for name, row in table.items():
            errs = row["per_kind_error"]
            lines.append(f"| {name} | " + " | ".join(_cell(errs.get(k)) for k in kinds) + " |")
    return [*lines, ""]
