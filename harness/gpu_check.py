"""One prepared run on a GPU machine: ``python -m harness.gpu_check`` (``nox -s gpu-pipeline``).

Steps, each with a timeout inside one overall budget (default 8 minutes), logged to
``<out dir>/<step>.log``:

1. ``wheels``: install the wheels carried in ``wheels/`` (when present) into this interpreter,
   ``pip install --no-index --find-links wheels`` (only those not installed at their version);
2. ``validate`` and ``plan``: the spec (default ``experiments/gpu_small.yaml``) in the
   current-interpreter mode, and ``env-check``: the pins this interpreter leaves unmet;
3. ``gpu-tests``: ``pytest -m gpu`` over the test files that hold GPU tests;
4. ``pipeline``: ``harness run SPEC`` with ``HARNESS_ENV_MODE=current`` (every stage with this
   interpreter) and its runs root under the out dir;
5. the summary, ``<out dir>/summary.json``, rewritten after every step: per step its status
   (``ok``, ``failed``, ``timeout``, ``skipped`` on request or when there is nothing to do,
   ``not run`` when the budget was spent), wall time and log tail; per stage its wall
   time (from its manifest; a cached stage's is that of the run that made it); and per stage
   the metrics and summary facts its result model declares (:func:`declared_results`: the
   training loss first/last and the backend, the AWQ size ratio and reconstruction error,
   the log-prob gap of the AWQ model against the fp16 one on the same sequences (the quantize
   stage's serving check), inference tokens/s and the engine, the scores), read from its
   manifest through the typed accessor (:func:`harness.core.results.stage_result`).
   ``unfinished`` lists every step and stage that did not finish.

``--dry-run`` runs on any machine without a GPU: it validates and plans the spec, checks the
pins, lists the wheels that would be installed and the steps with their commands and
timeouts, and writes the summary skeleton (every step ``planned``).

Only the standard library is imported before the wheels are installed: on a fresh machine
they may be what provides the harness's own dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.project import project_pythonpath

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = "experiments/gpu_small.yaml"
DEFAULT_OUT = "gpu-results"
BUDGET_S = 480.0
RESERVE_S = 10.0
"""Seconds of the budget kept back for writing the summary."""
STEP_TIMEOUTS = {"wheels": 90.0, "env-check": 60.0, "gpu-tests": 150.0, "pipeline": 0.0}
"""Per-step timeouts in seconds; 0: whatever the budget has left."""
FINISHED = ("ok", "skipped")
"""Step statuses that count as finished (``skipped``: on request, or nothing to do)."""
TEST_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_SILENT": "true",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write the summary atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- wheels


def wheel_plan(wheels: Path) -> dict[str, Any]:
    """The wheels in ``wheels`` and which of them this interpreter lacks.

    Args:
        wheels: A directory of ``*.whl`` files (absent: nothing to install).

    Returns:
        ``{"dir", "found", "to_install", "already_installed"}``: file names, the last two
        split by whether the wheel's distribution is installed at the wheel's version.
    """
    files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    have = {_norm(d.metadata["Name"] or ""): d.version for d in metadata.distributions()}
    todo, done = [], []
    for f in files:
        parts = f.name[: -len(".whl")].split("-")
        name, version = (_norm(parts[0]), parts[1]) if len(parts) >= 2 else (f.name, "")
        installed = have.get(name)
        same = installed is not None and (
            installed == version or installed.split("+", 1)[0] == version.split("+", 1)[0]
        )
        (done if same else todo).append(f.name)
    return {
        "dir": str(wheels),
        "found": [f.name for f in files],
        "to_install": todo,
        "already_installed": done,
    }


def wheel_command(wheels: Path, to_install: list[str]) -> list[str]:
    """The pip command installing ``to_install`` from ``wheels`` without an index."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        str(wheels),
        *(str(wheels / w) for w in to_install),
    ]


# --------------------------------------------------------------------------- steps


def _tail(log: Path, n: int = 20) -> list[str]:
    try:
        return log.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []


