"""`harness run experiments/tiny_cpu_llmcompressor.yaml` end to end: the tiny pipeline
quantised by llm-compressor, beside AutoAWQ (`tiny_cpu.yaml`) in one report.

It runs after the tiny_cpu pipeline, in its runs root: every stage up to pad and the whole
AutoAWQ baseline come from that run's cache, so what runs is llm-compressor's quantize stage
(in its own environment, built on first use), inference, scoring and the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.runs import run_spec

SPEC = "experiments/tiny_cpu_llmcompressor.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.pipeline, pytest.mark.engine]


@pytest.fixture(scope="module")
def twin_run(tiny_cpu_pipeline: dict) -> dict:
    from harness.core.envs import ensure_env, env_file
    from harness.errors import HarnessError

    try:
        ensure_env(env_file("llmcompressor", "cpu"))
    except HarnessError as e:  # no package index: the environment cannot be created
        pytest.skip(f"the llmcompressor environment cannot be built here: {e}")
    runs = tiny_cpu_pipeline["runs"]
    _, proc = run_spec(runs, SPEC)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    manifests = sorted(
        f for f in runs.glob("runs/tiny_cpu_llmcompressor/*/run.json") if f.parent.name != "latest"
    )
    return {"before": tiny_cpu_pipeline["stage_keys"], "run": json.loads(manifests[-1].read_text())}


def _dir(run: dict, name: str) -> Path:
    return Path(run["stages"][name]["dir"])


def test_the_baseline_is_the_autoawq_run_and_upstream_is_shared(twin_run: dict) -> None:
    run, before = twin_run["run"], twin_run["before"]
    # The AutoAWQ side is tiny_cpu's own quantize stage (same key), and both quantise the
    # same padded model.
    for name in ("pad", "autoawq/quantize", "autoawq/score"):
        assert _dir(run, name).name in before, name
    assert _dir(run, "quantize").name not in before


def test_the_report_compares_both_backends(twin_run: dict) -> None:
    run = twin_run["run"]
    report_dir = _dir(run, "report")
    report = (report_dir / "report.md").read_text()
    assert "## Quantisation backends" in report
    facts = json.loads((report_dir / "report.json").read_text())
    table = facts["quantize_backends"]
    assert table["this run"]["format"] == "compressed-tensors"
    assert table["autoawq"]["format"] == "awq"
    for row in table.values():
        assert 0.01 < row["recon_error_mean"] < 0.2
        assert set(row["per_kind_error"]) == {
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        }
    gap = {name: row["logprob_gap_mean"] for name, row in table.items()}
    print(f"\nmean |Δ log-prob| vs the unquantised model: {gap}")
    assert 0 < gap["this run"] <= 1.5 * gap["autoawq"]
    # Both runs' scores are in the baseline comparison.
    assert "autoawq" in facts["baselines"]
