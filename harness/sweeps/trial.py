"""One trial of a sweep, and the ledger of finished trials.

:func:`run_trial` is the single trial function behind every executor (a Ray task offline, a
W&B agent's function online, a plain call locally): it applies the trial's parameters to the
base spec as overrides, builds the plan and executes it. Upstream stages whose slice the
parameters do not touch keep their keys, so they come from the content-addressed cache (the
executor serialises concurrent runs of one key, so parallel trials wait instead of
recomputing). A failure is recorded, never raised.

The ledger is ``<sweep dir>/trials/<trial id>.json``, one file per trial, written atomically
when the trial ends; the trial id is a hash of its parameters. A ledger entry counts as
finished when it succeeded and its plan (every stage key) is still the one the parameters
give now, so editing the base spec or its data makes the trials run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness.atomic import write_json
from harness.core.plan import Plan, build_plan, canonical_json
from harness.errors import HarnessError
from harness.secrets import scrub_text
from harness.spec.load import LoadedSpec, compose, load_spec
from harness.sweeps.config import Sweep, override_for

LEDGER = "trials"
BASE_SNAPSHOT = "base_spec.yaml"
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
ERROR_CHARS = 4000


@dataclass(frozen=True)
class TrialJob:
    """What every trial of a sweep shares (plain data: it travels to Ray workers).

    Attributes:
        spec_path: The snapshot of the base spec the trials load (absolute).
        overrides: The sweep's ``overrides``.
        project_root: Root for relative paths in the spec.
        sweep_dir: ``<runs root>/sweeps/<sweep name>``.
        sweep_name: The sweep's name.
        base_name: The base spec's ``name``.
        sweep_digest: :meth:`Sweep.digest` of the sweep.
        metric: The sweep metric's name.
        tags: The base spec's W&B tags (each trial adds ``sweep:<name>``).
        extra_overrides: Overrides applied last (the W&B agent turns the per-run tracking off,
            since the agent's own run records the trial).
        thread_env: The launching process's thread settings (Ray sets ``OMP_NUM_THREADS=1``
            in its workers; the trial's stage processes get what a plain run would).
    """

    spec_path: str
    overrides: tuple[str, ...]
    project_root: str
    sweep_dir: str
    sweep_name: str
    base_name: str
    sweep_digest: str
    metric: str
    tags: tuple[str, ...] = ()
    extra_overrides: tuple[str, ...] = ()
    thread_env: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def for_sweep(cls, sweep: Sweep, sweep_dir: Path, project_root: Path) -> TrialJob:
        """The job of a sweep whose results live in ``sweep_dir``.

        Writes ``<sweep_dir>/base_spec.yaml``, the base spec as composed now (``base:`` files
        merged, interpolations kept), which every trial loads: a sweep runs against the spec
        it was validated with, even if the file is edited while it runs.
        """
        return cls(
            spec_path=str(snapshot_base(sweep, sweep_dir)),
            overrides=sweep.overrides,
            project_root=str(project_root),
            sweep_dir=str(sweep_dir),
            sweep_name=sweep.name,
            base_name=sweep.base.spec.name,
            sweep_digest=sweep.digest(),
            metric=sweep.metric.name,
            tags=tuple(sweep.base.spec.tracking.tags),
            thread_env=tuple((k, os.environ.get(k)) for k in THREAD_ENV),
        )

    def with_overrides(self, *extra: str) -> TrialJob:
        """A copy with more overrides applied last."""
        return replace(self, extra_overrides=(*self.extra_overrides, *extra))


@dataclass
class TrialRecord:
    """How a trial went (the ledger entry and a results row).

    Attributes:
        trial: Trial id (hash of ``params``).
        params: Swept key -> value.
        status: ``ok`` or ``failed``.
        metric: The sweep metric's value (None when failed or not reported).
        scores: Metrics of the primary stage (``score``, else the plan's last stage).
        primary_stage: Which stage ``scores`` come from.
        metrics: Every stage's metrics as ``<stage>/<name>``.
        stage_keys: Stage -> key of this trial's plan.
        ran: Stages that ran (were not cached) in this trial.
        plan: Digest of ``stage_keys``.
        sweep_digest: The sweep it belongs to.
        run_dir: The harness run dir of the trial.
        wall_s: Wall time of the trial.
        error: Why it failed.
        finished: When it ended (UTC, ISO 8601).
        node: The Ray node it ran on (None outside Ray; for a trial whose node died, the
            node named by Ray's error).
        host: ``<host name>:<pid>`` of the process that ran it (None when its worker was
            lost).
        skipped: True when it was found finished in the ledger (not written to the ledger).
        index: Position in the sweep's order (not written to the ledger).
    """

    trial: str
    params: dict[str, Any]
    status: str = "failed"
    metric: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    primary_stage: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    stage_keys: dict[str, str] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    plan: str | None = None
    sweep_digest: str | None = None
    run_dir: str | None = None
    wall_s: float = 0.0
    error: str | None = None
    finished: str | None = None
    node: str | None = None
    host: str | None = None
    skipped: bool = False
    index: int = -1

    @property
    def ok(self) -> bool:
        """True when the trial succeeded."""
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """The ledger form (without ``skipped`` and ``index``)."""
        d = asdict(self)
        d.pop("skipped")
        d.pop("index")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrialRecord:
        """Inverse of :meth:`to_json`."""
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


def snapshot_base(sweep: Sweep, sweep_dir: Path) -> Path:
    """Write the composed base spec (interpolations unresolved) into the sweep dir."""
    cfg, _ = compose(sweep.spec_path)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / BASE_SNAPSHOT
    tmp = sweep_dir / f".{BASE_SNAPSHOT}.tmp{os.getpid()}"
    tmp.write_text(
        f"# {sweep.spec_path} as composed when sweep `{sweep.name}` started\n"
        + OmegaConf.to_yaml(cfg),
        encoding="utf-8",
    )
    os.replace(tmp, path)
    return path


def trial_id(params: dict[str, Any]) -> str:
    """The ledger key of a trial: a hash of its parameters."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:16]


def trial_overrides(job: TrialJob, params: dict[str, Any], *, naming: bool = True) -> list[str]:
    """The overrides that turn the base spec into this trial's spec.

    Args:
        job: The sweep's job.
        params: The trial's parameters.
        naming: Also give the trial its own spec name and a ``sweep:<name>`` W&B tag (its
            own run history and W&B run; no stage reads them, so no key changes).
    """
    out = [*job.overrides, *(override_for(k, v) for k, v in params.items())]
    if naming:
        tid = trial_id(params)
        out.append(override_for("name", f"{job.base_name}-{job.sweep_name}-{tid[:8]}"))
        out.append(override_for("tracking.tags", [*job.tags, f"sweep:{job.sweep_name}"]))
    return [*out, *job.extra_overrides]


def trial_spec(job: TrialJob, params: dict[str, Any], *, naming: bool = True) -> LoadedSpec:
    """The trial's validated spec."""
    return load_spec(job.spec_path, trial_overrides(job, params, naming=naming))


def plan_digest(plan: Plan) -> str:
    """Digest of every stage key of a plan (changes whenever any stage would)."""
    keys = {st.name: st.key for st in plan.stages}
    return hashlib.sha256(canonical_json(keys).encode()).hexdigest()[:20]


def ledger_dir(sweep_dir: str | Path) -> Path:
    """Where a sweep's trial records live."""
    return Path(sweep_dir) / LEDGER


def write_record(sweep_dir: str | Path, record: TrialRecord) -> Path:
    """Write a trial's ledger entry atomically (temp file, fsync, rename)."""
    return write_json(ledger_dir(sweep_dir) / f"{record.trial}.json", record.to_json())


def read_ledger(sweep_dir: str | Path) -> dict[str, TrialRecord]:
    """Every trial record of a sweep dir, by trial id (unreadable files are ignored)."""
    out: dict[str, TrialRecord] = {}
    d = ledger_dir(sweep_dir)
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        try:
            out[p.stem] = TrialRecord.from_json(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue
    return out


def finished_record(job: TrialJob, params: dict[str, Any], plan: Plan) -> TrialRecord | None:
    """The ledger entry of this trial if it succeeded with the same plan, else None."""
    path = ledger_dir(job.sweep_dir) / f"{trial_id(params)}.json"
    if not path.is_file():
        return None
    try:
        rec = TrialRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if rec.ok and rec.plan == plan_digest(plan):
        rec.skipped = True
        return rec
    return None


def prepare(job: TrialJob, params: dict[str, Any]) -> Plan:
    """Build the trial's plan (validates its spec; runs nothing)."""
    return build_plan(trial_spec(job, params), Path(job.project_root))


def failed_record(job: TrialJob, params: dict[str, Any], error: BaseException | str) -> TrialRecord:
    """A failed trial's record."""
    if isinstance(error, HarnessError):
        text = str(error)
    elif isinstance(error, BaseException):
        text = "".join(traceback.format_exception_only(error)).strip()
    else:
        text = error
    return TrialRecord(
        trial=trial_id(params),
        params=params,
        status="failed",
        sweep_digest=job.sweep_digest,
        error=scrub_text(text)[-ERROR_CHARS:],
        finished=datetime.now(UTC).isoformat(),
    )


def _where() -> tuple[str | None, str]:
    """The Ray node this process runs on (None outside a Ray worker) and ``host:pid``."""
    ray = sys.modules.get("ray")  # a Ray worker has imported it; nothing else needs it
    node = None
    if ray is not None and ray.is_initialized():
        node = ray.get_runtime_context().get_node_id()
    return node, f"{socket.gethostname()}:{os.getpid()}"


def _add_partial_run(record: TrialRecord, plan: Plan) -> None:
    """Fill in the run dir and the stages that ran before a trial failed (from its run.json)."""
    latest = plan.root / "runs" / plan.loaded.spec.name / "latest"
    try:
        run = json.loads((latest / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    record.run_dir = str(latest.resolve())
    record.ran = [n for n, st in run.get("stages", {}).items() if not st.get("cached")]


def run_trial(job: TrialJob, params: dict[str, Any]) -> TrialRecord:
    """Run one trial through the harness and record it in the ledger.

    Args:
        job: What the sweep's trials share.
        params: Swept key -> value.

    Returns:
        The record; ``skipped`` when the ledger already had it finished. Failures are
        recorded (``status: failed``), never raised.
    """
    from rich.console import Console

    from harness.core.executor import execute

    t0 = time.perf_counter()
    node, host = _where()
    for k, v in job.thread_env:
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    tid = trial_id(params)
    plan: Plan | None = None
    try:
        plan = prepare(job, params)
        done = finished_record(job, params, plan)
        if done is not None:
            return done
        log = ledger_dir(job.sweep_dir) / f"{tid}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as f:
            summary = execute(plan, console=Console(file=f, width=120, force_terminal=False))
        metrics = {
            f"{o.name}/{k}": v for o in summary.outcomes for k, v in o.result.metrics.items()
        }
        primary = next(
            (o for o in summary.outcomes if o.name == "score"),
            summary.outcomes[-1] if summary.outcomes else None,
        )
        scores = dict(primary.result.metrics) if primary else {}
        value = scores.get(job.metric, metrics.get(job.metric))
        record = TrialRecord(
            trial=tid,
            params=params,
            status="ok",
            metric=float(value) if isinstance(value, int | float) else None,
            scores=scores,
            primary_stage=primary.name if primary else None,
            metrics=metrics,
            ran=[o.name for o in summary.outcomes if not o.cached],
            run_dir=str(summary.run_dir),
        )
    except Exception as e:  # a trial failure is data, not the end of the sweep
        record = failed_record(job, params, e)
        if plan is not None:
            _add_partial_run(record, plan)
    if plan is not None:
        record.stage_keys = {st.name: st.key for st in plan.stages}
        record.plan = plan_digest(plan)
    record.sweep_digest = job.sweep_digest
    record.node, record.host = node, host
    record.wall_s = time.perf_counter() - t0
    record.finished = datetime.now(UTC).isoformat()
    write_record(job.sweep_dir, record)
    return record
