"""The infer stage through the harness executor: plan, stage subprocess, predictions contract,
parse-rate metrics with and without constraints, the Track-4 budget, caching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.executor import execute
from harness.core.plan import build_plan
from harness.errors import SpecError
from harness.shopbench.data import load_shopbench
from harness.shopbench.parsers import parse_rates
from harness.spec import load_spec
from tests.support.infer import SUFFIX, SYSTEM
from tests.support.paths import EVAL, EVAL_TEST_FORMAT, INFER_DATA, REPO

CONTRACT = {
    "prediction",
    "task_type",
    "task_name",
    "prompt_variant",
    "prompt_tokens",
    "output_tokens",
    "finish_reason",
}


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "infer_stage.yaml"
    path.write_text(
        f"""
name: infer_stage_test
stages: [model, infer]
model:
  source: tiny
  tiny:
    hidden_size: 128
    intermediate_size: 256
    num_attention_heads: 4
    num_key_value_heads: 2
    corpus: [{INFER_DATA / "corpus.txt"}]
infer:
  engine: transformers
  dtype: float32
  batch_size: 8
  max_model_len: 1024
  constrained: true
prompts:
  system: {SYSTEM}
  variant: taskwise
  non_mc_suffix: "{SUFFIX}"
decoding:
  generation: {{max_tokens: 12}}
eval:
  data: {EVAL_TEST_FORMAT}
tracking:
  mode: disabled
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture()
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


@pytest.mark.slow
def test_infer_stage_constrained_and_free(tmp_path: Path, runs_root: Path) -> None:
    spec = _spec(tmp_path)
    dev = load_shopbench(EVAL)
    on = execute(build_plan(load_spec(spec), REPO))
    infer_on = next(o for o in on.outcomes if o.name == "infer")
    assert not infer_on.cached
    preds = [
        json.loads(line)
        for line in (infer_on.dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(preds) == len(dev)
    for p, rec in zip(preds, dev, strict=True):
        assert set(p) >= CONTRACT
        assert isinstance(p["prediction"], str)
        assert p["task_type"] == rec.task_type  # routed from the test-format prompt
        assert p["task_name"] is None and p["routed"] is True
        assert p["prompt_variant"] == "taskwise"
        assert p["prompt_tokens"] > 0 and p["output_tokens"] > 0
        assert p["finish_reason"] in ("stop", "length")
    m = infer_on.result.metrics
    # Parse rates are the score stage's (a parser change must not re-key inference).
    assert not [k for k in m if k.startswith("parse_rate")]
    rates = parse_rates([p["task_type"] for p in preds], [p["prediction"] for p in preds])
    for t in ("multiple-choice", "ranking", "retrieval", "constrained_types"):
        assert rates[t] == 1.0, t
    assert m["constrained"] == 1.0 and m["routed_rows"] == len(dev)
    assert m["n_prompts"] == len(dev) and m["prompts_per_s"] > 0 and m["output_tokens_per_s"] > 0
    assert 0 < m["latency_p50_s"] <= m["latency_max_s"]
    b = infer_on.result.summary["budget"]
    assert b["budget_total_s"] == 1200 and b["budget_per_sample_s"] == 10.0
    assert b["budget_hardware"] == "4x NVIDIA T4"
    assert b["total_s"] >= b["generation_s"] > 0
    assert b["within_per_sample_budget"] == (b["max_latency_s"] <= 10.0)
    summary = infer_on.result.summary
    assert summary["suffixed_rows"] == sum(r.task_type != "multiple-choice" for r in dev)
    assert summary["rows_per_task_type"]["ranking"] == 4

    # Same spec again: everything cached. Constraints off: only infer re-runs.
    again = execute(build_plan(load_spec(spec), REPO))
    assert all(o.cached for o in again.outcomes)
    off = execute(build_plan(load_spec(spec, ["infer.constrained=false"]), REPO))
    model_off, infer_off = off.outcomes
    assert model_off.cached and not infer_off.cached
    assert infer_off.result.metrics["constrained"] == 0.0
    preds_off = [
        json.loads(line) for line in (infer_off.dir / "predictions.jsonl").read_text().splitlines()
    ]
    rates_off = parse_rates(
        [p["task_type"] for p in preds_off], [p["prediction"] for p in preds_off]
    )
    assert rates_off["constrained_types"] < 1.0
    gen_on = [p["prediction"] for p in preds if p["task_type"] == "generation"]
    gen_off = [
        json.loads(line)["prediction"]
        for line in (infer_off.dir / "predictions.jsonl").read_text().splitlines()
        if json.loads(line)["task_type"] == "generation"
    ]
    assert gen_on == gen_off  # generation is never constrained; greedy is deterministic


def test_unservable_tp_size_fails_at_validation(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with pytest.raises(SpecError, match="num_attention_heads 4 is not divisible by tp 3"):
        load_spec(spec, ["infer.engine=vllm", "infer.tensor_parallel_size=3"])
