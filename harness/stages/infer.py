"""The ``infer`` stage: raw model outputs for every evaluation row.

Takes the model from quantize, else pad, else finetune, else model; routes test-format rows;
builds prompts (non-MC suffix, the ``prompts.variant`` template set, the chat template and
system prompt); applies per-task decoding and, with ``infer.constrained``, output
constraints; runs the configured engine (``vllm``, ``transformers`` or ``openai``; Ray
replicas when ``infer.replicas > 1``) with requests grouped by task type.

Writes ``predictions.jsonl`` (one object per evaluation row, data order: ``prediction``,
``task_type``, ``task_name``, ``prompt_variant``, ``prompt_tokens``, ``output_tokens``,
``finish_reason``, plus ``routed`` and ``latency_s``) and ``requests.jsonl`` (the prompt text
each row was sent). Metrics: throughput, latency, the official and robust parse rates per
task type; the summary compares the run time with Track 4's budget.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.spec.schema import (
    ClusterConfig,
    DecodingConfig,
    EvalConfig,
    InferConfig,
    PromptsConfig,
)
from harness.stages.base import StageContext, StageResult, stage


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _tokenizer(model_dir: Path, trust_remote_code: bool, required: bool) -> Any | None:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        if required:
            raise HarnessError(f"{model_dir}: cannot load the tokenizer: {e}") from None
        return None


def _variant_file(slice_: dict[str, Any]) -> str:
    """The template file of ``prompts.variant``: its content is part of the cache key."""
    from harness.inference.prompts import PROMPTS_DIR

    return str(PROMPTS_DIR / f"{slice_['prompts']['variant']}.yaml")


@stage(
    name="infer",
    version="1",
    env="serve",
    reads=("infer", "prompts", "decoding", "eval", "cluster", "model.trust_remote_code"),
    files=("eval.data",),
    derived_files={"prompts.variant": _variant_file},
    inputs={"model": ("quantize", "pad", "finetune", "model")},
)
def run(ctx: StageContext) -> StageResult:
    """Generate raw predictions for the evaluation data."""
    from harness.inference.engines.base import EngineSpec, make_engine
    from harness.inference.prompts import load_prompt_set, variant_path
    from harness.inference.replicas import ReplicaPool, init_ray
    from harness.inference.runner import (
        PromptBuilder,
        budget,
        build_requests,
        generate_all,
        parse_rates,
        to_rows,
    )
    from harness.inference.validate import check_servable
    from harness.plan import file_sha256
    from harness.shopbench.data import load_shopbench
    from harness.stages.model import model_dir

    infer = ctx.section("infer", InferConfig)
    prompts = ctx.section("prompts", PromptsConfig)
    decoding = ctx.section("decoding", DecodingConfig)
    cluster = ctx.section("cluster", ClusterConfig)
    if ctx.value("eval") is None:
        raise HarnessError("stage `infer` needs `eval.data` (the rows to run inference on)")
    eval_cfg = ctx.section("eval", EvalConfig)
    trust = bool(ctx.value("model.trust_remote_code"))
    mdir = model_dir(ctx.inputs["model"])

    records = load_shopbench(ctx.path(eval_cfg.data))
    if infer.limit is not None:
        records = records[: infer.limit]
    rows = to_rows(records)
    prompt_set = load_prompt_set(prompts.variant, ctx.root)
    if infer.engine != "openai":
        check_servable(mdir, infer)  # before any engine or Ray start
    tokenizer = _tokenizer(mdir, trust, required=infer.engine != "openai")
    builder = PromptBuilder(prompts, prompt_set, tokenizer)
    requests, built = build_requests(
        rows,
        builder,
        decoding,
        constrained=infer.constrained,
        seed=infer.seed,
        max_model_len=infer.max_model_len if infer.engine != "openai" else None,
    )

    spec = EngineSpec(
        infer=infer, model_dir=str(mdir), trust_remote_code=trust, chat=prompts.chat_template
    )
    # vLLM's Ray executor joins the Ray we start (the spec's cluster, capped, no dashboard).
    own_ray = (
        infer.replicas == 1
        and infer.engine == "vllm"
        and infer.distributed_executor_backend == "ray"
        and init_ray(cluster)
    )
    try:
        t0 = time.perf_counter()
        engine: Any = (
            ReplicaPool(spec, infer.replicas, cluster) if infer.replicas > 1 else make_engine(spec)
        )
        start_s = time.perf_counter() - t0
        try:
            results, stats = generate_all(requests, engine)
        finally:
            engine.close()
    finally:
        if own_ray:
            import ray

            ray.shutdown()

    preds = [
        {
            "prediction": res.text,
            "task_type": row.task_type,
            "task_name": row.task_name,
            "prompt_variant": prompt_set.name,
            "prompt_tokens": res.prompt_tokens,
            "output_tokens": res.output_tokens,
            "finish_reason": res.finish_reason,
            "routed": row.routed,
            "latency_s": round(res.latency_s, 6),
        }
        for row, res in zip(rows, results, strict=True)
    ]
    _write_jsonl(ctx.out / "predictions.jsonl", preds)
    _write_jsonl(
        ctx.out / "requests.jsonl",
        [
            {"index": r.index, "task_type": r.task_type, "prompt": b.text, "suffixed": b.suffixed}
            for r, b in zip(rows, built, strict=True)
        ],
    )

    metrics = stats.metrics()
    metrics["engine_start_s"] = start_s
    metrics["constrained"] = float(infer.constrained)
    metrics["routed_rows"] = float(sum(r.routed for r in rows))
    official = parse_rates(rows, results, "official")
    robust = parse_rates(rows, results, "robust")
    metrics.update({f"parse_rate_official/{k}": v for k, v in official.items()})
    metrics.update({f"parse_rate_robust/{k}": v for k, v in robust.items()})
    vpath = variant_path(prompt_set.name, ctx.root)
    summary = {
        "engine": infer.engine,
        "model_dir": str(mdir),
        "prompt_variant": prompt_set.name,
        "prompt_variant_sha256": file_sha256(vpath),
        "constrained": infer.constrained,
        "rows": len(rows),
        "rows_per_task_type": {
            t: sum(r.task_type == t for r in rows) for t in sorted({r.task_type for r in rows})
        },
        "suffixed_rows": sum(b.suffixed for b in built),
        "parse_rate_official": official,
        "parse_rate_robust": robust,
        "budget": budget(stats, start_s),
    }
    return StageResult(
        metrics=metrics,
        tables={"predictions": "predictions.jsonl"},
        summary=summary,
    )
