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


def main(args: argparse.Namespace) -> int:
    """Run the sweep; print its trials and where the results are.

    Returns:
        0 when at least one trial succeeded, 1 when every trial failed.
    """
    console = Console(stderr=True)
    out = Console()
    sweep = load_sweep(args.sweep)
    run = run_sweep(sweep, executor=args.executor, concurrency=args.concurrency, console=console)
    table = Table(title=f"sweep {sweep.name} ({run.executor})")
    for col in ("trial", "status", *sweep.keys, sweep.metric.name, "ran"):
        table.add_column(col)
    for r in run.records:
        status = "finished earlier" if r.skipped else r.status
        metric = "" if r.metric is None else f"{r.metric:.4g}"
        star = " *" if run.best is not None and r.trial == run.best.trial else ""
        table.add_row(
            r.trial[:8] + star,
            status,
            *(str(r.params.get(k)) for k in sweep.keys),
            metric,
            ", ".join(r.ran),
        )
    out.print(table)
    c = run.counts
    out.print(f"trials: {c['ran']} ran, {c['skipped']} finished earlier, {c['failed']} failed")
    for name, path in run.files.items():
        out.print(f"{name}: {path}")
    if run.wandb_dir:
        out.print(f"W&B run: {run.wandb_dir}")
    return 0 if any(r.ok for r in run.records) else 1
