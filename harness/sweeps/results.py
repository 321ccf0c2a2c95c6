"""A sweep's results: the trial table, score against each parameter, the best trial's spec.

Written under ``<runs root>/sweeps/<name>/``: ``results.jsonl`` (one row per trial: its
parameters, the sweep metric, the primary stage's scores, e.g. every track and task score of
the ``score`` stage), ``score_vs_params.png``, ``best_spec.yaml`` (the best trial's resolved
spec, runnable with ``harness run``), ``best.json`` and ``index.html`` (the sweep's page: the
trials table, the metric against each parameter drawn in the page, links to each trial's
``report.html``; :mod:`harness.explorer`); then logged to a W&B run of its own (offline
without a key) as a table, an image and an artifact. With a ``score`` stage, each row also has
the trial's bootstrap interval (``overall_ci``, ``overall_stderr``) and its paired difference
from the ``baseline`` trial (``delta_vs_baseline``, ``delta_ci``, ``p_vs_baseline``), and
``best.json`` says whether the best trial is distinguishable from the runner-up
(:mod:`harness.sweeps.uncertainty`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from harness.secrets import redact
from harness.spec.load import line_of, suggest
from harness.sweeps.config import Sweep, SweepError
from harness.sweeps.trial import TrialJob, TrialRecord, trial_spec
from harness.tracking import wandb_mode

if TYPE_CHECKING:
    from harness.sweeps.executors import SweepRun

RESULTS = "results.jsonl"
PLOT = "score_vs_params.png"
BEST_SPEC = "best_spec.yaml"
BEST = "best.json"
PAGE = "index.html"


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def generation_columns(rec: TrialRecord) -> dict[str, float | None]:
    """Trial-table columns from the trial's ``infer`` metrics, typed
    (:class:`~harness.stages.infer.InferMetrics`): generation apart from the engine's start (a
    shared engine's start is paid by one trial); None without an ``infer`` stage."""
    from harness.core.results import metrics_of
    from harness.stages.infer import InferMetrics

    infer = metrics_of(rec.metrics, "infer", InferMetrics)
    if infer is None:
        return dict.fromkeys(("generation_s", "engine_start_s", "engine_shared"))
    return {
        "generation_s": round(infer.wall_s, 3),
        "engine_start_s": round(infer.engine_start_s, 3),
        "engine_shared": round(infer.engine_shared, 3),
    }


