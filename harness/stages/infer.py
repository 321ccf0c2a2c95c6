"""The ``infer`` stage: raw model outputs for every evaluation row.

Takes the model from quantize, else pad, else finetune, else model; routes test-format rows
(every row with ``infer.route: all``); builds prompts (non-MC suffix, the ``prompts.variant``
template set, the chat template and system prompt); applies per-task decoding — logit edits
by token text resolved with the model's tokenizer, the sentence cut — and, with
``infer.constrained``, output constraints; runs the configured engine (``vllm``, ``transformers`` or ``openai``; Ray
replicas when ``infer.replicas > 1``; ``infer.fallback_engine`` when vLLM cannot be imported)
with requests grouped by task type.

Writes ``predictions.jsonl`` (one object per evaluation row, data order: ``prediction``,
``task_type``, ``task_name``, ``prompt_variant``, ``prompt_tokens``, ``output_tokens``,
``finish_reason``, plus ``routed`` and ``latency_s``) and ``requests.jsonl`` (the prompt text
each row was sent, and its chat turns: ``messages``). Metrics: throughput and latency; the
summary compares the run time with Track 4's budget, names the engine that ran (``engine``; ``engine_requested`` is
``infer.engine``) and gives the token ids each task type's logit edits resolved to
(``token_edits``). Parsing is the score stage's: a parser fix re-runs score, not inference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import write_jsonl
from harness.core.artifacts import MODEL, PREDICTIONS
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
from harness.spec.schema import (
    ClusterConfig,
    DecodingConfig,
    EvalConfig,
    InferConfig,
    PromptsConfig,
)

if TYPE_CHECKING:
    from harness.inference.engines.base import EngineSpec


def _variant_file(slice_: dict[str, Any]) -> str:
    """The template file of ``prompts.variant``: its content is part of the cache key."""
    from harness.inference.prompts import PROMPTS_DIR

    return str(PROMPTS_DIR / f"{slice_['prompts']['variant']}.yaml")


class ServingSlice(SpecSlice):
    """What a stage that serves a model reads besides its own section: the engine settings,
    the cluster and whether the model's own code may run."""

    infer: InferConfig = read("infer")
    cluster: ClusterConfig = read("cluster")
    trust_remote_code: bool = read("model.trust_remote_code")


class InferSlice(ServingSlice):
    """What ``infer`` reads."""

    prompts: PromptsConfig = read("prompts")
    decoding: DecodingConfig = read("decoding")
    eval: EvalConfig = read("eval")


class GenerationMetrics(StageMetrics):
    """Throughput of a stage that generates (seconds, counts as floats)."""

    n_prompts: float
    wall_s: float
    """Generation wall time, the engine's start excluded."""
    prompts_per_s: float
    output_tokens_per_s: float
    output_tokens: float
    engine_start_s: float
    """The engine's start (with a shared engine: this stage's wait for it)."""


class InferMetrics(GenerationMetrics):
    """Throughput, latency and engine facts of an ``infer`` run."""

    prompt_tokens: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    sentence_cut_rows: float
    engine_shared: float
    """1.0 when the engine was a run's or a sweep's shared one."""
    constrained: float
    routed_rows: float


class InferSummary(StageSummary):
    """The engine that ran (``engine``; ``engine_requested`` is ``infer.engine``) and the
    weights it served; the rest (budget, token edits, replicas) is free-form."""

    engine: str
    engine_requested: str
    engine_weights: str | None = None
    model_dir: str
    rows: int


class InferResult(StageResult):
    """What ``infer`` reports."""

    metrics: InferMetrics
    summary: InferSummary


TOKENIZER_IMPORTS = ("transformers", "transformers.models.auto.tokenization_auto")
"""What loading a tokenizer imports (seconds): a warm stage worker does it once."""


def engine_spec(spec: InferSlice, inputs: Mapping[str, Path], out: Path) -> EngineSpec:
    """The engine the stage serves with, from its slice and input dirs (a sweep starts it
    ahead of its first trial from the same declaration).

    Args:
        spec: The stage's slice.
        inputs: Role -> upstream stage dir (``model``).
        out: The stage's output dir (the ``openai`` engine's request cache goes there).
    """
    from harness.inference.engines.base import EngineSpec, resolve_engine
    from harness.openai_client import default_cache_dir

    infer = spec.infer.model_copy(update={"engine": resolve_engine(spec.infer)})
    return EngineSpec(
        infer=infer,
        model_dir=str(MODEL.dir(inputs["model"])),
        trust_remote_code=spec.trust_remote_code,
        chat=spec.prompts.chat_template,
        request_cache=str(default_cache_dir(out)) if infer.engine == "openai" else None,
    )