def run_step(
    name: str, cmd: list[str], timeout_s: float, out_dir: Path, env: dict[str, str]
) -> dict[str, Any]:
    """Run one step's command in its own process group, killed (the group) at the timeout.

    Args:
        name: Step name (its log is ``<out_dir>/<name>.log``).
        cmd: The command.
        timeout_s: Seconds before the process group is terminated.
        out_dir: Where the log goes.
        env: The environment.

    Returns:
        The step record: ``status`` (``ok``, ``failed`` or ``timeout``), ``returncode``,
        ``wall_s``, ``log`` and the log's last lines.
    """
    log = out_dir / f"{name}.log"
    t0 = time.perf_counter()
    status, rc = "ok", None
    with log.open("w", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=max(timeout_s, 1.0))
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            status = "timeout"
            _kill_group(proc)
            rc = proc.returncode
    return {
        "name": name,
        "command": cmd,
        "timeout_s": round(timeout_s, 1),
        "status": status,
        "returncode": rc,
        "wall_s": round(time.perf_counter() - t0, 2),
        "log": str(log),
        "tail": _tail(log) if status != "ok" else [],
    }


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """Terminate the step's process group (engines spawn workers), then kill it."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def gpu_test_files(tests: Path) -> list[str]:
    """Test files that hold GPU tests (``pytest.mark.gpu``), relative to the project."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in tests.glob("test_*.py")
        if "mark.gpu" in p.read_text(encoding="utf-8", errors="replace")
    )


def junit_counts(xml_file: Path) -> dict[str, Any] | None:
    """Passed/failed/errors/skipped and per-test outcomes of a JUnit XML report."""
    try:
        root = ET.parse(xml_file).getroot()
    except (OSError, ET.ParseError):
        return None
    tests = []
    for case in root.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
        tests.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "time_s": float(case.get("time") or 0.0),
            }
        )
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error")}
    counts["skipped"] = sum(t["outcome"] == "skipped" for t in tests)
    return {**counts, "tests": tests}


# --------------------------------------------------------------------------- pipeline results


def latest_run_dir(runs_root: Path, spec_name: str) -> Path | None:
    """The newest run dir of a spec (by its time-stamped name; a killed run has no
    ``latest`` link)."""
    base = runs_root / "runs" / spec_name
    dirs = sorted(d for d in base.glob("*") if d.is_dir() and (d / "run.json").is_file())
    return dirs[-1] if dirs else None


def declared_results(model: Any) -> list[str]:
    """What the summary carries of a stage: the metrics its result model declares, then the
    summary facts it declares (a fact named like a metric gives way to it).

    Args:
        model: The stage's result model (a :class:`~harness.core.contract.StageResult`
            subclass).
    """
    metrics = list(model.metrics_model().declared_names())
    return metrics + [n for n in model.summary_model().declared_names() if n not in metrics]


def pipeline_results(run_dir: Path | None, planned: list[str]) -> tuple[dict[str, Any], dict]:
    """Per-stage wall times and results of a run, from its ``run.json`` and the finished
    stages' manifests.

    Args:
        run_dir: The run's dir (None: the run never started).
        planned: The stages of the plan, in order.

    Returns:
        ``(pipeline, metrics)``: ``pipeline`` holds ``run_dir``, ``status``, per stage
        ``wall_s`` (its manifest's), ``cached`` and ``key``, and ``unfinished_stages``;
        ``metrics`` holds per stage the declared metrics and summary facts it reported
        (:func:`declared_results`).
    """
    from harness.core import artifacts
    from harness.core.results import stage_result
    from harness.errors import HarnessError

    if run_dir is None:
        never = {"run_dir": None, "status": "not started", "stages": {}}
        return {**never, "unfinished_stages": list(planned)}, {}
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    stages: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    for name, rec in run.get("stages", {}).items():
        stage_dir = Path(rec["dir"])
        try:
            manifest = artifacts.manifest(stage_dir)
        except (OSError, json.JSONDecodeError):
            manifest = {}
        stages[name] = {
            "wall_s": manifest.get("wall_s", rec.get("wall_s")),
            "cached": rec.get("cached"),
            "key": rec.get("key"),
            "env_mode": manifest.get("env_mode"),
        }
        try:
            result = stage_result(stage_dir)
        except (OSError, json.JSONDecodeError, HarnessError):
            continue
        got = {**result.summary.declared(), **result.metrics.declared()}
        names = declared_results(type(result))
        if got:
            metrics[name] = {n: got[n] for n in names if n in got}
    pipeline = {
        "run_dir": str(run_dir),
        "status": run.get("status", "running (killed)"),
        "stages": stages,
        "unfinished_stages": [s for s in planned if s not in stages],
    }
    return pipeline, metrics


