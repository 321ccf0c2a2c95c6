"""The ``report`` stage: one Markdown + JSON summary of a pipeline's outcome.

It sees every stage before it in the plan and reads only their finished dirs (their
manifests' results and files): scores per task and track (official and robust parsing),
parse rates, then one section per upstream stage, in plan order, with its metrics, summary
and images (inference throughput against the competition time budget, the fine-tuning loss
curve, quantisation checks, padding, data statistics; a plugin stage gets its section the
same way). Images are copied next to ``report.md`` so the report stands alone. When baselines
quantise the same model another way, a "Quantisation backends" section compares the quantize
stages (:mod:`harness.quant_report`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from harness import artifacts
from harness.artifacts import MMLU_SCORES, REPORT, SCORES
from harness.atomic import read_json, write_json
from harness.contract import BASELINE_INPUTS
from harness.quant_report import section as quantize_section
from harness.stages.base import StageContext, StageResult, stage

_PREFIX = {stage: f"{role}:" for role, stage in BASELINE_INPUTS.items()}
BASELINE, MMLU_BASELINE, INFER_BASELINE = _PREFIX["score"], _PREFIX["mmlu_score"], _PREFIX["infer"]
QUANTIZE_BASELINE = _PREFIX["quantize"]
_manifest_result = artifacts.result


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
        p = SCORES.file(score_dir, mode)
        if p.is_file():
            modes[mode] = read_json(p)
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


def _type_scores(scores: dict[str, Any]) -> dict[str, float]:
    """Mean task score per task type."""
    by_type: dict[str, list[float]] = {}
    for t in scores["tasks"].values():
        by_type.setdefault(t["task_type"], []).append(float(t["score"]))
    return {k: sum(v) / len(v) for k, v in sorted(by_type.items())}


def _infer_facts(infer_dir: Path | None) -> dict[str, float]:
    """Tokens per answer and inference time of an infer stage dir."""
    if infer_dir is None:
        return {}
    m = _manifest_result(infer_dir)["metrics"]
    n = max(m.get("n_prompts", 0.0), 1.0)
    return {
        "tokens per answer": m.get("output_tokens", 0.0) / n,
        "inference wall s": m.get("wall_s", 0.0),
        "prompts per s": m.get("prompts_per_s", 0.0),
    }


def _baseline_section(
    score_dir: Path,
    baselines: dict[str, Path],
    infer_dirs: dict[str, Path | None],
    facts: dict[str, Any],
) -> list[str]:
    """This run beside its baselines: overall and per-type scores, parse rates, tokens per
    answer and inference time."""
    runs = {"this run": score_dir, **baselines}
    scores = {}
    for name, d in runs.items():
        p = SCORES.file(d)
        scores[name] = read_json(p) if p.is_file() else None
    rates = {name: _parse_rates(d) for name, d in runs.items()}
    types = {n: _type_scores(s) if s else {} for n, s in scores.items()}
    infer = {n: _infer_facts(infer_dirs.get(n)) for n in runs}
    names = list(runs)

    def row(label: str, values: dict[str, Any]) -> str:
        return f"| {label} | " + " | ".join(_fmt(values.get(n, "-")) for n in names) + " |"

    lines = ["## Comparison with baselines", ""]
    lines += ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append(row("overall score", {n: s["overall"] for n, s in scores.items() if s}))
    for t in sorted({t for v in types.values() for t in v}):
        lines.append(row(f"score: {t}", {n: v[t] for n, v in types.items() if t in v}))
    for k in sorted({k for r in rates.values() for k in r}):
        lines.append(row(k, {n: r[k] for n, r in rates.items() if k in r}))
    for k in ("tokens per answer", "inference wall s", "prompts per s"):
        if any(k in v for v in infer.values()):
            lines.append(row(k, {n: v[k] for n, v in infer.items() if k in v}))
    facts["baselines"] = {
        n: {
            "overall": scores[n]["overall"] if scores[n] else None,
            "task_types": types[n],
            "parse_rates": rates[n],
            "inference": infer[n],
        }
        for n in names
    }
    return [*lines, ""]


def _mmlu_section(mmlu_dir: Path, baselines: dict[str, Path], facts: dict[str, Any]) -> list[str]:
    """The leaderboard table of this run (and its baselines) under the primary profile, then
    this run's answers under every profile side by side."""
    summary = read_json(MMLU_SCORES.file(mmlu_dir))
    primary = summary["primary"]
    columns = list(summary["profiles"][primary]["leaderboard"])  # the four skills, Overall
    lines = ["## Shopping MMLU", "", f"Leaderboard columns, profile `{primary}` (x100):", ""]
    lines += ["| run | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    runs = {
        "this run": summary,
        **{n: read_json(MMLU_SCORES.file(d)) for n, d in baselines.items()},
    }
    boards: dict[str, Any] = {}
    for name, scores in runs.items():
        boards[name] = scores["profiles"][primary]["leaderboard"]
        cells = [_pct(boards[name][c]) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    profiles = summary["profiles"]
    lines += ["", "The same answers under every scoring profile (x100):", ""]
    lines += ["| profile | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for profile, r in profiles.items():
        cells = [_pct(r["leaderboard"][c]) for c in columns]
        lines.append(f"| `{profile}` | " + " | ".join(cells) + " |")
    lines += ["", "| skill | " + " | ".join(f"`{p}`" for p in profiles) + " |"]
    lines.append("|---|" + "---:|" * len(profiles))
    for skill in next(iter(profiles.values()))["skills"]:
        cells = [_pct(r["skills"].get(skill, float("nan"))) for r in profiles.values()]
        lines.append(f"| {skill} | " + " | ".join(cells) + " |")
    warns = profiles[primary]["warnings"]
    if warns:
        lines += ["", f"{len(warns)} warning(s) under `{primary}`:", ""]
        lines += [f"- {w}" for w in warns[:20]]
    facts["shopping_mmlu"] = {
        "primary": primary,
        "leaderboard": boards,
        "profiles": {p: r["leaderboard"] for p, r in profiles.items()},
    }
    return [*lines, ""]


def _pct(v: Any) -> str:
    return "nan" if v is None or v != v else f"{100 * float(v):.2f}"


@stage(
    name="report",
    section=("eval", "shopping_mmlu"),
    reads=("eval.parser", "shopping_mmlu.profile", "report"),
    optional_inputs={"score": ("score",), "mmlu": ("mmlu_score",)},
    upstream_all=True,
    outputs=(REPORT,),
    code=("harness.quant_report",),
)
def run(ctx: StageContext) -> StageResult:
    """Write report.md and report.json from the upstream stages."""
    lines = ["# Report", ""]
    facts: dict[str, Any] = {"stages": {}}
    images: dict[str, str] = {}
    score_facts: dict[str, Any] = {}
    if "score" in ctx.inputs:
        score_lines, score_facts = _scores_section(ctx.inputs["score"])
        lines += score_lines
        facts["scores"] = score_facts
        baselines = {r[len(BASELINE) :]: d for r, d in ctx.inputs.items() if r.startswith(BASELINE)}
        if baselines:
            infer_dirs = {
                "this run": ctx.upstream.get("infer"),
                **{n: ctx.inputs.get(f"{INFER_BASELINE}{n}") for n in baselines},
            }
            lines += _baseline_section(ctx.inputs["score"], baselines, infer_dirs, facts)
    if "mmlu" in ctx.inputs:
        mmlu_baselines = {
            r[len(MMLU_BASELINE) :]: d for r, d in ctx.inputs.items() if r.startswith(MMLU_BASELINE)
        }
        lines += _mmlu_section(ctx.inputs["mmlu"], mmlu_baselines, facts)
    quantize_baselines = {
        r[len(QUANTIZE_BASELINE) :]: d
        for r, d in ctx.inputs.items()
        if r.startswith(QUANTIZE_BASELINE)
    }
    lines += quantize_section(ctx.upstream.get("quantize"), quantize_baselines, facts)
    for name, d in ctx.upstream.items():
        if "/" in name:  # a baseline's own stages: compared above
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
    REPORT.file(ctx.out).write_text("\n".join(lines), encoding="utf-8")
    write_json(REPORT.file(ctx.out, "report.json"), facts)
    metrics = {}
    primary = score_facts.get(ctx.value("eval.parser"))
    if primary:
        metrics["overall"] = float(primary["overall"])
    elif "shopping_mmlu" in facts:
        board = facts["shopping_mmlu"]["leaderboard"]["this run"]
        metrics["overall"] = float(board["Overall"])
    return StageResult(metrics=metrics, images=images, summary={"report": "report.md"})
