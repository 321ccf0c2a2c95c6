"""The ``mmlu_infer`` stage: a model's raw answers to Shopping MMLU, prompted as the official
evaluation scripts prompt it.

Takes the model from quantize, else pad, else finetune, else model, like ``infer``, and the
release named by ``shopping_mmlu.data``. ``mode: skill`` answers the ``skills/`` files (the
plain system sentence then the input; 1 new token for multiple choice, 100 for the rest);
``mode: task`` the task files (per-type formatting, caps 4/15/20/20/128, optionally the
task-specific system prompt and letter choices). Prompts go to the engine as text without a
chat template (the official scripts tokenize the bare prompt), decoding is greedy.

Writes ``mmlu_predictions.jsonl``: one object per question, files in release order and rows
in file order (``file``, ``folder``, ``index``, ``line``, ``task_type``, ``prediction``,
``prompt_tokens``, ``output_tokens``, ``finish_reason``, ``latency_s``). Metrics: throughput
and latency, as ``infer`` reports them.
"""

from __future__ import annotations

from typing import Any, Literal

from harness.atomic import write_jsonl
from harness.core.artifacts import MMLU_PREDICTIONS, MODEL
from harness.core.stage import (
    VLLM_PLUGINS,
    StageContext,
    StageResult,
    StageSummary,
    read,
    stage,
)
from harness.errors import HarnessError
from harness.stages.infer import TOKENIZER_IMPORTS, GenerationMetrics, ServingSlice

# Folder of a task file -> the harness's task type (requests are grouped by it).
FOLDER_TASK_TYPE = {
    "multiple_choice": "multiple-choice",
    "retrieval": "retrieval",
    "ranking": "ranking",
    "named_entity_recognition": "named_entity_recognition",
    "generation": "generation",
}


class MMLUInferSlice(ServingSlice):
    """What ``mmlu_infer`` reads: only the ``shopping_mmlu`` fields that shape the answers (a
    scoring option re-runs ``mmlu_score`` alone), the engine settings and the cluster."""

    data: str = read("shopping_mmlu.data")
    mode: Literal["skill", "task"] = read("shopping_mmlu.mode")
    task_specific_prompt: bool = read("shopping_mmlu.task_specific_prompt")
    letter_choices: bool = read("shopping_mmlu.letter_choices")
    multi_choice_tokens: int = read("shopping_mmlu.multi_choice_tokens")
    files: list[str] | None = read("shopping_mmlu.files")
    limit_per_file: int | None = read("shopping_mmlu.limit_per_file")


class MMLUInferMetrics(GenerationMetrics):
    """Throughput of the Shopping MMLU generation."""


class MMLUInferSummary(StageSummary):
    """The engine that ran, the evaluation mode and the questions asked."""

    engine: str
    engine_requested: str
    mode: str
    rows: int


class MMLUInferResult(StageResult):
    """What ``mmlu_infer`` reports."""

    metrics: MMLUInferMetrics
    summary: MMLUInferSummary


@stage(
    name="mmlu_infer",
    section="shopping_mmlu",
    inputs={"model": ("quantize", "pad", "finetune", "model")},
    outputs=(MMLU_PREDICTIONS,),
    envs=("serve",),
    code=VLLM_PLUGINS,
    serves=True,
    warm=TOKENIZER_IMPORTS,
)
def run(ctx: StageContext, cfg: MMLUInferSlice) -> MMLUInferResult:
    """Answer every question of the evaluated Shopping MMLU files."""
    from harness.inference.decoding import load_tokenizer
    from harness.inference.engines.base import EngineSpec, GenRequest, resolve_engine
    from harness.inference.replicas import serve_requests
    from harness.inference.runner import budget
    from harness.inference.validate import check_servable
    from harness.openai_client import default_cache_dir
    from harness.shopbench.mmlu.data import build_prompt, evaluated_files, max_new_tokens
    from harness.spec.schema import DecodingParams

    requested = cfg.infer
    infer = requested.model_copy(update={"engine": resolve_engine(requested)})
    cluster = cfg.cluster
    trust = cfg.trust_remote_code
    mdir = MODEL.dir(ctx.inputs["model"])
    release = evaluated_files(ctx.path(cfg.data), cfg.mode, cfg.files, cfg.limit_per_file)
    files = list(release)
    if infer.engine != "openai":
        check_servable(mdir, infer)
    tokenizer = load_tokenizer(mdir, trust) if infer.engine != "openai" else None

    requests: list[GenRequest] = []
    where: list[tuple[Any, Any, str]] = []
    params: dict[int, DecodingParams] = {}
    for f in files:
        for row in f.rows:
            text = build_prompt(
                f,
                row.index,
                task_specific_prompt=cfg.task_specific_prompt,
                letter_choices=cfg.letter_choices,
            )
            cap = max_new_tokens(f, row.index, multi_choice_tokens=cfg.multi_choice_tokens)
            task_type = row.task_type if f.is_skill else FOLDER_TASK_TYPE[f.folder]
            ids = tuple(tokenizer(text)["input_ids"]) if tokenizer is not None else None
            if ids is not None and len(ids) + cap > infer.max_model_len:
                raise HarnessError(
                    f"{f.source} line {row.line}: prompt of {len(ids)} tokens plus "
                    f"{cap} new tokens exceeds infer.max_model_len {infer.max_model_len}"
                )
            n = len(requests)
            requests.append(
                GenRequest(
                    index=n,
                    task_type=str(task_type),
                    text=text,
                    token_ids=ids,
                    messages=({"role": "user", "content": text},),
                    params=params.setdefault(cap, DecodingParams(max_tokens=cap)),
                    seed=infer.seed + n,
                )
            )
            where.append((f, row, str(task_type)))
    if not requests:
        raise HarnessError(f"{cfg.data}: the evaluated files hold no questions")

    engine_spec = EngineSpec(
        infer=infer,
        model_dir=str(mdir),
        trust_remote_code=trust,
        chat=False,
        request_cache=str(default_cache_dir(ctx.out)) if infer.engine == "openai" else None,
    )
    results, stats, start_s, _ = serve_requests(engine_spec, cluster, requests)

    write_jsonl(
        MMLU_PREDICTIONS.file(ctx.out),
        (
            {
                "file": f.name,
                "folder": f.folder,
                "index": row.index,
                "line": row.line,
                "task_type": task_type,
                "prediction": res.text,
                "prompt_tokens": res.prompt_tokens,
                "output_tokens": res.output_tokens,
                "finish_reason": res.finish_reason,
                "latency_s": round(res.latency_s, 6),
            }
            for (f, row, task_type), res in zip(where, results, strict=True)
        ),
    )
    metrics = stats.metrics()
    metrics["engine_start_s"] = start_s
    return MMLUInferResult(
        metrics=MMLUInferMetrics.model_validate(metrics),
        tables={"mmlu_predictions": "mmlu_predictions.jsonl"},
        summary=MMLUInferSummary.model_validate(
            {
                "engine": infer.engine,
                "engine_requested": requested.engine,
                "model_dir": str(mdir),
                "mode": cfg.mode,
                "files": {f.name: len(f.rows) for f in files},
                "rows": len(requests),
                "budget": budget(stats, start_s),
            }
        ),
    )
