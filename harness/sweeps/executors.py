"""Running a sweep: W&B agents online, Ray tasks offline (or plain calls, ``local``).

Every executor runs :func:`harness.sweeps.trial.run_trial`. Offline, trials run as Ray
tasks on a local Ray (``cluster.num_cpus``, object store capped by
``cluster.object_store_memory_gib``, no dashboard) or on the cluster at ``cluster.address``,
at most ``concurrency`` at once. Online, a real W&B sweep is created (or continued: its id is
kept in the sweep dir) and ``concurrency`` agents, each a Ray task, run its trials.

Trials serving the same model share one engine: on one machine through one local engine pool
(:mod:`harness.inference.engine_pool`), on a cluster one per node, trials placed where the
engine for their model runs (:mod:`harness.sweeps.placement`).

A trial task is never retried by Ray: a trial whose worker crashes, is killed for memory or
whose node dies is recorded as failed (with the node Ray names) and the sweep goes on with
the others; running the sweep again retries it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.atomic import write_json
from harness.core.executor import stage_env
from harness.core.plan import Plan
from harness.core.worker_pool import POOL_ENV as WORKER_POOL_ENV
from harness.core.worker_pool import open_workers
from harness.errors import HarnessError
from harness.inference.engine_host import OWNER_ENV
from harness.inference.engine_pool import POOL_ENV, EnginePool, open_pool, sharing_enabled
from harness.secrets import _SECRET_NAME, SECRET_ENV
from harness.spec.schema import ClusterConfig
from harness.sweeps.config import Sweep, SweepError
from harness.sweeps.placement import EnginePlacement, run_placed_trial
from harness.sweeps.prestart import prestart_engines
from harness.sweeps.space import TrialSource, planned_trials
from harness.sweeps.trial import (
    TrialJob,
    TrialRecord,
    failed_record,
    finished_record,
    prepare,
    read_ledger,
    run_trial,
    trial_id,
    write_record,
)
from harness.sweeps.uncertainty import SweepIntervals
from harness.tracking import wandb_mode

EXECUTORS = ("auto", "wandb", "ray", "local")
FORWARDED_ENV = ("HARNESS_", "HF_", "TRANSFORMERS_", "VLLM_", "WANDB_", "TOKENIZERS_")
WANDB_STATE = "wandb_sweep.json"
RAY_START_ATTEMPTS = 3


@dataclass
class SweepRun:
    """What :func:`run_sweep` returns.

    Attributes:
        sweep: The sweep.
        dir: ``<runs root>/sweeps/<name>``.
        executor: Which executor ran it (``wandb``, ``ray`` or ``local``).
        records: One record per trial, in the sweep's order.
        files: Result name -> file (``results``, ``plot``, ``best_spec``, ``best``).
        best: The best trial, if any succeeded with the metric.
        wandb_dir: The W&B run that holds the sweep's table and plot.
        intervals: Each trial's interval and paired difference from the baseline trial,
            and the best trial against the runner-up (with a ``score`` stage).
        engines_started: Engine hosts the sweep's trials started (None: engines were not
            shared).
    """

    sweep: Sweep
    dir: Path
    executor: str
    records: list[TrialRecord] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    best: TrialRecord | None = None
    wandb_dir: Path | None = None
    intervals: SweepIntervals | None = None
    engines_started: int | None = None

    @property
    def counts(self) -> dict[str, int]:
        """How many trials ran, were skipped as finished, or failed."""
        return {
            "ran": sum(r.ok and not r.skipped for r in self.records),
            "skipped": sum(r.skipped for r in self.records),
            "failed": sum(not r.ok for r in self.records),
        }


def sweep_dir(sweep: Sweep, project_root: Path) -> Path:
    """``<runs root>/sweeps/<sweep name>``, the runs root being the one the base spec's plans
    use (``$HARNESS_RUNS_ROOT``, else ``run.root`` against the project root)."""
    from harness.core.plan import runs_root

    return runs_root(sweep.base, project_root) / "sweeps" / sweep.name


def choose_executor(sweep: Sweep, executor: str) -> str:
    """Resolve ``auto``: a W&B sweep when online, else Ray.

    Raises:
        SweepError: ``wandb`` was asked for without a key or with tracking off.
    """
    if executor not in EXECUTORS:
        raise SweepError([f"unknown executor `{executor}` (one of {', '.join(EXECUTORS)})"])
    online = wandb_mode(sweep.base.spec.tracking.mode) == "online"
    if executor == "auto":
        return "wandb" if online else "ray"
    if executor == "wandb" and not online:
        raise SweepError(
            [
                f"{sweep.path}: the `wandb` executor needs a W&B server: set WANDB_API_KEY and "
                "`tracking.mode` online or auto (offline sweeps run with `--executor ray`)"
            ]
        )
    return executor


def _forwarded_env() -> dict[str, str]:
    """Non-secret settings a remote cluster's workers need (secrets stay on the nodes; this
    machine's engine pool is no node's)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(FORWARDED_ENV)
        and k not in SECRET_ENV
        and k not in (POOL_ENV, OWNER_ENV, WORKER_POOL_ENV)
        and not _SECRET_NAME.search(k)
    }


