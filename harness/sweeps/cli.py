"""``harness sweep SWEEP.yaml``: run a W&B sweep file over its base spec.

Online (WANDB_API_KEY set, tracking online or auto) it is a real W&B sweep whose agents run
the trials through the harness; offline the same file runs through Ray Tune's search
machinery with trials as Ray tasks. Finished trials are skipped on a rerun. See
:mod:`harness.sweeps`.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from harness.sweeps.config import Sweep, SweepError, load_sweep
from harness.sweeps.executors import EXECUTORS, SweepRun, run_sweep
from harness.sweeps.uncertainty import best_line

__all__ = ["Sweep", "SweepError", "SweepRun", "add_arguments", "load_sweep", "main", "run_sweep"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``harness sweep``."""
    parser.add_argument("sweep", help="sweep YAML (a W&B sweep config plus `spec:`)")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once (default 2)")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="auto",
        help="auto: a W&B sweep when online, else Ray; local: one trial at a time, no Ray",
    )


def _interval_cells(entry: dict | None) -> list[str]:
    """The interval and the paired difference from the baseline of one trial."""
    from harness.shopbench.score_cli import fmt_ci

    if entry is None:
        return ["", ""]
    delta = ""
    if "delta_vs_baseline" in entry:
        delta = (
            f"{entry['delta_vs_baseline']:+.4f} {fmt_ci(entry['delta_ci'], signed=True)} "
            f"p={entry['p_vs_baseline']:.3f}"
        )
    return [fmt_ci(entry["overall_ci"]), delta]


def main(args: argparse.Namespace) -> int:
    """Run the sweep; print its trials and where the results are.

    Returns:
        0 when at least one trial succeeded, 1 when every trial failed.
    """
    console = Console(stderr=True)
    out = Console()
    sweep = load_sweep(args.sweep)
    run = run_sweep(sweep, executor=args.executor, concurrency=args.concurrency, console=console)
    ci = run.intervals.trials if run.intervals else {}
    table = Table(title=f"sweep {sweep.name} ({run.executor})")
    extra = ("overall 95% CI", "vs baseline") if ci else ()
    for col in ("trial", "status", *sweep.keys, sweep.metric.name, *extra, "ran"):
        table.add_column(col)
    for r in run.records:
        status = "finished earlier" if r.skipped else r.status
        metric = "" if r.metric is None else f"{r.metric:.4g}"
        star = " *" if run.best is not None and r.trial == run.best.trial else ""
        cells = _interval_cells(ci.get(r.trial)) if ci else []
        table.add_row(
            r.trial[:8] + star,
            status,
            *(str(r.params.get(k)) for k in sweep.keys),
            metric,
            *cells,
            ", ".join(r.ran),
        )
    out.print(table)
    if ci and run.intervals is not None:
        out.print(f"baseline: {run.intervals.baseline}")
        if run.best is not None:
            out.print(best_line(run.best, run.intervals))
    c = run.counts
    out.print(f"trials: {c['ran']} ran, {c['skipped']} finished earlier, {c['failed']} failed")
    for name, path in run.files.items():
        out.print(f"{name}: {path}")
    if run.wandb_dir:
        out.print(f"W&B run: {run.wandb_dir}")
    return 0 if any(r.ok for r in run.records) else 1
