"""Executing a plan: cache lookup, temp dir -> atomic rename -> manifest, run manifest.

A stage dir ``<root>/stages/<stage>/<key>/`` exists only complete: the stage writes into
``.tmp-<key>-<pid>-<rand>``, the executor writes ``manifest.json`` there, fsyncs and renames.
A stage killed mid-way leaves only a temp dir, which is never reused and is removed by the
next run once its owner is dead. Nor is a stage dir published when the stage's result does not
match the result model it declares (a declared metric or summary field missing or mistyped:
:func:`~harness.core.contract.check_result`) or an artifact it declares is incomplete: the
stage fails, and its temp dir is kept for inspection, never reused.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.atomic import write_json
from harness.config import overrides_in_effect
from harness.core import artifacts, envs
from harness.core.artifacts import MANIFEST
from harness.core.contract import ResultError, StageContext, StageResult, check_result
from harness.core.plan import Plan, PlannedStage, file_sha256, save_history
from harness.core.stage_main import package_versions
from harness.core.worker_pool import current_workers
from harness.errors import HarnessError, StageError
from harness.inference.engine_pool import open_pool
from harness.secrets import redact, scrub_text
from harness.tracking import DiskSink, Tracker, WandbSink, wandb_mode
from shopbench_kernels.fsutil import flocked
from shopbench_kernels.fsutil import fsync_dir as _fsync_dir
from shopbench_kernels.fsutil import pid_alive as _pid_alive


@dataclass
class StageOutcome:
    """How one stage went in a run."""

    name: str
    key: str
    dir: Path
    cached: bool
    wall_s: float
    result: StageResult


@dataclass
class RunSummary:
    """What :func:`execute` returns."""

    run_dir: Path
    outcomes: list[StageOutcome] = field(default_factory=list)
    wandb_dir: Path | None = None

    def dir_of(self, stage: str) -> Path:
        """The finished dir of a stage of this run."""
        return next(o.dir for o in self.outcomes if o.name == stage)


def _git_state(root: Path) -> dict[str, Any]:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"sha": None, "dirty": None}


def _host() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def _clean_stale(stage_root: Path, key: str) -> None:
    for tmp in stage_root.glob(f".tmp-{key}-*"):
        try:
            pid = int(tmp.name.split("-")[2])
        except (IndexError, ValueError):
            pid = -1
        if pid < 0 or not _pid_alive(pid) or pid == os.getpid():
            shutil.rmtree(tmp, ignore_errors=True)
    final = stage_root / key
    if final.exists() and not (final / MANIFEST).is_file():
        shutil.rmtree(final, ignore_errors=True)


@contextmanager
def _stage_lock(stage_root: Path, key: str) -> Iterator[None]:
    """Serialises concurrent runs of the same stage key (e.g. parallel sweep trials)."""
    stage_root.mkdir(parents=True, exist_ok=True)
    with flocked(stage_root / f".{key}.lock"):
        yield


def _outputs(d: Path) -> dict[str, dict[str, Any]]:
    return {
        p.relative_to(d).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def stage_env() -> dict[str, str]:
    """The environment a stage process gets: this process's, unbuffered, hub offline unless
    set otherwise."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