def ray_init(cluster: ClusterConfig, concurrency: int) -> bool:
    """Start (or join) Ray unless it already runs here.

    Args:
        cluster: The spec's ``cluster`` section.
        concurrency: Trials at once (sizes a local Ray: no more CPUs than that).

    Returns:
        True when this call started the connection (the caller shuts it down).
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if cluster.address:
        ray.init(address=cluster.address, runtime_env={"env_vars": _forwarded_env()}, **common)
        return True
    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        try:
            ray.init(
                num_cpus=cluster.num_cpus or max(1, min(concurrency, os.cpu_count() or 1)),
                object_store_memory=int(cluster.object_store_memory_gib * 2**30),
                include_dashboard=False,
                **common,
            )
            return True
        except Exception as e:
            # Ray gives a local node a fixed 30 s to register; a loaded machine can miss it.
            if "timed out during startup" not in str(e) or attempt == RAY_START_ATTEMPTS:
                raise
            ray.shutdown()
    return True


# Ray's error when a trial's task ends without a record -> what happened, in words.
_LOST_WHY = {
    "NodeDiedError": "the Ray node running it died",
    "LocalRayletDiedError": "the Ray node running it died",
    "WorkerCrashedError": "the Ray worker running it died",
    "OutOfMemoryError": "Ray killed its worker for memory",
}


class TrialLost(HarnessError):
    """A trial's Ray task ended without a record: its worker or its node died.

    Attributes:
        node: The Ray node Ray's error names (None when it names none).
    """

    def __init__(self, error: BaseException) -> None:
        name = type(error).__name__
        why = _LOST_WHY.get(name, "its Ray task failed")
        first = next((x for x in str(error).splitlines() if x.strip()), "")
        found = re.search(r"node ID: ([0-9a-f]{16,})", str(error))
        self.node = found.group(1) if found else None
        super().__init__(
            f"trial lost: {why} ({name}: {first}); the sweep went on without it, "
            "and running the sweep again retries it"
        )


def _cpus_per_trial(concurrency: int) -> float:
    import ray

    return max(0.01, float(ray.cluster_resources().get("CPU", 1.0)) / concurrency)


Report = Callable[[TrialRecord, int], None]


def _drive(
    source: TrialSource,
    job: TrialJob,
    concurrency: int,
    submit: Callable[[dict[str, Any], Plan], Any],
    wait_one: Callable[[list[Any]], tuple[Any, TrialRecord | BaseException]],
    report: Report,
    prior: list[TrialRecord] = (),  # type: ignore[assignment]
) -> list[TrialRecord]:
    """Feed trials to a pool ``concurrency`` at a time; skip finished ones; record all.

    ``prior`` are finished trials an adaptive search already counted (reported as skipped).
    """
    records: list[TrialRecord] = []
    pending: dict[Any, tuple[int, dict[str, Any]]] = {}
    index = 0
    for rec in prior:
        rec.skipped, rec.index = True, index
        index += 1
        records.append(rec)
        report(rec, source.total)

    def finish(rec: TrialRecord, i: int, params: dict[str, Any]) -> None:
        rec.index = i
        records.append(rec)
        source.complete(params, rec.metric if rec.ok else None)
        report(rec, source.total)

    while True:
        while len(pending) < concurrency:
            params = source.next()
            if params is None:
                break
            i, index = index, index + 1
            try:
                plan = prepare(job, params)
                done = finished_record(job, params, plan)
            except Exception as e:  # an invalid trial spec fails that trial only
                rec = failed_record(job, params, e)
                write_record(job.sweep_dir, rec)
                finish(rec, i, params)
                continue
            if done is not None:
                finish(done, i, params)
                continue
            pending[submit(params, plan)] = (i, params)
        if not pending:
            break
        handle, result = wait_one(list(pending))
        i, params = pending.pop(handle)
        if isinstance(result, BaseException):  # the worker (or its node) itself died
            lost = result
            result = failed_record(job, params, lost)
            result.node = getattr(lost, "node", None)
            write_record(job.sweep_dir, result)
        finish(result, i, params)
    return sorted(records, key=lambda r: r.index)


def _source(sweep: Sweep, d: Path) -> tuple[TrialSource, list[TrialRecord]]:
    """The trial source, and for an adaptive search the finished trials it starts from."""
    if sweep.method != "bayes":
        return TrialSource(sweep), []
    digest = sweep.digest()
    prior = sorted(
        (
            r
            for r in read_ledger(d).values()
            if r.ok and r.sweep_digest == digest and r.metric is not None
        ),
        key=lambda r: r.finished or "",
    )
    return TrialSource(sweep, [(r.params, r.metric) for r in prior]), prior  # type: ignore[misc]


def run_local(sweep: Sweep, job: TrialJob, report: Report) -> list[TrialRecord]:
    """Run the trials one after another in this process."""
    source, prior = _source(sweep, Path(job.sweep_dir))
    done: dict[int, TrialRecord] = {}

    def submit(params: dict[str, Any], plan: Plan) -> int:
        done[len(done)] = run_trial(job, params)
        return len(done) - 1

    def wait_one(handles: list[int]) -> tuple[int, TrialRecord | BaseException]:
        return handles[0], done[handles[0]]

    return _drive(source, job, 1, submit, wait_one, report, prior)


def run_ray(
    sweep: Sweep, job: TrialJob, concurrency: int, report: Report, *, place: bool = False
) -> tuple[list[TrialRecord], list[int] | None]:
    """Run the trials as Ray tasks, at most ``concurrency`` at once.

    Args:
        sweep: The sweep.
        job: What its trials share.
        concurrency: Trials at once.
        report: Called with each trial's record.
        place: Place trials by the engine they need, one engine pool per node
            (:mod:`harness.sweeps.placement`; a sweep on a cluster).

    Returns:
        The records, and with ``place`` the pids of the engine hosts the trials started.
    """
    import ray

    source, prior = _source(sweep, Path(job.sweep_dir))
    started = ray_init(sweep.base.spec.cluster, concurrency)
    placement: EnginePlacement | None = None
    try:
        cpus = _cpus_per_trial(concurrency)
        task = ray.remote(num_cpus=cpus, max_retries=0)(run_trial)
        placed = ray.remote(num_cpus=cpus, max_retries=0)(run_placed_trial)
        placement = EnginePlacement(cpus) if place else None

        def submit(params: dict[str, Any], plan: Plan) -> Any:
            if placement is None:
                return task.remote(job, params)
            options, pool = placement.place(plan)
            return placed.options(**options).remote(job, params, pool)

        def wait_one(handles: list[Any]) -> tuple[Any, TrialRecord | BaseException]:
            ready, _ = ray.wait(handles, num_returns=1)
            try:
                return ready[0], ray.get(ready[0])
            except Exception as e:  # worker crash, OOM kill, node death
                return ready[0], TrialLost(e)

        records = _drive(source, job, concurrency, submit, wait_one, report, prior)
        return records, placement.close() if placement is not None else None
    finally:
        if placement is not None:
            placement.close()
        if started:
            ray.shutdown()


def run_agent(
    job: TrialJob, sweep_id: str, project: str, entity: str | None, count: int, keys: list[str]
) -> int:
    """A W&B agent whose function runs trials through :func:`run_trial`.

    Each W&B run records its trial's parameters, scores and every stage metric; the trial's
    own harness run keeps its disk records (its W&B logging is off: the agent's run is it).

    Returns:
        How many trials this agent ran.
    """
    import wandb

    n = 0

    def trial() -> None:
        nonlocal n
        run = wandb.init()
        try:
            params = {k: run.config[k] for k in keys}
            rec = run_trial(job, params)
            n += 1
            data: dict[str, Any] = {**rec.metrics, **rec.scores, "trial": rec.trial}
            if rec.metric is not None:
                data[job.metric] = rec.metric
            run.log(data)
            run.summary.update({"status": rec.status, "error": rec.error or ""})
        finally:
            run.finish(exit_code=0)

    wandb.agent(sweep_id, function=trial, project=project, entity=entity, count=count)
    return n


def run_wandb(sweep: Sweep, job: TrialJob, concurrency: int, console: Console) -> list[TrialRecord]:
    """Create (or continue) a W&B sweep and run ``concurrency`` agents as Ray tasks."""
    import ray
    import wandb

    d = Path(job.sweep_dir)
    state = d / WANDB_STATE
    digest = sweep.digest()
    sweep_id = None
    if state.is_file():
        saved = json.loads(state.read_text(encoding="utf-8"))
        if saved.get("digest") == digest:
            sweep_id = saved["id"]
    if sweep_id is None:
        sweep_id = wandb.sweep(sweep.wandb_config(), project=sweep.project, entity=sweep.entity)
        write_json(state, {"id": sweep_id, "digest": digest})
    console.print(f"W&B sweep {sweep_id} ({sweep.project})")
    total = len(planned_trials(sweep)) if sweep.method == "grid" else sweep.run_cap or 1
    per_agent = math.ceil(total / concurrency)
    agent_job = job.with_overrides("tracking.mode=disabled")
    started = ray_init(sweep.base.spec.cluster, concurrency)
    try:
        agent = ray.remote(num_cpus=_cpus_per_trial(concurrency), max_retries=0)(run_agent)
        ray.get(
            [
                agent.remote(
                    agent_job, sweep_id, sweep.project, sweep.entity, per_agent, sweep.keys
                )
                for _ in range(concurrency)
            ]
        )
    finally:
        if started:
            ray.shutdown()
    records = [r for r in read_ledger(d).values() if r.sweep_digest == digest]
    for i, r in enumerate(sorted(records, key=lambda r: r.finished or "")):
        r.index = i
    return sorted(records, key=lambda r: r.index)


def _prestart(sweep: Sweep, job: TrialJob, pool: EnginePool, console: Console) -> None:
    """Start the first trial's engine ahead of it (:mod:`harness.sweeps.prestart`)."""
    if sweep.method == "bayes":  # its first trial depends on the ledger
        return
    first = TrialSource(sweep).next()
    if first is None:
        return
    try:
        plan = prepare(job, first)
    except HarnessError:
        return  # the trial itself reports what is wrong with its spec
    for name in prestart_engines(plan, pool):
        console.print(f"starting the engine of the first trial's `{name}` ahead of it")


def run_sweep(
    sweep: Sweep,
    *,
    executor: str = "auto",
    concurrency: int = 2,
    project_root: Path | None = None,
    console: Console | None = None,
) -> SweepRun:
    """Run a sweep's trials, then write its results (table, plot, best spec) and log them.

    Args:
        sweep: The validated sweep.
        executor: ``auto`` (W&B online, else Ray), ``wandb``, ``ray`` or ``local``.
        concurrency: Trials at once (``local`` runs one at a time).
        project_root: Root for relative spec paths (default: the current directory).
        console: Where progress goes.

    Returns:
        The records and result files.

    Raises:
        SweepError: A bad executor choice, or no trial reported the sweep metric.
    """
    from harness.sweeps.results import write_results

    if concurrency < 1:
        raise HarnessError("--concurrency must be at least 1")
    console = console or Console(stderr=True)
    root = (project_root or Path.cwd()).resolve()
    kind = choose_executor(sweep, executor)
    d = sweep_dir(sweep, root)
    d.mkdir(parents=True, exist_ok=True)
    job = TrialJob.for_sweep(sweep, d, root)

    def report(rec: TrialRecord, total: int) -> None:
        params = ", ".join(f"{k}={v}" for k, v in rec.params.items())
        if rec.skipped:
            what = "[green]finished earlier[/]"
        elif rec.ok:
            ran = ", ".join(rec.ran) or "all cached"
            what = f"[cyan]ok[/] {rec.wall_s:.1f}s (ran: {ran})"
        else:
            what = f"[red]failed[/] ({(rec.error or '').splitlines()[0][:120]})"
        value = "" if rec.metric is None else f"  {sweep.metric.name}={rec.metric:.4g}"
        console.print(f"trial {rec.index + 1}/{total} {rec.trial[:8]} {params}: {what}{value}")

    console.print(
        f"sweep [bold]{sweep.name}[/]: {sweep.method} over {', '.join(sweep.keys)} "
        f"({kind}, concurrency {concurrency if kind != 'local' else 1}) -> {d}"
    )
    # Trials serving the same model share one engine: one machine shares one local pool; on a
    # cluster the Ray executor places trials onto the node running their engine (W&B agents
    # on a cluster start their own).
    on_cluster = sweep.base.spec.cluster.address is not None
    placed: list[int] | None = None
    with (
        nullcontext(None) if on_cluster else open_pool() as pool,
        nullcontext(None) if on_cluster else open_workers() as workers,
    ):
        if workers is not None:
            # Its imports overlap the first trial's planning and cached stages.
            workers.prestart(sys.executable, stage_env(), root)
        if pool is not None:
            _prestart(sweep, job, pool, console)
        if kind == "wandb":
            records = run_wandb(sweep, job, concurrency, console)
        elif kind == "ray":
            place = on_cluster and sharing_enabled()
            records, placed = run_ray(sweep, job, concurrency, report, place=place)
        else:
            records = run_local(sweep, job, report)
        run = SweepRun(sweep=sweep, dir=d, executor=kind, records=records)
        # Inside the pool: a baseline trial the intervals need shares the trials' engine.
        write_results(run, job)
        if pool is not None:
            run.engines_started = len(pool.started())
        elif placed is not None:
            run.engines_started = len(placed)
    if run.engines_started is not None:
        console.print(f"engines started: {run.engines_started} (shared by the trials)")
    return run


__all__ = [
    "EXECUTORS",
    "SweepRun",
    "choose_executor",
    "ray_init",
    "run_sweep",
    "sweep_dir",
    "trial_id",
]
