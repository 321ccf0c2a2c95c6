"""The ``quantize`` stage: AWQ 4-bit quantisation that proves its output.

Before any work it checks the request (4-bit GEMM, a supported architecture, AutoAWQ's shape
limits, and that the quantised model will shard at ``infer.tensor_parallel_size`` with this
group size; otherwise it names the pad target). It then quantises with calibration text from
the spec (a seeded sample of the training mix by default), writes ``model/`` (Hugging Face dir
with ``quantization_config`` and the source's tokenizer and chat template), and fails unless:

* every linear of the architecture was quantised (7 per decoder layer), no more, no fewer;
* the checkpoint is smaller than its source;
* every dequantised linear is close to its source weight (table ``reconstruction.jsonl``);
* vLLM loads it with ``quantization=awq`` at the spec's tensor parallel size and generates.

It also records greedy agreement with the unquantised model on ``quantize.check_prompts``
fixed prompts (``check_generations.jsonl``).
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

from harness.spec.schema import QuantizeConfig
from harness.stages.base import StageContext, StageResult, stage

MAX_NEW_TOKENS = 16


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@stage(
    name="quantize",
    version="1",
    env="quant",
    reads=("quantize", "infer.tensor_parallel_size", "model.trust_remote_code", "prompts.system"),
    files=("quantize.calibration.path",),
    inputs={"model": ("pad", "finetune", "model")},
    optional_inputs={"calibration": ("mix",)},
)
def run(ctx: StageContext) -> StageResult:
    """Quantise the upstream model and verify the result."""
    from harness.quant import QuantizeError
    from harness.quant.checks import precheck
    from harness.stages.model import model_dir

    if ctx.value("quantize") is None:
        raise QuantizeError(
            "the `quantize` stage is listed but the spec has no `quantize:` section"
        )
    cfg = ctx.section("quantize", QuantizeConfig)
    tp = int(ctx.value("infer.tensor_parallel_size"))
    trust = bool(ctx.value("model.trust_remote_code"))
    system = ctx.value("prompts.system")
    src = model_dir(ctx.inputs["model"])
    cfg_file = src / "config.json"
    if not cfg_file.is_file():
        raise QuantizeError(f"{src}: not a Hugging Face model dir (no config.json)")
    config = json.loads(cfg_file.read_text(encoding="utf-8"))
    if cfg.backend != "autoawq":
        raise QuantizeError(
            f"`quantize.backend: {cfg.backend}` is not available: only `autoawq` is implemented"
        )
    facts = precheck(
        config,
        w_bit=cfg.w_bit,
        group_size=cfg.q_group_size,
        version=cfg.version,
        tensor_parallel_size=tp,
        where=cfg_file,
    )
    return _quantize_and_verify(ctx, cfg, src, config, tp, trust, system, facts)


def _quantize_and_verify(
    ctx: StageContext,
    cfg: QuantizeConfig,
    src: Path,
    config: dict[str, Any],
    tp: int,
    trust: bool,
    system: str | None,
    facts: dict[str, Any],
) -> StageResult:
    from transformers import AutoTokenizer

    from harness.envs import detect_platform, python_for
    from harness.quant import verify
    from harness.quant.arch import expected_linear_names
    from harness.quant.autoawq_backend import quantize_autoawq
    from harness.quant.calibration import build_calibration
    from harness.quant.check import VllmJob, agreement, check_prompt_ids, run_vllm_jobs

    tokenizer = AutoTokenizer.from_pretrained(str(src), trust_remote_code=trust)
    cal = cfg.calibration
    mix_dir = ctx.inputs.get("calibration")
    calib = build_calibration(
        tokenizer=tokenizer,
        source=cal.source,
        n_samples=cal.n_samples,
        max_seq_len=cal.max_seq_len,
        seed=cal.seed,
        mix_train=mix_dir / "train.jsonl" if mix_dir is not None else None,
        file_path=ctx.path(cal.path) if cal.path else None,
        system=system,
    )
    out_model = ctx.out / "model"
    records, timing = quantize_autoawq(
        src,
        out_model,
        tokenizer=tokenizer,
        texts=calib.texts,
        max_seq_len=cal.max_seq_len,
        w_bit=cfg.w_bit,
        group_size=cfg.q_group_size,
        zero_point=cfg.zero_point,
        version=cfg.version,
        trust_remote_code=trust,
    )
    want = {
        "quant_method": "awq",
        "bits": cfg.w_bit,
        "group_size": cfg.q_group_size,
        "zero_point": cfg.zero_point,
        "version": cfg.version.lower(),
    }
    verify.finalize_model_dir(src, out_model, want)

    expected = expected_linear_names(config)
    found = verify.quantized_linears(out_model)
    verify.check_linears(found, expected)
    sizes = verify.size_report(src, out_model)
    rows = verify.reconstruction_errors(src, out_model, expected, cfg.q_group_size, records)
    _write_jsonl(ctx.out / "reconstruction.jsonl", rows)
    errors = verify.check_errors(rows)

    # Serving check: the quantised model at the spec's TP size, and the source for agreement.
    python = python_for("serve", detect_platform())
    logs = ctx.run_dir / "stages" / ctx.stage
    n_prompts = cfg.check_prompts or 1
    prompts = check_prompt_ids(tokenizer, system, n_prompts)
    cpu = detect_platform() == "cpu"
    jobs = [VllmJob(out_model, ctx.out / "check" / "quantized.json", tp, "awq")]
    if cfg.check_prompts:
        # On CPU the reference runs at TP 1: one process instead of one per rank, and the
        # tokens do not depend on it (a 72B fp16 reference on GPUs needs the spec's TP).
        jobs.append(VllmJob(src, ctx.out / "check" / "reference.json", 1 if cpu else tp, "none"))
    run = partial(
        run_vllm_jobs,
        prompt_ids=prompts,
        max_tokens=MAX_NEW_TOKENS,
        python=python,
        trust_remote_code=trust,
    )
    t0 = time.perf_counter()
    if cpu:  # both models in one process: one vLLM import fewer
        results = run(jobs, log_file=logs / "vllm_check.log")
    else:  # a fresh process per model: each gets all of the GPUs' memory
        results = [run([j], log_file=logs / f"vllm_{j.out_json.stem}.log")[0] for j in jobs]
    quant = results[0]
    metrics: dict[str, float] = {
        "quantized_linears": float(len(found)),
        "expected_linears": float(len(expected)),
        **sizes,
        **errors,
        "calibration_texts": float(len(calib.texts)),
        "calibration_tokens": float(calib.tokens),
        "calibration_blocks": float(calib.blocks),
        "quantize_s": float(timing["quantize_s"]),
        "vllm_start_s": float(quant["start_s"]),
        "vllm_check_s": time.perf_counter() - t0,
    }
    summary: dict[str, Any] = {
        "source": str(src),
        "backend": "autoawq",
        "quantization_config": want,
        "tensor_parallel_size": tp,
        "model_type": facts["model_type"],
        "calibration": calib.summary(),
        "timing": timing,
        "vllm": {"version": quant["vllm"], "gemm": quant["gemm"], "dtype": quant["dtype"]},
    }
    tables = {"reconstruction": "reconstruction.jsonl"}
    if cfg.check_prompts:
        ref = results[1]
        agree = agreement(ref["tokens"], quant["tokens"])
        metrics["agreement_sequence"] = agree["sequence"]
        metrics["agreement_prefix"] = agree["prefix"]
        _write_jsonl(
            ctx.out / "check_generations.jsonl",
            [
                {
                    "prompt": i,
                    "prompt_tokens": p,
                    "reference_tokens": r,
                    "quantized_tokens": q,
                    "reference_text": rt,
                    "quantized_text": qt,
                    "identical": r == q,
                }
                for i, (p, r, q, rt, qt) in enumerate(
                    zip(
                        prompts,
                        ref["tokens"],
                        quant["tokens"],
                        ref["texts"],
                        quant["texts"],
                        strict=True,
                    )
                )
            ],
        )
        tables["check_generations"] = "check_generations.jsonl"
    return StageResult(metrics=metrics, tables=tables, summary=summary)
