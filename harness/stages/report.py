"""The ``report`` stage: one Markdown + JSON summary of a pipeline's outcome.

It reads only its upstream stage dirs (their manifests' results and files): scores per task
and track (official and robust parsing), parse rates, inference throughput against the
competition time budget, the fine-tuning loss curve, quantisation checks, padding, and data
statistics. Images are copied next to ``report.md`` so the report stands alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from harness.stages.base import StageContext, StageResult, stage

SECTIONS = ("synthesize", "mix", "finetune", "pad", "quantize", "infer", "score")


def _manifest_result(stage_dir: Path) -> dict[str, Any]:
    m = json.loads((stage_dir / "manifest.json").read_text(encoding="utf-8"))
    return m["result"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _metrics_table(metrics: dict[str, float], title: str) -> list[str]:
    if not metrics:
        return []
    lines = [f"### {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(metrics.items())]
    return [*lines, ""]


def _scores_section(score_dir: Path) -> tuple[list[str], dict[str, Any]]:
    modes = {}
    for mode in ("official", "robust"):
        p = score_dir / f"scores_{mode}.json"
        if p.is_file():
            modes[mode] = json.loads(p.read_text(encoding="utf-8"))
    if not modes:
        return [], {}
    lines = ["## Scores", ""]
    first = next(iter(modes.values()))
    cols = list(modes)
    lines += [
        "| | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
        "| **overall** | " + " | ".join(_fmt(modes[m]["overall"]) for m in cols) + " |",
    ]
    for track in first["tracks"]:
        lines.append(
            f"| track `{track}` | "
            + " | ".join(_fmt(modes[m]["tracks"].get(track)) for m in cols)
            + " |"
        )
    lines.append("")
    lines += ["| task | type | metric | n | " + " | ".join(cols) + " |"]
    lines += ["|---|---|---|---|" + "---|" * len(cols)]
    for task, t in first["tasks"].items():
        lines.append(
            f"| {task} | {t['task_type']} | {t['metric']} | {t['n']} | "
            + " | ".join(_fmt(modes[m]["tasks"][task]["score"]) for m in cols)
            + " |"
        )
    return [*lines, ""], {
        m: {"overall": s["overall"], "tracks": s["tracks"]} for m, s in modes.items()
    }


def _parse_rates(score_dir: Path) -> dict[str, float]:
    metrics = _manifest_result(score_dir)["metrics"]
    return {k: v for k, v in metrics.items() if "parse_rate" in k}


def _baseline_section(
    score_dir: Path, baselines: dict[str, Path], facts: dict[str, Any]
) -> list[str]:
    runs = {"this run": score_dir, **baselines}
    scores = {}
    for name, d in runs.items():
        p = d / "scores.json"
        scores[name] = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
    rates = {name: _parse_rates(d) for name, d in runs.items()}
    keys = sorted({k for r in rates.values() for k in r})
    names = list(runs)
    lines = ["## Comparison with baselines", ""]
    lines += ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append(
        "| overall score | "
        + " | ".join(_fmt(scores[n]["overall"]) if scores[n] else "-" for n in names)
        + " |"
    )
    lines += [
        f"| {k} | " + " | ".join(_fmt(rates[n].get(k, "-")) for n in names) + " |" for k in keys
    ]
    facts["baselines"] = {
        n: {"overall": scores[n]["overall"] if scores[n] else None, "parse_rates": rates[n]}
        for n in names
    }
    return [*lines, ""]


@stage(
    name="report",
    version="1",
    env="core",
    reads=("eval.parser", "report"),
    inputs={"score": ("score",)},
    optional_inputs={name: (name,) for name in SECTIONS if name != "score"},
)
def run(ctx: StageContext) -> StageResult:
    """Write report.md and report.json from the upstream stages."""
    lines = ["# Report", ""]
    facts: dict[str, Any] = {"stages": {}}
    images: dict[str, str] = {}
    score_lines, score_facts = _scores_section(ctx.inputs["score"])
    lines += score_lines
    facts["scores"] = score_facts
    baselines = {r.split(":", 1)[1]: d for r, d in ctx.inputs.items() if r.startswith("baseline:")}
    if baselines:
        lines += _baseline_section(ctx.inputs["score"], baselines, facts)
    for name in SECTIONS:
        d = ctx.inputs.get(name)
        if d is None:
            continue
        result = _manifest_result(d)
        facts["stages"][name] = {
            "key": d.name,
            "metrics": result["metrics"],
            "summary": result["summary"],
        }
        lines += _metrics_table(result["metrics"], f"{name} ({d.name})")
        summary = result["summary"]
        if summary:
            lines += [
                "<details><summary>summary</summary>",
                "",
                "```json",
                json.dumps(summary, indent=2, default=str)[:4000],
                "```",
                "</details>",
                "",
            ]
        for img_name, rel in result["images"].items():
            src = d / rel
            if src.is_file():
                dst = f"{name}_{img_name}.png"
                shutil.copyfile(src, ctx.out / dst)
                images[f"{name}_{img_name}"] = dst
                lines += [f"![{name} {img_name}]({dst})", ""]
    (ctx.out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    (ctx.out / "report.json").write_text(json.dumps(facts, indent=2, default=str), encoding="utf-8")
    metrics = {}
    primary = score_facts.get(ctx.value("eval.parser"))
    if primary:
        metrics["overall"] = float(primary["overall"])
    return StageResult(metrics=metrics, images=images, summary={"report": "report.md"})
