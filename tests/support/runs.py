"""Running specs as a user does: ``harness run`` in a subprocess, in a given runs root."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.paths import REPO


def run_spec(
    runs: Path, spec: str, *overrides: str, timeout: float = 2400
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """``harness run SPEC [overrides]`` from the project root with ``HARNESS_RUNS_ROOT=runs``,
    without test plugins or a W&B key.

    Returns:
        Wall seconds and the finished process (output captured).
    """
    env = {**os.environ, "HARNESS_RUNS_ROOT": str(runs)}
    env.pop("HARNESS_STAGE_PLUGINS", None)
    env.pop("WANDB_API_KEY", None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", spec, *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return time.perf_counter() - t0, proc