@contextmanager
def _stage_process(
    python: str, argv: list[str], cwd: Path
) -> Iterator[tuple[Iterator[str], Callable[[], int]]]:
    """Start ``harness.core.stage_main`` with ``argv`` under ``python``: in a child of the
    warm stage worker of that interpreter while a worker pool is open
    (:mod:`~harness.core.worker_pool`), else (or when no worker would take it: the first
    output line says why) as a fresh process. Yields its output lines and a function waiting
    for its exit code; leaving the block early kills it."""
    env = stage_env()
    pool = current_workers()
    child = None
    if pool is not None:
        read_fd, write_fd = os.pipe()
        try:
            child = pool.start(python, env, cwd, argv, write_fd)
        except HarnessError as e:
            os.close(read_fd)
            note = f"no stage worker ({e}); running as a fresh process\n"
        finally:
            os.close(write_fd)
    if child is None:
        proc = subprocess.Popen(
            [python, "-m", "harness.core.stage_main", *argv],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        try:
            yield itertools.chain([note] if pool is not None else [], proc.stdout), proc.wait
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        return
    with open(read_fd, encoding="utf-8", errors="replace") as output:
        ended = False

        def wait() -> int:
            nonlocal ended
            ended = True
            return child.wait()

        try:
            yield output, wait
        finally:
            if not ended:
                child.kill()


def _run_stage_process(
    plan: Plan, st: PlannedStage, tmp: Path, run_dir: Path, console: Console
) -> dict[str, Any]:
    """Run a stage in its environment's interpreter; the payload it wrote (its result JSON,
    the packages and the interpreter)."""
    log_dir = run_dir / "stages" / st.name
    log_dir.mkdir(parents=True, exist_ok=True)
    used = set(st.inputs.values())
    pythons = {role: envs.python_for(role, plan.platform, plan.env_mode) for role in st.envs}
    ctx = StageContext(
        stage=st.definition.name,
        key=st.key,
        config=st.slice,
        out=tmp,
        inputs={role: plan.stage_dir(plan.by_name(s)) for role, s in st.inputs.items()},
        upstream={s.name: plan.stage_dir(s) for s in plan.stages if s.name in used},
        root=plan.project_root,
        run_dir=run_dir,
        pythons=pythons,
        platform=plan.platform,
        baselines={
            variant: {s: plan.stage_dir(plan.by_name(name)) for s, name in stages.items()}
            for variant, stages in st.baselines.items()
        },
    )
    ctx_file, result_file, log_file = (
        log_dir / "context.json",
        log_dir / "result.json",
        log_dir / "stage.log",
    )
    ctx.write(ctx_file)
    result_file.unlink(missing_ok=True)
    result_file.with_suffix(".error").unlink(missing_ok=True)
    python = pythons[st.definition.env]
    argv = [str(ctx_file), str(result_file)]
    with (
        log_file.open("w", encoding="utf-8") as log,
        _stage_process(python, argv, plan.project_root) as (output, wait),
        console.status(f"[bold]{st.name}[/] running (log: {log_file})") as status,
    ):
        for line in output:
            line = scrub_text(line)
            log.write(line)
            log.flush()
            text = line.strip()
            if text:
                status.update(f"[bold]{st.name}[/] {text[:100]}")
        rc = wait()
    if rc != 0 or not result_file.is_file():
        err = result_file.with_suffix(".error")
        if err.is_file():
            raise StageError(f"stage `{st.name}` failed: {err.read_text(encoding='utf-8')}")
        tail = "".join(log_file.read_text(encoding="utf-8").splitlines(True)[-30:])
        raise StageError(
            f"stage `{st.name}` failed (exit {rc}); log: {log_file}\n--- last lines ---\n{tail}"
        )
    payload: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    return payload


def execute(
    plan: Plan, *, console: Console | None = None, force: tuple[str, ...] = ()
) -> RunSummary:
    """Run every stage of a plan that is not cached, and log the run.

    Args:
        plan: The plan.
        console: Where progress goes.
        force: Stage names to re-run even when cached.

    Returns:
        Outcomes of all stages and the run dir.

    Raises:
        StageError: A stage failed (its temp dir is left for inspection, never reused).
    """
    console = console or Console(stderr=True)
    spec = plan.loaded.spec
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = plan.root / "runs" / spec.name / f"{stamp}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    sinks: list[Any] = [DiskSink(run_dir)]
    mode = wandb_mode(spec.tracking.mode)
    if mode != "disabled":
        sinks.append(
            WandbSink(
                run_dir,
                project=spec.tracking.project,
                entity=spec.tracking.entity,
                mode=mode,
                name=spec.name,
                tags=spec.tracking.tags,
            )
        )
    tracker = Tracker(sinks)
    resolved = redact(plan.loaded.resolved)
    tracker.log_config(resolved)
    summary = RunSummary(run_dir=run_dir)
    wb = tracker.wandb
    summary.wandb_dir = wb.run_path if wb else None
    manifest: dict[str, Any] = {
        "spec": resolved,
        "spec_files": [str(f) for f in plan.loaded.files],
        "overrides": redact(list(plan.loaded.overrides)),
        "git": _git_state(plan.project_root),
        "environment": redact(overrides_in_effect()),
        "platform": plan.platform,
        "env_mode": plan.env_mode,
        "packages": package_versions(),
        "host": _host(),
        "started": stamp,
        "stages": {},
    }
    write_json(run_dir / "run.json", manifest)
    if plan.env_mode == "current":
        _note_unmet(plan, console)
    ok = False
    # Several serving stages (a spec and its baselines) share an engine per model and settings.
    serving = sum(st.definition.serves for st in plan.stages) > 1
    try:
        with open_pool() if serving else nullcontext():
            for st in plan.stages:
                outcome = _execute_stage(plan, st, run_dir, console, st.name in force)
                summary.outcomes.append(outcome)
                tracker.log_stage(
                    st.name, st.key, outcome.result, outcome.dir, outcome.wall_s, outcome.cached
                )
                manifest["stages"][st.name] = {
                    "key": st.key,
                    "dir": str(outcome.dir),
                    "cached": outcome.cached,
                    "wall_s": outcome.wall_s,
                }
                write_json(run_dir / "run.json", manifest)
        ok = True
    finally:
        manifest["finished"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        manifest["status"] = "ok" if ok else "failed"
        write_json(run_dir / "run.json", manifest)
        tracker.finish()
        # Replace the link atomically: concurrent runs of one spec must not race on it.
        latest = run_dir.parent / "latest"
        tmp_link = run_dir.parent / f".latest-{uuid.uuid4().hex}"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(run_dir.name)
        os.replace(tmp_link, latest)
    save_history(plan)
    return summary


def _execute_stage(
    plan: Plan, st: PlannedStage, run_dir: Path, console: Console, force: bool
) -> StageOutcome:
    final = plan.stage_dir(st)
    stage_root = final.parent
    with _stage_lock(stage_root, st.key):
        if force and final.exists():
            shutil.rmtree(final)
        if (final / MANIFEST).is_file():
            m = artifacts.manifest(final)
            cached = check_result(st.name, st.definition.result_model, m["result"])
            console.print(f"[green]✓[/] {st.name:<10} cached  {st.key}")
            return StageOutcome(st.name, st.key, final, True, 0.0, cached)
        _clean_stale(stage_root, st.key)
        tmp = stage_root / f".tmp-{st.key}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        payload = _run_stage_process(plan, st, tmp, run_dir, console)
        wall = time.perf_counter() - t0
        try:
            result = check_result(st.name, st.definition.result_model, payload["result"])
        except ResultError as e:
            raise ResultError(
                f"{e}; its temporary dir {tmp} is kept for inspection and never reused"
            ) from None
        incomplete = {a.name: missing for a in st.definition.outputs if (missing := a.missing(tmp))}
        if incomplete:
            raise StageError(
                f"stage `{st.name}` finished without its declared outputs "
                f"{', '.join(f'{a}: {m}' for a, m in incomplete.items())}; its temporary dir "
                f"{tmp} is kept for inspection and never reused"
            )
        manifest = {
            **st.record(),
            "stage": st.name,
            "slice": redact(st.slice),
            "env": st.definition.env,
            "inputs": st.inputs,
            **({"baselines": st.baselines} if st.baselines else {}),
            "outputs_declared": [a.name for a in st.definition.outputs],
            "packages": payload["packages"],
            "python": payload["python"],
            "env_mode": plan.env_mode,
            **_installed_pins(plan, st),
            "wall_s": wall,
            "outputs": _outputs(tmp),
            "result": result.to_json(),
            "finished": datetime.now(UTC).isoformat(),
        }
        write_json(tmp / MANIFEST, manifest)
        _fsync_dir(tmp)
        os.replace(tmp, final)
        _fsync_dir(stage_root)
        console.print(f"[cyan]●[/] {st.name:<10} ran     {st.key}  {wall:.1f}s")
        return StageOutcome(st.name, st.key, final, False, wall, result)


def _installed(plan: Plan) -> dict[str, str]:
    """The installed distributions: those the plan's keys saw (read once, by the planner)."""
    return plan.installed if plan.installed is not None else envs.installed_versions()


def _installed_pins(plan: Plan, st: PlannedStage) -> dict[str, Any]:
    """Current-interpreter mode: per role of the stage, its pin file and the versions
    installed of its pinned packages (None: not installed), for the stage's manifest (every
    role ran with this interpreter). Pinned mode: nothing (the pins hold by construction)."""
    if plan.env_mode != "current":
        return {}
    installed = _installed(plan)
    return {
        "installed_pins": {
            role: {
                "file": f"harness/envs/{envs.env_file(role, plan.platform).name}",
                "versions": envs.installed_pins(role, plan.platform, installed),
            }
            for role in st.envs
        }
    }


def _note_unmet(plan: Plan, console: Console) -> None:
    """Say, per pin file the plan uses, how many pins the current interpreter leaves unmet."""
    installed = _installed(plan)
    files = sorted({envs.env_file(role, plan.platform) for st in plan.stages for role in st.envs})
    for f in files:
        unmet = [p for p in envs.check_pins(f, installed) if not p.ok]
        if unmet:
            console.print(
                f"[yellow]current interpreter[/]: {len(unmet)} pin(s) of harness/envs/{f.name} "
                f"unmet (`harness env --check` lists them); running anyway",
                soft_wrap=True,
                highlight=False,
            )