def result_row(
    sweep: Sweep, rec: TrialRecord, intervals: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One table row: trial, status, each parameter, the metric (and its interval and paired
    difference from the baseline, when given), the primary stage's scores."""
    row: dict[str, Any] = {"trial": rec.trial, "status": rec.status}
    row.update(rec.params)
    row[sweep.metric.name] = rec.metric
    row.update(intervals or {})
    stage = rec.primary_stage or "score"
    row.update({f"{stage}/{k}": v for k, v in sorted(rec.scores.items())})
    row["ran"] = ",".join(rec.ran)
    row["skipped"] = rec.skipped
    row["wall_s"] = round(rec.wall_s, 3)
    row.update(generation_columns(rec))
    row["node"] = rec.node
    row["error"] = rec.error
    return row


def best_trial(sweep: Sweep, records: list[TrialRecord]) -> TrialRecord | None:
    """The succeeded trial with the best metric (the earliest among equals)."""
    best = None
    for r in records:
        if (
            r.ok
            and r.metric is not None
            and (
                best is None or sweep.metric.better(r.metric, best.metric)  # type: ignore[arg-type]
            )
        ):
            best = r
    return best


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def plot_scores(sweep: Sweep, records: list[TrialRecord], path: Path) -> Path:
    """One panel per swept parameter: the metric of each succeeded trial against its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.ok and r.metric is not None]
    best = best_trial(sweep, records)
    keys = sweep.keys
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        values = [r.params.get(key) for r in ok]
        if values and all(_is_number(v) for v in values):
            xs = [float(v) for v in values]
            labels = None
        else:
            labels = list(
                dict.fromkeys(json.dumps(v) if not isinstance(v, str) else v for v in values)
            )
            xs = [labels.index(json.dumps(v) if not isinstance(v, str) else v) for v in values]
        ax.scatter(xs, [r.metric for r in ok], alpha=0.8)
        if best is not None and best in ok:
            i = ok.index(best)
            ax.scatter([xs[i]], [best.metric], marker="*", s=220, color="tab:red", label="best")
            ax.legend(loc="best", fontsize=8)
        if labels is not None:
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_xlabel(key, fontsize=9)
        ax.set_ylabel(sweep.metric.name)
        ax.grid(alpha=0.3)
    fig.suptitle(f"sweep {sweep.name}: {sweep.metric.name} ({sweep.metric.goal}) per parameter")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def trial_pages(records: list[TrialRecord], page_dir: Path) -> dict[str, str]:
    """Trial id -> its ``report.html`` relative to ``page_dir`` (trials with a page)."""
    links = {}
    for r in records:
        run_json = Path(r.run_dir) / "run.json" if r.run_dir else None
        if run_json is None or not run_json.is_file():
            continue
        report = (json.loads(run_json.read_text(encoding="utf-8")).get("stages") or {}).get(
            "report"
        )
        page = Path(report["dir"]) / "report.html" if report else None
        if page is not None and page.is_file():
            links[r.trial] = Path(os.path.relpath(page.resolve(), page_dir.resolve())).as_posix()
    return links


def write_page(
    sweep: Sweep, records: list[TrialRecord], rows: list[dict[str, Any]], path: Path
) -> Path:
    """The sweep's page (``index.html``)."""
    from harness.explorer import build_sweep_page

    best = best_trial(sweep, records)
    html = build_sweep_page(
        name=sweep.name,
        metric=sweep.metric.name,
        goal=sweep.metric.goal,
        params=sweep.keys,
        rows=rows,
        links=trial_pages(records, path.parent),
        best=best.trial if best is not None else None,
    )
    _atomic_text(path, html)
    return path


def write_best_spec(sweep: Sweep, job: TrialJob, best: TrialRecord, path: Path) -> Path:
    """The best trial's resolved spec as YAML (named ``<base name>-best``)."""
    loaded = trial_spec(job, best.params, naming=False)
    resolved = redact(dict(loaded.resolved))
    resolved["name"] = f"{sweep.base.spec.name}-best"
    head = (
        f"# Best trial {best.trial} of sweep `{sweep.name}` ({sweep.path}):\n"
        f"# {sweep.metric.name} = {best.metric}\n"
        + "".join(f"#   {k} = {json.dumps(v)}\n" for k, v in best.params.items())
    )
    _atomic_text(path, head + OmegaConf.to_yaml(OmegaConf.create(resolved)))
    return path


def log_to_wandb(run: SweepRun, rows: list[dict[str, Any]]) -> Path | None:
    """Log the table, the plot, the best trial and its spec to a W&B run of the sweep."""
    sweep = run.sweep
    mode = wandb_mode(sweep.base.spec.tracking.mode)
    if mode == "disabled":
        return None
    import wandb

    wb = wandb.init(
        project=sweep.project,
        entity=sweep.entity,
        mode=mode,  # type: ignore[arg-type]
        name=f"sweep-{sweep.name}",
        group=f"sweep-{sweep.name}",
        job_type="sweep",
        tags=[*sweep.base.spec.tracking.tags, f"sweep:{sweep.name}"],
        dir=str(run.dir),
        config=redact(
            {"sweep": sweep.wandb_config(), "spec": str(sweep.spec_path), "executor": run.executor}
        ),
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off"),
    )
    cols = list(dict.fromkeys(k for r in rows for k in r))
    # A swept value may be a number in one trial and a string or null in another.
    table = wandb.Table(columns=cols, allow_mixed_types=True)
    for r in rows:
        table.add_data(*[_cell(r.get(c)) for c in cols])
    summary: dict[str, Any] = dict(run.counts)
    if run.best is not None:
        summary["best/trial"] = run.best.trial
        summary[f"best/{sweep.metric.name}"] = run.best.metric
        summary.update({f"best/{k}": v for k, v in run.best.params.items()})
        ci = run.intervals.trials.get(run.best.trial) if run.intervals else None
        if ci is not None:
            summary["best/overall_ci_low"], summary["best/overall_ci_high"] = ci["overall_ci"]
            summary["best/overall_stderr"] = ci["overall_stderr"]
        vs = run.intervals.vs_runner_up if run.intervals else None
        if vs is not None:
            summary["best/delta_vs_runner_up"] = vs["delta"]
            summary["best/delta_ci_low"], summary["best/delta_ci_high"] = vs["ci"]
            summary["best/p_vs_runner_up"] = vs["p_value"]
            summary["best/distinguishable"] = vs["distinguishable"]
    data: dict[str, Any] = {"trials": table, **summary}
    if "plot" in run.files:
        data["score_vs_params"] = wandb.Image(str(run.files["plot"]))
    wb.log(data)
    wb.summary.update(summary)
    if "best_spec" in run.files:
        art = wandb.Artifact(f"sweep-{sweep.name}-best-spec", type="spec")
        art.add_file(str(run.files["best_spec"]))
        wb.log_artifact(art)
    d = Path(wb.dir).parent
    wb.finish()
    # An offline run that logged an artifact is flushed only when the W&B service stops;
    # stop it so the run's file is complete when this returns.
    wandb.teardown()
    return d


def _cell(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)


def write_results(run: SweepRun, job: TrialJob) -> SweepRun:
    """Write and log a sweep's results into ``run.dir``; fill ``run.files`` and ``run.best``.

    Raises:
        SweepError: Trials succeeded but none reported the sweep metric (the message names
            the metrics they did report).
    """
    from harness.sweeps.uncertainty import sweep_intervals

    sweep = run.sweep
    run.best = best_trial(sweep, run.records)
    run.intervals = sweep_intervals(job, run.records, run.best, sweep.metric.better)
    rows = [result_row(sweep, r, run.intervals.trials.get(r.trial)) for r in run.records]
    results = run.dir / RESULTS
    _atomic_text(results, "".join(json.dumps(r, default=str) + "\n" for r in rows))
    run.files["results"] = results
    run.files["page"] = write_page(sweep, run.records, rows, run.dir / PAGE)
    ok = [r for r in run.records if r.ok]
    if ok and run.best is not None:
        run.files["plot"] = plot_scores(sweep, run.records, run.dir / PLOT)
        run.files["best_spec"] = write_best_spec(sweep, job, run.best, run.dir / BEST_SPEC)
        best = run.dir / BEST
        facts = run.best.to_json()
        if run.intervals.trials:
            facts["intervals"] = run.intervals.trials.get(run.best.trial)
            facts["vs_runner_up"] = run.intervals.vs_runner_up
            facts["baseline"] = run.intervals.baseline
        _atomic_text(best, json.dumps(facts, indent=2, default=str))
        run.files["best"] = best
    run.wandb_dir = log_to_wandb(run, rows)
    if ok and run.best is None:
        names = sorted({*ok[0].scores, *ok[0].metrics})
        where = line_of([sweep.path.resolve()], ("metric", "name")) or str(sweep.path)
        raise SweepError(
            [
                f"{where}: no trial reported metric `{sweep.metric.name}`"
                + suggest(sweep.metric.name, names)
                + f"; the trials reported: {', '.join(names)}"
            ],
            str(sweep.path),
        )
    return run
