"""Intervals in a sweep's results: each trial's bootstrap interval, its paired difference from
the ``baseline`` trial (the base spec with no parameter changed), and whether the best trial
is distinguishable from the runner-up.

Every interval and difference is of the ``score`` stage's overall score under the spec's
primary parser (``eval.parser``), computed from the per-row units the stage wrote (see
:mod:`harness.shopbench.uncertainty`); a sweep whose trials have no ``score`` stage gets
none. The baseline is a trial whose plan is the base spec's (then nothing runs), else the
base spec is run once (its stages are usually cached: only what the sweep varies differs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.sweeps.trial import TrialJob, TrialRecord, ledger_dir, plan_digest, trial_overrides

if TYPE_CHECKING:
    from harness.shopbench.units import Units

BASELINE = "baseline"


@dataclass
class SweepIntervals:
    """Intervals of a sweep's trials.

    Attributes:
        trials: Trial id -> ``{"overall_ci", "overall_stderr", "delta_vs_baseline",
            "delta_ci", "p_vs_baseline"}`` (the delta keys only with a baseline).
        baseline: Where the baseline came from (a trial id, or its run dir), or why there is
            none.
        baseline_overall: The baseline's overall score.
        vs_runner_up: The best trial against the runner-up: ``{"runner_up", "delta", "ci",
            "p_value", "distinguishable"}``; None without two scored trials.
    """

    trials: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline: str | None = None
    baseline_overall: float | None = None
    vs_runner_up: dict[str, Any] | None = None


def run_units(run_dir: str | Path | None) -> Units | None:
    """Units of a harness run's ``score`` stage under its primary parser, or None."""
    from harness.core.results import score_units

    if run_dir is None:
        return None
    try:
        run = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
        stage = run["stages"]["score"]
        mode = run["spec"]["eval"]["parser"]
        return score_units(Path(stage["dir"]), mode)
    except (OSError, ValueError, KeyError, TypeError, HarnessError):
        return None


def _baseline(job: TrialJob, records: list[TrialRecord]) -> tuple[str, Units | None]:
    """The baseline's origin and units: a trial with the base spec's plan, else a run of it."""
    from rich.console import Console

    from harness.core.executor import execute
    from harness.core.plan import build_plan
    from harness.spec.load import load_spec
    from harness.sweeps.config import override_for

    # The base spec under a name of its own (a name changes no stage key).
    name = override_for("name", f"{job.base_name}-{job.sweep_name}-{BASELINE}")
    spec = load_spec(job.spec_path, [*trial_overrides(job, {}, naming=False), name])
    plan = build_plan(spec, Path(job.project_root))
    if "score" not in {st.name for st in plan.stages}:
        return "no score stage", None
    digest = plan_digest(plan)
    for r in records:
        if r.ok and r.plan == digest:
            return r.trial, run_units(r.run_dir)
    log = ledger_dir(job.sweep_dir) / f"{BASELINE}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as f:
        summary = execute(plan, console=Console(file=f, width=120, force_terminal=False))
    return str(summary.run_dir), run_units(summary.run_dir)


def sweep_intervals(
    job: TrialJob, records: list[TrialRecord], best: TrialRecord | None, better: Any
) -> SweepIntervals:
    """Each trial's interval and paired difference from the baseline; best vs runner-up.

    Args:
        job: The sweep's trial job (to build the baseline).
        records: The trials.
        best: The best trial.
        better: ``(a, b) -> bool``: metric value a is better than b.

    Returns:
        The intervals (empty when the trials have no ``score`` stage).
    """
    from harness.shopbench.uncertainty import compare, intervals, json_safe

    out = SweepIntervals()
    units = {r.trial: u for r in records if r.ok for u in [run_units(r.run_dir)] if u is not None}
    if not units:
        return out
    try:
        out.baseline, base = _baseline(job, records)
    except Exception as e:  # the baseline is extra information: its failure is a note
        out.baseline, base = f"failed: {e}", None
    for trial, u in units.items():
        iv = json_safe(intervals(u))
        entry: dict[str, Any] = {
            "overall_ci": iv["overall"]["ci"],
            "overall_stderr": iv["overall"]["stderr"],
        }
        if base is not None:
            try:
                c = json_safe(compare(base, u))["overall"]
            except HarnessError:
                c = None
            if c is not None:
                out.baseline_overall = c["a"]
                entry.update(
                    delta_vs_baseline=c["delta"], delta_ci=c["ci"], p_vs_baseline=c["p_value"]
                )
        out.trials[trial] = entry
    ranked = [r for r in records if r.ok and r.metric is not None and r.trial in units]
    if best is not None and best.trial in units and len(ranked) > 1:
        others = [r for r in ranked if r.trial != best.trial]
        runner = others[0]
        for r in others[1:]:
            if better(r.metric, runner.metric):
                runner = r
        try:
            c = json_safe(compare(units[runner.trial], units[best.trial]))["overall"]
        except HarnessError:
            return out
        lo, hi = c["ci"]
        out.vs_runner_up = {
            "runner_up": runner.trial,
            "delta": c["delta"],
            "ci": c["ci"],
            "p_value": c["p_value"],
            "distinguishable": lo is not None and hi is not None and (lo > 0 or hi < 0),
        }
    return out


def best_line(best: TrialRecord, info: SweepIntervals) -> str:
    """One line on whether the best trial is distinguishable from the runner-up."""
    vs = info.vs_runner_up
    if vs is None:
        return f"best trial {best.trial[:8]}: no runner-up to compare with"
    lo, hi = vs["ci"]
    verdict = "distinguishable" if vs["distinguishable"] else "NOT distinguishable"
    ci = "-" if lo is None or hi is None else f"[{lo:+.4f}, {hi:+.4f}]"
    return (
        f"best trial {best.trial[:8]} is {verdict} from the runner-up "
        f"{vs['runner_up'][:8]}: overall delta {vs['delta']:+.4f}, 95% CI {ci}, "
        f"p {vs['p_value']:.4f} (paired over the same rows)"
    )