# --------------------------------------------------------------------------- main


def _plan(spec: str, overrides: list[str]) -> dict[str, Any]:
    """Validate and plan the spec in the current-interpreter mode (light: no torch)."""
    from harness.core.plan import build_plan
    from harness.errors import USER_ERRORS
    from harness.spec import load_spec

    try:
        plan = build_plan(load_spec(ROOT / spec, overrides), ROOT, strict=False)
    except USER_ERRORS as e:
        return {"ok": False, "error": str(e), "stages": []}
    return {
        "ok": True,
        "error": None,
        "spec_name": plan.loaded.spec.name,
        "platform": plan.platform,
        "env_mode": plan.env_mode,
        "stages": [
            {
                "stage": st.name,
                "key": st.key,
                "envs": list(st.envs),
                "result_fields": declared_results(st.definition.result_model),
            }
            for st in plan.stages
        ],
        "missing_inputs": [m for st in plan.stages for m in st.missing],
    }


def _env_check(spec: str, overrides: list[str]) -> dict[str, Any]:
    """The pins this interpreter leaves unmet for the spec's stages (``harness env --check``)."""
    from harness.cli import env_check

    platform_, report = env_check(str(ROOT / spec), [], "auto", overrides)
    return _env_report(platform_, report)


def _env_report(platform_: str, report: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "platform": platform_,
        "unmet_counts": {r: {f: len(u) for f, u in files.items()} for r, files in report.items()},
        "unmet": report,
    }


def _env_check_log(log: Path) -> dict[str, Any] | None:
    """The ``env --check --json`` output in a step log (after the command line)."""
    try:
        text = log.read_text(encoding="utf-8").split("\n", 1)[1]
        doc = json.loads(text[text.index("{") :])
    except (OSError, IndexError, ValueError):
        return None
    return _env_report(doc["platform"], doc["unmet"])