@stage(
    name="infer",
    section="eval",
    derived_files={"prompts.variant": _variant_file},
    inputs={"model": ("quantize", "pad", "finetune", "model")},
    outputs=(PREDICTIONS,),
    envs=("serve",),
    code=VLLM_PLUGINS,
    serves=True,
    warm=TOKENIZER_IMPORTS,
    engine=engine_spec,
)
def run(ctx: StageContext, spec: InferSlice) -> InferResult:
    """Generate raw predictions for the evaluation data."""
    from harness.inference.decoding import eos_token_ids, load_tokenizer, resolve_token_edits
    from harness.inference.engine_pool import current_pool
    from harness.inference.engines.base import resolve_engine
    from harness.inference.prompts import load_prompt_set, variant_path
    from harness.inference.replicas import serve_requests
    from harness.inference.runner import (
        PromptBuilder,
        budget,
        build_requests,
        to_rows,
    )
    from harness.inference.validate import check_servable
    from harness.shopbench.data import load_shopbench

    requested = spec.infer
    infer = requested.model_copy(update={"engine": resolve_engine(requested)})
    prompts, decoding, cluster, eval_cfg = spec.prompts, spec.decoding, spec.cluster, spec.eval
    trust = spec.trust_remote_code
    mdir = MODEL.dir(ctx.inputs["model"])

    records = load_shopbench(ctx.path(eval_cfg.data))
    if infer.limit is not None:
        records = records[: infer.limit]
    rows = to_rows(records, route_all=infer.route == "all", keyphrase_as_ner=infer.keyphrase_as_ner)
    prompt_set = load_prompt_set(prompts.variant, ctx.root)
    if infer.engine != "openai":
        check_servable(mdir, infer)  # before any engine or Ray start
    pool = current_pool()
    tokenizer = load_tokenizer(
        mdir,
        trust,
        required=infer.engine != "openai",
        class_cache=pool.root if pool is not None else None,
    )
    # Token texts resolve before any engine starts: a text the vocabulary lacks fails here.
    edits = resolve_token_edits(
        decoding, tokenizer, eos_token_ids(tokenizer, mdir) if tokenizer is not None else ()
    )
    builder = PromptBuilder(prompts, prompt_set, tokenizer)
    requests, built = build_requests(
        rows,
        builder,
        decoding,
        constrained=infer.constrained,
        seed=infer.seed,
        max_model_len=infer.max_model_len if infer.engine != "openai" else None,
        edits=edits,
    )

    results, stats, start_s, engine = serve_requests(
        engine_spec(spec, ctx.inputs, ctx.out), cluster, requests
    )

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
    write_jsonl(PREDICTIONS.file(ctx.out), preds)
    write_jsonl(
        PREDICTIONS.file(ctx.out, "requests.jsonl"),
        [
            {
                "index": r.index,
                "task_type": r.task_type,
                "prompt": b.text,
                "messages": list(b.messages),
                "suffixed": b.suffixed,
            }
            for r, b in zip(rows, built, strict=True)
        ],
    )

    metrics = stats.metrics()
    metrics["engine_start_s"] = start_s
    shared = getattr(engine, "shared", None)
    metrics["engine_shared"] = float(shared is not None)
    metrics["constrained"] = float(infer.constrained)
    metrics["routed_rows"] = float(sum(r.routed for r in rows))
    vpath = variant_path(prompt_set.name, ctx.root)
    summary = {
        "engine": infer.engine,
        "engine_requested": requested.engine,
        "engine_weights": getattr(engine, "weights", None),
        "model_dir": str(mdir),
        "prompt_variant": prompt_set.name,
        "prompt_variant_sha256": hashlib.sha256(vpath.read_bytes()).hexdigest(),
        "constrained": infer.constrained,
        "rows": len(rows),
        "rows_per_task_type": {
            t: sum(r.task_type == t for r in rows) for t in sorted({r.task_type for r in rows})
        },
        "suffixed_rows": sum(b.suffixed for b in built),
        # Per task type that edits logits: each token text and the ids it resolved to.
        "token_edits": {t: e.resolved for t, e in edits.items()},
        "sentence_cut_rows": stats.sentence_cut_rows,
        "budget": budget(stats, start_s),
        # With replicas: the Ray node, host and process of each, and the requests it served.
        "replicas": getattr(engine, "placement", None),
        # A sweep's (or a run's) shared engine: its pid, fingerprint, whether this stage
        # started it; engine_start_s is then this stage's wait for it.
        "shared_engine": shared,
    }
    return InferResult(
        metrics=InferMetrics.model_validate(metrics),
        tables={"predictions": "predictions.jsonl"},
        summary=InferSummary.model_validate(summary),
    )
