"""A throw-away copy of the project's code, specs and pins (what a clone holds), and its plan
computed by the ``harness plan --json`` of that copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.paths import REPO


def project_copy(tmp: Path) -> Path:
    """Copy ``harness/``, ``kernels/``, ``experiments/`` and pyproject.toml under ``tmp``."""
    clone = tmp / "clone"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "runs")
    for part in ("harness", "kernels", "experiments"):
        shutil.copytree(REPO / part, clone / part, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", clone / "pyproject.toml")
    return clone


def plan_of_copy(
    clone: Path, runs: Path, spec: str = "experiments/tiny_cpu.yaml"
) -> dict[str, dict[str, Any]]:
    """Stage name -> its entry of ``harness plan --json`` run with the copy's code."""
    env = {
        **os.environ,
        "HARNESS_RUNS_ROOT": str(runs),
        "PYTHONPATH": os.pathsep.join([str(clone), str(clone / "kernels")]),
    }
    env.pop("HARNESS_STAGE_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "plan", "--json", spec],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["root"] == str(runs)
    return {s["stage"]: s for s in doc["stages"]}
