"""Benchmark: sweeps whose trials share one engine against the same trials each starting
their own, in one run, as whole ``harness sweep`` processes.

The tiny_cpu pipeline's upstream stages (model to quantize) are computed once in a fresh runs
root; then each sweep file (``experiments/sweeps/decoding.yaml``: 6 trials,
``experiments/sweeps/prompts.yaml``: 4 trials) runs twice, its infer and score stages removed
in between so both runs compute them: first the way trials ran before sharing
(``HARNESS_SHARE_ENGINES=off``, ``HARNESS_STAGE_WORKERS=off``: one engine and one fresh
process per stage of each trial), then with both on (one engine for the sweep, started ahead
of its first trial, and warm stage workers). Records both wall times and their
ratio, the sum of the trials' generation times, the shared engine's start time, and the
sweep's wall time against one engine start plus the generation times (the floor a shared
engine could reach; what is above it is each trial's planning, stage processes, scoring and
tracking). Writes ``bench-results/sweep_engine.json``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.paths import REPO

RESULTS = REPO / "bench-results" / "sweep_engine.json"
UPSTREAM = "stages=[model,synthesize,mix,finetune,pad,quantize]"
SWEEPS = {
    "decoding": "experiments/sweeps/decoding.yaml",
    "prompts": "experiments/sweeps/prompts.yaml",
}


def _cpu_flags() -> list[str]:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return sorted(f for f in ("avx2", "avx512f", "amx_tile", "avx512_bf16") if f in flags)


def _run(cmd: list[str], runs: Path, share: bool) -> float:
    env = {
        **os.environ,
        "HARNESS_RUNS_ROOT": str(runs),
        "HARNESS_SHARE_ENGINES": "on" if share else "off",
        "HARNESS_STAGE_WORKERS": "on" if share else "off",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    env.pop("HARNESS_STAGE_PLUGINS", None)
    env.pop("WANDB_API_KEY", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return wall


def _trials(runs: Path, name: str) -> list[dict]:
    ledger = sorted((runs / "sweeps" / name / "trials").glob("*.json"))
    return [json.loads(p.read_text()) for p in ledger]


def _sweep(runs: Path, file: str, share: bool) -> dict:
    for stage in ("infer", "score", "report"):
        shutil.rmtree(runs / "stages" / stage, ignore_errors=True)
    shutil.rmtree(runs / "sweeps", ignore_errors=True)
    harness = str(Path(sys.executable).with_name("harness"))
    wall = _run([harness, "sweep", file, "--concurrency", "1"], runs, share)
    name = next((runs / "sweeps").iterdir()).name
    trials = _trials(runs, name)
    assert trials and all(t["status"] == "ok" for t in trials), [t.get("error") for t in trials]
    gen = [t["metrics"]["infer/wall_s"] for t in trials]
    waited = [t["metrics"]["infer/engine_start_s"] for t in trials]
    # Each engine's own start time: a shared engine's from its host (the sweep may start it
    # ahead of the first trial, which then waits for part of it only), else the stage's.
    starts: dict[str, float] = {}
    for t, w in zip(trials, waited, strict=True):
        manifest = runs / "stages" / "infer" / t["stage_keys"]["infer"] / "manifest.json"
        shared = json.loads(manifest.read_text())["result"]["summary"].get("shared_engine")
        if shared is None:
            starts[t["trial"]] = w
        elif "engine_start_s" in shared:
            starts[str(shared["pid"])] = shared["engine_start_s"]
    return {
        "trials": len(trials),
        "wall_s": wall,
        "generation_s_sum": sum(gen),
        "engine_start_s_sum": sum(starts.values()),
        "engine_start_s_max": max(starts.values()),
        "engine_start_s_median": statistics.median(starts.values()),
        "engines_started": len(starts),
        "engine_wait_s_sum": sum(waited),
    }


@pytest.mark.bench
def test_bench_sweeps_share_one_engine(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    harness = str(Path(sys.executable).with_name("harness"))
    upstream_s = _run([harness, "run", "experiments/tiny_cpu.yaml", UPSTREAM], runs, True)
    out: dict = {
        "host": {"cpu_flags": _cpu_flags(), "cores": os.cpu_count(), "machine": platform.machine()},
        "upstream_s": upstream_s,
        "sweeps": {},
    }
    for label, file in SWEEPS.items():
        today = _sweep(runs, file, share=False)
        shared = _sweep(runs, file, share=True)
        floor = shared["engine_start_s_max"] + shared["generation_s_sum"]
        # The shared engine starts while the sweep's own start-up runs beside it (2 cores):
        # against an engine start on an otherwise idle machine (the median of the trials that
        # each started their own), the same floor is lower.
        idle_floor = today["engine_start_s_median"] + shared["generation_s_sum"]
        out["sweeps"][label] = {
            "file": file,
            "one_engine_per_trial": today,
            "shared_engine": shared,
            "speedup": today["wall_s"] / shared["wall_s"],
            "shared_wall_over_start_plus_generation": shared["wall_s"] / floor,
            "shared_wall_over_idle_start_plus_generation": shared["wall_s"] / idle_floor,
        }
        assert shared["engines_started"] == 1, shared
        assert today["engines_started"] == today["trials"], today
        assert shared["wall_s"] < today["wall_s"]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))
