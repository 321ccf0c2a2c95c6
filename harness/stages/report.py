"""The ``report`` stage: one Markdown + JSON summary of a pipeline's outcome, and its page.

It sees every stage before it in the plan, and the score, Shopping MMLU score, infer and
quantize stages of each ``report.baselines`` variant (``ctx.baselines[name][stage]``), and
reads only their finished dirs: their results, typed as each stage declares them
(:func:`~harness.core.results.stage_result`), and their files. Scores per task and track (official and robust parsing),
parse rates, each with its bootstrap confidence interval (rows resampled within tasks); this
run against each baseline as paired differences (delta, interval, p-value; differences whose
interval excludes 0 in bold) with the smallest overall difference the eval set resolves; then
every upstream stage, in plan order, with its metrics, summary and images (inference
throughput against the competition time budget, the fine-tuning loss curve, quantisation
checks, padding, data statistics; a plugin stage gets its entry the same way). Images are
copied next to ``report.md`` so the report stands alone. When baselines quantise the same
model another way, a "Quantisation backends" section compares the quantize stages
(:mod:`harness.quant_report`).

``report.md`` holds the tables a reader needs (scores, the comparison, Shopping MMLU, one
line per stage); ``report.html`` beside it is the run's self-contained page
(:mod:`harness.explorer`): the same tables, each stage's metrics and summary, per-task
charts and the row explorer (every eval row's prompt, output, parsed answers, truth and
scores, and the baselines' answers to it).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from harness.atomic import read_json, write_bytes, write_json
from harness.core.artifacts import REPORT, SCORES
from harness.core.results import stage_result
from harness.core.stage import (
    SpecSlice,
    StageContext,
    StageMetrics,
    StageResult,
    StageSummary,
    read,
    stage,
)
from harness.quant_report import section as quantize_section
from harness.spec.schema import ReportConfig
from harness.stages.infer import InferResult
from harness.stages.mmlu_score import MMLUScores
from harness.stages.score import ScoreResult

HTML = "report.html"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _units(score_dir: Path, mode: str) -> Any:
    """The per-row units of a score stage dir under a parser mode, or None (files missing or
    written before scoring kept units)."""
    from harness.core.results import score_units
    from harness.errors import HarnessError

    try:
        return score_units(score_dir, mode)
    except HarnessError:
        return None


def _ci(ci: list[Any] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "-"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _scores_section(score_dir: Path) -> tuple[list[str], dict[str, Any]]:
    from harness.shopbench.uncertainty import intervals, json_safe

    modes = {}
    for mode in ("official", "robust"):
        p = SCORES.file(score_dir, mode)
        if p.is_file():
            modes[mode] = read_json(p)
    if not modes:
        return [], {}
    cis: dict[str, Any] = {}
    for mode in modes:
        units = _units(score_dir, mode)
        if units is not None:
            cis[mode] = json_safe(intervals(units))
    lines = ["## Scores", ""]
    first = next(iter(modes.values()))
    cols = list(modes)
    heads = [h for m in cols for h in ([m, f"{m} 95% CI"] if m in cis else [m])]

    def cells(m: str, value: Any, ci: Any) -> list[str]:
        return [_fmt(value), _ci(ci)] if m in cis else [_fmt(value)]

    lines += [
        "| | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(heads),
        "| **overall** | "
        + " | ".join(
            c
            for m in cols
            for c in cells(m, modes[m]["overall"], cis.get(m, {}).get("overall", {}).get("ci"))
        )
        + " |",
    ]
    for track in first["tracks"]:
        lines.append(
            f"| track `{track}` | "
            + " | ".join(
                c
                for m in cols
                for c in cells(
                    m,
                    modes[m]["tracks"].get(track),
                    cis.get(m, {}).get("groups", {}).get(track, {}).get("ci"),
                )
            )
            + " |"
        )
    lines.append("")
    lines += ["| task | type | metric | n | " + " | ".join(heads) + " |"]
    lines += ["|---|---|---|---|" + "---|" * len(heads)]
    for task, t in first["tasks"].items():
        lines.append(
            f"| {task} | {t['task_type']} | {t['metric']} | {t['n']} | "
            + " | ".join(
                c
                for m in cols
                for c in cells(
                    m,
                    modes[m]["tasks"][task]["score"],
                    cis.get(m, {}).get("tasks", {}).get(task, {}).get("ci"),
                )
            )
            + " |"
        )
    if cis:
        any_ci = next(iter(cis.values()))
        lines += [
            "",
            f"Intervals: {any_ci['level']:.0%} stratified bootstrap ({any_ci['resamples']} "
            "resamples of the rows within each task).",
        ]
    facts: dict[str, Any] = {}
    for m, s in modes.items():
        facts[m] = {"overall": s["overall"], "tracks": s["tracks"]}
        if m in cis:
            ci = cis[m]
            facts[m].update(
                ci=ci["overall"]["ci"],
                stderr=ci["overall"]["stderr"],
                tracks_ci={
                    g: {"ci": e["ci"], "stderr": e["stderr"]} for g, e in ci["groups"].items()
                },
                tasks={
                    n: {"score": e["score"], "ci": e["ci"], "stderr": e["stderr"]}
                    for n, e in ci["tasks"].items()
                },
                uncertainty={k: ci[k] for k in ("resamples", "seed", "level", "method")},
            )
    return [*lines, ""], facts


def _parse_rates(score_dir: Path) -> dict[str, float]:
    return stage_result(score_dir, ScoreResult).metrics.per("parse_rate")


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
    m = stage_result(infer_dir, InferResult).metrics
    return {
        "tokens per answer": m.output_tokens / max(m.n_prompts, 1.0),
        "inference wall s": m.wall_s,
        "prompts per s": m.prompts_per_s,
    }


def _baseline_section(
    score_dir: Path,
    baselines: dict[str, Path],
    infer_dirs: dict[str, Path | None],
    facts: dict[str, Any],
    mode: str = "official",
) -> list[str]:
    """This run beside its baselines: overall and per-type scores, parse rates, tokens per
    answer and inference time, then the paired differences under the primary parser."""
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
    return [*lines, "", *_paired_section(score_dir, baselines, mode, facts)]


def _paired_section(
    score_dir: Path, baselines: dict[str, Path], mode: str, facts: dict[str, Any]
) -> list[str]:
    """This run against each baseline, paired on the rows: delta = this run - baseline."""
    from harness.errors import HarnessError
    from harness.shopbench.uncertainty import compare, json_safe, resolvable_difference

    this = _units(score_dir, mode)
    if this is None:
        return []
    lines = [
        f"### Paired differences (this run - baseline, `{mode}` parser)",
        "",
        "| baseline | scope | this run | baseline | delta | 95% CI | p |",
        "|---|---|---|---|---|---|---|",
    ]
    comparisons: dict[str, Any] = {}
    notes: list[str] = []
    for name, d in baselines.items():
        other = _units(d, mode)
        if other is None:
            notes.append(f"- `{name}`: no per-row scores to pair with.")
            continue
        try:
            c = json_safe(compare(other, this))
        except HarnessError as e:
            notes.append(f"- `{name}`: not paired ({e}).")
            continue
        comparisons[name] = c
        scopes = [("**overall**", c["overall"])]
        scopes += [(f"track `{t}`", e) for t, e in c["tracks"].items()]
        scopes += [(f"task {t}", e) for t, e in c["tasks"].items()]
        for label, e in scopes:
            lo, hi = e["ci"]
            sure = lo is not None and hi is not None and (lo > 0 or hi < 0)
            delta = f"{e['delta']:+.4f}"
            p = e["p_value"]
            lines.append(
                f"| {name} | {label} | {_fmt(e['b'])} | {_fmt(e['a'])} | "
                + (f"**{delta}**" if sure else delta)
                + f" | {_ci(e['ci'])} | {'-' if p is None else f'{p:.4f}'} |"
            )
    stderr = facts.get("scores", {}).get(mode, {}).get("stderr")
    lines += [""]
    lines += ["Bold: the interval excludes 0. p: paired sign-flip permutation test (two-sided)."]
    if stderr is not None:
        smallest = resolvable_difference(stderr)
        facts["resolvable_difference"] = smallest
        lines += [
            "",
            f"With this eval set, an overall difference below {smallest:.4f} cannot be told "
            "from noise (1.96 x sqrt(2) x the overall score's standard error, from the "
            "observed per-task variance); a paired comparison resolves less where the runs "
            "agree on rows.",
        ]
    facts["comparisons"] = {
        n: {
            "a": n,
            "b": "this run",
            "parser": mode,
            "overall": c["overall"],
            "tracks": c["tracks"],
            "tasks": c["tasks"],
            **{k: c[k] for k in ("resamples", "seed", "level", "method")},
        }
        for n, c in comparisons.items()
    }
    return [*lines, *(["", *notes] if notes else []), ""]


def _mmlu_section(mmlu_dir: Path, baselines: dict[str, Path], facts: dict[str, Any]) -> list[str]:
    """The leaderboard table of this run (and its baselines) under the primary profile, then
    this run's answers under every profile side by side."""
    summary = MMLUScores.read(mmlu_dir)
    primary = summary.primary
    columns = list(summary.profiles[primary].leaderboard)  # the four skills, Overall
    lines = ["## Shopping MMLU", "", f"Leaderboard columns, profile `{primary}` (x100):", ""]
    lines += ["| run | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    runs = {"this run": summary, **{n: MMLUScores.read(d) for n, d in baselines.items()}}
    boards: dict[str, Any] = {}
    shown_ci = False
    for name, scores in runs.items():
        boards[name] = scores.profiles[primary].leaderboard
        ci = scores.profiles[primary].intervals
        cells = []
        for c in columns:
            entry = None
            if ci is not None:
                entry = ci["overall"] if c == "Overall" else ci["skills"].get(c)
            cells.append(_pct(boards[name][c]) + (_pct_ci(entry["ci"]) if entry else ""))
            shown_ci = shown_ci or entry is not None
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if shown_ci:
        lines += ["", "In brackets: 95% bootstrap intervals (rows resampled within tasks)."]
    profiles = summary.profiles
    lines += ["", "The same answers under every scoring profile (x100):", ""]
    lines += ["| profile | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for profile, r in profiles.items():
        cells = [_pct(r.leaderboard[c]) for c in columns]
        lines.append(f"| `{profile}` | " + " | ".join(cells) + " |")
    lines += ["", "| skill | " + " | ".join(f"`{p}`" for p in profiles) + " |"]
    lines.append("|---|" + "---:|" * len(profiles))
    for skill in next(iter(profiles.values())).skills:
        cells = [_pct(r.skills.get(skill, float("nan"))) for r in profiles.values()]
        lines.append(f"| {skill} | " + " | ".join(cells) + " |")
    warns = profiles[primary].warnings
    if warns:
        lines += ["", f"{len(warns)} warning(s) under `{primary}`:", ""]
        lines += [f"- {w}" for w in warns[:20]]
    facts["shopping_mmlu"] = {
        "primary": primary,
        "leaderboard": boards,
        "intervals": {n: s.profiles[primary].intervals for n, s in runs.items()},
        "profiles": {p: r.leaderboard for p, r in profiles.items()},
    }
    return [*lines, ""]


def _pct_ci(ci: list[Any] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


def _pct(v: Any) -> str:
    return "nan" if v is None or v != v else f"{100 * float(v):.2f}"


def _write_page(ctx: StageContext, facts: dict[str, Any], parser: str | None) -> None:
    """``report.html``: the run's page with the row explorer (:mod:`harness.explorer`)."""
    from harness.explorer.collect import run_page

    run_json = ctx.run_dir / "run.json"
    score_dir = ctx.inputs.get("score")
    baselines = {
        name: (dirs["score"], dirs.get("infer"))
        for name, dirs in ctx.baselines.items()
        if "score" in dirs
    }
    html = run_page(
        root=ctx.root,
        run_json=read_json(run_json) if run_json.is_file() else None,
        upstream=ctx.upstream,
        score_dir=score_dir,
        infer_dir=ctx.upstream.get("infer") if score_dir is not None else None,
        baselines=baselines,
        facts=facts,
        parser=parser or "official",
    )
    write_bytes(REPORT.file(ctx.out, HTML), html.encode("utf-8"))


def _page_assets(slice_: dict[str, Any]) -> str:
    """The page's scripts and styles: their content is part of the key."""
    from harness.explorer.page import ASSETS

    return str(ASSETS)


def _baselines(ctx: StageContext, stage: str) -> dict[str, Path]:
    """Baseline name -> its ``stage`` dir, for the baselines that have that stage."""
    return {name: dirs[stage] for name, dirs in ctx.baselines.items() if stage in dirs}


class ReportMetrics(StageMetrics):
    """The run's overall score: ShopBench under the primary parser, else the Shopping MMLU
    leaderboard's ``Overall`` (none without either)."""

    overall: float | None = None


class ReportSummary(StageSummary):
    """The report's files."""

    report: str
    page: str


class ReportResult(StageResult):
    """What ``report`` reports."""

    metrics: ReportMetrics = ReportMetrics()
    summary: ReportSummary


class ReportSlice(SpecSlice):
    """What ``report`` reads: the primary parser and profile, and its own section (the
    baselines it compares)."""

    parser: str | None = read("eval.parser")
    profile: str | None = read("shopping_mmlu.profile")
    report: ReportConfig = read("report")


@stage(
    name="report",
    section=("eval", "shopping_mmlu"),
    optional_inputs={"score": ("score",), "mmlu": ("mmlu_score",)},
    upstream_all=True,
    derived_files={"page assets": _page_assets},
    outputs=(REPORT,),
    baselines=("score", "mmlu_score", "infer", "quantize"),
)
def run(ctx: StageContext, spec: ReportSlice) -> ReportResult:
    """Write report.md, report.json and report.html from the upstream stages."""
    lines = ["# Report", ""]
    facts: dict[str, Any] = {"stages": {}}
    images: dict[str, str] = {}
    score_facts: dict[str, Any] = {}
    if "score" in ctx.inputs:
        score_lines, score_facts = _scores_section(ctx.inputs["score"])
        lines += score_lines
        facts["scores"] = score_facts
        baselines = _baselines(ctx, "score")
        if baselines:
            infer_dirs = {
                "this run": ctx.upstream.get("infer"),
                **{n: ctx.baselines[n].get("infer") for n in baselines},
            }
            lines += _baseline_section(
                ctx.inputs["score"], baselines, infer_dirs, facts, spec.parser
            )
    if "mmlu" in ctx.inputs:
        lines += _mmlu_section(ctx.inputs["mmlu"], _baselines(ctx, "mmlu_score"), facts)
    quantize_baselines = _baselines(ctx, "quantize")
    lines += quantize_section(ctx.upstream.get("quantize"), quantize_baselines, facts)
    stage_rows: list[str] = []
    image_lines: list[str] = []
    for name, d in ctx.upstream.items():  # this run's stages (the baselines' are above)
        result = stage_result(d)
        facts["stages"][name] = {
            "key": d.name,
            "metrics": result.metrics.to_dict(),
            "summary": result.summary.to_dict(),
        }
        stage_rows.append(f"| {name} | `{d.name}` | {len(result.metrics)} |")
        for img_name, rel in result.images.items():
            src = d / rel
            if src.is_file():
                dst = f"{name}_{img_name}.png"
                shutil.copyfile(src, ctx.out / dst)
                images[f"{name}_{img_name}"] = dst
                image_lines += [f"![{name} {img_name}]({dst})", ""]
    if stage_rows:
        # Each stage's metrics and summary are on the page (report.html), not here.
        lines += ["## Stages", "", f"Metrics and summaries of every stage: [{HTML}]({HTML}).", ""]
        lines += ["| stage | key | metrics |", "|---|---|---|", *stage_rows, ""]
    lines += image_lines
    REPORT.file(ctx.out).write_text("\n".join(lines), encoding="utf-8")
    write_json(REPORT.file(ctx.out, "report.json"), facts)
    _write_page(ctx, facts, spec.parser)
    metrics = ReportMetrics()
    primary = score_facts.get(spec.parser)
    if primary:
        metrics = ReportMetrics(overall=float(primary["overall"]))
    elif "shopping_mmlu" in facts:
        board = facts["shopping_mmlu"]["leaderboard"]["this run"]
        metrics = ReportMetrics(overall=float(board["Overall"]))
    return ReportResult(
        metrics=metrics,
        images=images,
        summary=ReportSummary(report=REPORT.file(ctx.out).name, page=HTML),
    )