def _gpus() -> list[str] | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [line.strip() for line in out.splitlines() if line.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.gpu_check", description=__doc__)
    p.add_argument("--dry-run", action="store_true", help="plan and list; run nothing")
    p.add_argument("--spec", default=DEFAULT_SPEC, help=f"spec to run (default {DEFAULT_SPEC})")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], help="spec override key=value"
    )
    p.add_argument("--wheels", default="wheels", help="dir of carried wheels (default wheels)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output dir (default {DEFAULT_OUT})")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="overall seconds")
    p.add_argument(
        "--skip", action="append", default=[], choices=sorted(STEP_TIMEOUTS), help="skip a step"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run (or with ``--dry-run`` plan) the GPU check; 0 when every step finished."""
    a = _parser().parse_args(argv)
    t_start = time.perf_counter()
    out_dir = (ROOT / a.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_file = out_dir / "summary.json"
    wheels = (ROOT / a.wheels).resolve()
    runs_root = out_dir / "runs"
    env = {
        **os.environ,
        **TEST_ENV,
        # The project's package roots (harness/, kernels/): the GPU machine does not install it.
        "PYTHONPATH": project_pythonpath(os.environ.get("PYTHONPATH")),
        "HARNESS_ENV_MODE": "current",
        "HARNESS_RUNS_ROOT": str(runs_root),
        "PYTHONUNBUFFERED": "1",
    }
    summary: dict[str, Any] = {
        "kind": "gpu-pipeline",
        "dry_run": a.dry_run,
        "spec": a.spec,
        "overrides": a.overrides,
        "budget_s": a.budget,
        "started": _now(),
        "finished": None,
        "wall_s": None,
        "host": {
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "platform": platform.platform(),
            "gpus": _gpus(),
        },
        "wheels": wheel_plan(wheels),
        "validate": None,
        "plan": None,
        "env_check": None,
        "steps": [],
        "gpu_tests": None,
        "pipeline": None,
        "metrics": {},
        "unfinished": [],
    }
    tests = gpu_test_files(ROOT / "tests")
    junit = out_dir / "gpu-tests.xml"
    commands = {
        "wheels": wheel_command(wheels, summary["wheels"]["to_install"]),
        "env-check": [
            *(sys.executable, "-m", "harness.cli", "env", "--check", a.spec, "--json"),
            *(f"--set={o}" for o in a.overrides),
        ],
        "gpu-tests": [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-m",
            "gpu",
            f"--junitxml={junit}",
            *tests,
        ],
        "pipeline": [sys.executable, "-m", "harness.cli", "run", a.spec, *a.overrides],
    }

    def left() -> float:
        return a.budget - (time.perf_counter() - t_start) - RESERVE_S

    def finish(code: int) -> int:
        summary["finished"] = _now()
        summary["wall_s"] = round(time.perf_counter() - t_start, 2)
        steps = [s["name"] for s in summary["steps"] if s["status"] not in FINISHED]
        stages = (summary["pipeline"] or {}).get("unfinished_stages", [])
        summary["unfinished"] = steps + [f"stage:{s}" for s in stages]
        write_summary(summary_file, summary)
        print(f"summary: {summary_file}")
        return code

    if a.dry_run:
        summary["steps"] = [
            {
                "name": name,
                "command": cmd,
                "timeout_s": STEP_TIMEOUTS[name] or None,
                "status": "skipped" if name in a.skip else "planned",
            }
            for name, cmd in commands.items()
        ]
        if not summary["wheels"]["to_install"]:
            summary["steps"][0]["status"] = "skipped"
            summary["steps"][0]["detail"] = "no wheel to install"
        summary["gpu_tests"] = {"files": tests}
        os.environ.update(HARNESS_ENV_MODE="current")
        plan = _plan(a.spec, a.overrides)
        summary["validate"] = {"ok": plan["ok"], "error": plan["error"]}
        summary["plan"] = plan
        if plan["ok"]:
            summary["env_check"] = _env_check(a.spec, a.overrides)
        summary["pipeline"] = {
            "run_dir": None,
            "status": "planned",
            "stages": {},
            "unfinished_stages": [s["stage"] for s in plan["stages"]],
        }
        summary["metrics"] = {
            st["stage"]: dict.fromkeys(st["result_fields"])
            for st in plan["stages"]
            if st["result_fields"]
        }
        for name, steps in commands.items():
            print(f"{name:<10} {' '.join(steps)}")
        return finish(0 if plan["ok"] else 2)

    write_summary(summary_file, summary)

    def step(name: str) -> dict[str, Any]:
        rec: dict[str, Any] = {"name": name, "command": commands[name]}
        if name in a.skip:
            rec.update(status="skipped", detail="--skip")
        elif left() < 5:
            rec.update(status="not run", detail="budget spent")
        else:
            timeout = min(STEP_TIMEOUTS[name] or left(), left())
            rec = run_step(name, commands[name], timeout, out_dir, env)
        summary["steps"].append(rec)
        write_summary(summary_file, summary)
        return rec

    if summary["wheels"]["to_install"]:
        step("wheels")
        importlib.invalidate_caches()
    else:
        summary["steps"].append(
            {"name": "wheels", "command": [], "status": "ok", "detail": "no wheel to install"}
        )
    os.environ.update(HARNESS_ENV_MODE="current", HARNESS_RUNS_ROOT=str(runs_root))
    try:
        plan = _plan(a.spec, a.overrides)
    except ImportError as e:  # the harness's own dependencies are missing
        plan = {"ok": False, "error": f"cannot import the harness: {e}", "stages": []}
    summary["validate"] = {"ok": plan["ok"], "error": plan["error"]}
    summary["plan"] = plan
    if not plan["ok"]:
        summary["steps"].append({"name": "plan", "status": "failed", "detail": plan["error"]})
        return finish(1)
    rec = step("env-check")
    if rec.get("returncode") == 1:  # unmet pins: what the current-interpreter mode runs with
        rec.update(status="ok", detail="unmet pins (see env_check)", tail=[])
    if "log" in rec:
        summary["env_check"] = _env_check_log(Path(rec["log"]))
    if tests:
        step("gpu-tests")
        summary["gpu_tests"] = {"files": tests, **(junit_counts(junit) or {})}
    else:
        summary["steps"].append({"name": "gpu-tests", "status": "skipped", "detail": "none"})
    step("pipeline")
    names = [s["stage"] for s in plan["stages"]]
    summary["pipeline"], summary["metrics"] = pipeline_results(
        latest_run_dir(runs_root, plan["spec_name"]), names
    )
    failed = any(s["status"] not in FINISHED for s in summary["steps"])
    return finish(1 if failed or summary["pipeline"]["unfinished_stages"] else 0)


if __name__ == "__main__":
    raise SystemExit(main())
