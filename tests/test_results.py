"""Typed stage results: a stage's result model (its return annotation) is checked by the
executor before the stage dir is published, readers get finished results back typed, and the
report's baselines are a typed mapping whose stages' keys enter the report's key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.core.contract import ResultError, StageResult
from harness.core.executor import execute
from harness.core.plan import MANIFEST, build_plan, reasons
from harness.core.results import metrics_of, stage_result
from harness.core.stage import stage
from harness.errors import HarnessError
from harness.quant_report import COLUMNS, section
from harness.spec import load_spec
from harness.stages.infer import InferMetrics, InferResult
from harness.stages.quantize import QuantizeMetrics, QuantizeResult
from harness.stages.report import ReportResult
from harness.stages.score import ScoreResult
from tests.plugins.toy_stages import SeedSlice, ToyBResult
from tests.support.paths import REPO

TINY = REPO / "experiments" / "tiny_cpu.yaml"

PLUGIN = """
from harness.core.stage import (
    SpecSlice, StageContext, StageMetrics, StageResult, StageSummary, read, stage,
)


class Seed(SpecSlice):
    seed: int = read("model.tiny.seed")


class CountMetrics(StageMetrics):
    rows: float


class CountSummary(StageSummary):
    label: str


class CountResult(StageResult):
    metrics: CountMetrics
    summary: CountSummary


@stage(name="typed_missing")
def typed_missing(ctx: StageContext, spec: Seed) -> CountResult:
    (ctx.out / "rows.txt").write_text("3")
    return StageResult(metrics={"row": 3.0}, summary={"label": "three"})


@stage(name="typed_mistyped")
def typed_mistyped(ctx: StageContext, spec: Seed) -> CountResult:
    return StageResult(metrics={"rows": 3.0}, summary={"label": 3})
"""


@pytest.mark.parametrize(
    ("stage_name", "expected"),
    [
        ("typed_missing", "`metrics.rows` is missing (declared by `CountMetrics.rows`)"),
        ("typed_mistyped", "`summary.label`: input should be a valid string, got 3"),
    ],
)
def test_a_result_not_matching_its_model_fails_the_stage_and_publishes_nothing(
    tmp_path: Path, stage_name: str, expected: str
) -> None:
    (tmp_path / "typed_plugin.py").write_text(textwrap.dedent(PLUGIN))
    runs = tmp_path / "runs"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "HARNESS_STAGE_PLUGINS": "typed_plugin",
        "HARNESS_RUNS_ROOT": str(runs),
    }
    cmd = [sys.executable, "-m", "harness.cli", "run", str(TINY), f"stages=[{stage_name}]"]
    proc = subprocess.run(
        [*cmd, "tracking.mode=disabled"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"stage `{stage_name}`" in errors[0] and "`CountResult`" in errors[0], errors[0]
    assert expected in errors[0], errors[0]
    # Nothing published: only the temporary dir, kept for inspection, never reused.
    stage_root = runs / "stages" / stage_name
    assert not [d for d in stage_root.iterdir() if not d.name.startswith(".")]
    assert [d for d in stage_root.iterdir() if d.name.startswith(".tmp-")]
    run = json.loads(next(runs.glob("runs/tiny_cpu/*/run.json")).read_text())
    assert run["status"] == "failed" and stage_name not in run["stages"]


@pytest.fixture()
def toy_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(root))
    monkeypatch.setenv("TOY_SLEEP", "0")
    return root


def test_finished_results_come_back_as_their_declared_model(toy_runs: Path) -> None:
    spec = load_spec(TINY, ["stages=[toy_a,toy_b]", "tracking.mode=disabled"])
    first = execute(build_plan(spec, REPO))
    again = execute(build_plan(spec, REPO))
    toy_b = first.dir_of("toy_b")
    read = stage_result(toy_b)
    assert isinstance(read, ToyBResult) and read.metrics.score == 0.5
    assert read.tables == {"rows": "rows.jsonl"}
    assert stage_result(toy_b, ToyBResult) == read
    # What the executor hands on (ran or cached) is the typed model too.
    assert isinstance(first.outcomes[1].result, ToyBResult)
    assert again.outcomes[1].cached and again.outcomes[1].result == read
    # The manifest keeps the plain shape.
    manifest = json.loads((toy_b / MANIFEST).read_text())
    assert manifest["result"] == {
        "metrics": {"score": 0.5},
        "tables": {"rows": "rows.jsonl"},
        "images": {},
        "series": {},
        "summary": {},
    }
    # Read as another stage's model, the missing declared fields are named.
    with pytest.raises(ResultError) as e:
        stage_result(toy_b, ScoreResult)
    assert "stage `toy_b`" in str(e.value) and str(toy_b) in str(e.value)
    assert "`metrics.official/overall` is missing (declared by `ScoreMetrics." in str(e.value)


def test_flat_metrics_read_back_as_a_stage_metrics_model() -> None:
    """A sweep's trial records hold ``<stage>/<metric>``; the infer columns come back typed."""
    stats = dict.fromkeys(InferMetrics.declared_names(), 1.0)
    flat = {f"infer/{k}": v for k, v in stats.items()} | {"score/overall": 0.5}
    flat["infer/wall_s"] = 2.5
    infer = metrics_of(flat, "infer", InferMetrics)
    assert infer is not None and infer.wall_s == 2.5 and infer.engine_shared == 1.0
    assert metrics_of({"score/overall": 0.5}, "infer", InferMetrics) is None
    del flat["infer/engine_start_s"]  # a declared metric missing: not this model's record
    assert metrics_of(flat, "infer", InferMetrics) is None


def test_the_return_annotation_must_be_a_result_model() -> None:
    def wrong(ctx: object, spec: SeedSlice) -> dict:  # type: ignore[type-arg]
        return {}

    with pytest.raises(HarnessError, match="return annotation must be its result model"):
        stage(name="wrong_result")(wrong)


def test_readers_name_only_declared_fields() -> None:
    """The quantisation table's columns are declared quantize metrics (read as attributes),
    and a stage without a declaration reads as the plain model."""
    assert [k for k, _ in COLUMNS if k not in QuantizeMetrics.model_fields] == []
    plain = StageResult.from_json({"metrics": {"x": 1}, "summary": {"note": [1]}})
    assert plain.metrics["x"] == 1.0 and plain.summary.to_dict() == {"note": [1]}
    with pytest.raises(ValueError, match="valid number"):
        StageResult.from_json({"metrics": {"x": "one"}})


def _quantize_dir(root: Path, key: str, backend: str, gap: float) -> Path:
    """A finished quantize stage dir as the store holds it (its manifest's result)."""
    metrics = dict.fromkeys(QuantizeMetrics.declared_names(), 1.0) | {"logprob_gap_mean": gap}
    result = QuantizeResult.model_validate(
        {"metrics": metrics, "summary": {"backend": backend, "format": "f", "vllm": {}}}
    )
    d = root / "stages" / "quantize" / key
    d.mkdir(parents=True)
    manifest = {"upstream_keys": {"model": "m1"}, "result": result.to_json()}
    (d / MANIFEST).write_text(json.dumps(manifest))
    return d


def test_the_quantisation_section_reads_quantize_results_typed(tmp_path: Path) -> None:
    mine = _quantize_dir(tmp_path, "k1", "llmcompressor", 0.02)
    other = _quantize_dir(tmp_path, "k2", "autoawq", 0.03)
    facts: dict = {}
    lines = section(mine, {"awq": other, "same": mine}, facts)
    table = facts["quantize_backends"]
    assert list(table) == ["this run", "awq"]  # a baseline sharing this run's stage: once
    assert table["awq"]["backend"] == "autoawq" and table["awq"]["logprob_gap_mean"] == 0.03
    assert table["this run"]["model"] == "m1" and "## Quantisation backends" in lines
    broken = json.loads((other / MANIFEST).read_text())
    del broken["result"]["summary"]["backend"]
    (other / MANIFEST).write_text(json.dumps(broken))
    with pytest.raises(ResultError, match=r"`summary.backend` is missing"):
        section(mine, {"awq": other}, {})


def _variant_spec(tmp_path: Path, limit: int) -> Path:
    spec = tmp_path / f"limit{limit}.yaml"
    spec.write_text(
        f"base: {TINY}\n"
        "report:\n  baselines:\n    untuned:\n"
        "      - stages=[model,infer,score]\n"
        "      - infer.tensor_parallel_size=1\n"
        "      - infer.distributed_executor_backend=null\n"
        f"      - infer.limit={limit}\n"
    )
    return spec


def test_baselines_are_a_typed_mapping_whose_keys_enter_the_report_key(tmp_path: Path) -> None:
    plan = build_plan(load_spec(TINY), REPO, strict=False)
    report = plan.by_name("report")
    untuned = {"infer": "untuned/infer", "score": "untuned/score"}
    assert report.baselines == {"untuned": untuned}
    assert report.baseline_keys == {"untuned": {s: plan.by_name(n).key for s, n in untuned.items()}}
    assert set(report.inputs) == set(report.inputs.values())  # no role encodes a baseline
    # A change to the baseline alone re-keys its stages and the report, nothing else.
    a = build_plan(load_spec(_variant_spec(tmp_path, 5)), REPO, strict=False)
    b = build_plan(load_spec(_variant_spec(tmp_path, 6)), REPO, strict=False)
    changed = {st.name for st in a.stages if st.key != b.by_name(st.name).key}
    assert changed == {"untuned/infer", "untuned/score", "report"}
    history = {st.name: st.record() for st in a.stages}
    why = [r["detail"] for r in reasons(b, history)["report"] if r["kind"] == "upstream changed"]
    assert why == [
        "untuned/infer (spec changed: infer.limit)",
        "untuned/score (spec changed: infer.limit)",
    ]


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.engine
def test_the_pipelines_stages_read_back_typed(tiny_cpu_pipeline: dict) -> None:
    runs = tiny_cpu_pipeline["runs"]
    first = sorted(f for f in runs.glob("runs/tiny_cpu/*Z-*/run.json"))[0]
    dirs = {n: Path(s["dir"]) for n, s in json.loads(first.read_text())["stages"].items()}
    score = stage_result(dirs["score"])
    assert isinstance(score, ScoreResult) and score.summary.parser == "official"
    assert score.metrics.overall == score.metrics.official_overall
    assert len(score.metrics.per("parse_rate")) == 10  # five task types, two parsers
    infer = stage_result(dirs["infer"], InferResult)
    assert infer.metrics.n_prompts == infer.summary.rows > 0
    assert isinstance(stage_result(dirs["untuned/infer"]), InferResult)
    report = stage_result(dirs["report"])
    assert isinstance(report, ReportResult) and report.metrics.overall == score.metrics.overall
    # The report was handed its baseline's dirs by name and stage, in its context.
    ctx = json.loads((first.parent / "stages" / "report" / "context.json").read_text())
    assert ctx["baselines"] == {
        "untuned": {"infer": str(dirs["untuned/infer"]), "score": str(dirs["untuned/score"])}
    }
    assert "untuned/score" not in ctx["upstream"]
