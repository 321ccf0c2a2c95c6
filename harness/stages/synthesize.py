"""The ``synthesize`` stage: generate ShopBench-format training examples from source records.

Reads ``data.sources`` (products, categories, reviews, few-shot examples; their contents
enter the key) and ``data.synthesis``. The ``template`` generator is offline and
deterministic; ``openai`` sends the catalogue's prompts (``experiments/prompts/synth``) to
an OpenAI-compatible endpoint through a request cache under ``<runs root>/cache/openai``
(``$HARNESS_SYNTH_CACHE`` overrides), so a re-run after a crash re-sends nothing that
was answered.

Writes ``examples.jsonl`` (dev format + ``meta``), ``rejected.jsonl`` (``reason``,
``detail`` and the example or request), ``task_stats.jsonl`` and ``stats.json``.
"""

from __future__ import annotations

from pathlib import Path

from harness.atomic import write_json, write_jsonl
from harness.core.artifacts import EXAMPLES
from harness.core.stage import (
    SpecSlice,
    StageContext,
    StageMetrics,
    StageResult,
    StageSummary,
    read,
    stage,
)
from harness.spec.schema import SourcesConfig, SynthesisConfig


class SynthesizeSlice(SpecSlice):
    """What ``synthesize`` reads."""

    sources: SourcesConfig = read("data.sources")
    synthesis: SynthesisConfig = read("data.synthesis")


class SynthesizeMetrics(StageMetrics):
    """Examples written; the extra metrics ``examples/<task>``, ``rejected/<reason>`` and,
    for the ``openai`` generator, its usage and cost."""

    examples: float


class SynthesizeSummary(StageSummary):
    """Examples written and rejected."""

    examples: int
    rejected: int


class SynthesizeResult(StageResult):
    """What ``synthesize`` reports."""

    metrics: SynthesizeMetrics
    summary: SynthesizeSummary


@stage(
    name="synthesize",
    section="data.synthesis",
    outputs=(EXAMPLES,),
)
def run(ctx: StageContext, spec: SynthesizeSlice) -> SynthesizeResult:
    """Generate, clean and write the synthetic examples."""
    from harness.data.catalogue import load_catalogue
    from harness.data.errors import SourceError
    from harness.data.sources import load_sources
    from harness.data.synthesize import load_few_shot, synthesize
    from harness.openai_client import default_cache_dir

    src, cfg = spec.sources, spec.synthesis

    def resolve(p: str | None) -> Path | None:
        return ctx.path(p) if p else None

    sources = load_sources(
        resolve(src.products), resolve(src.categories), resolve(src.reviews), cfg.locales
    )
    catalogue = load_catalogue(ctx.path(cfg.catalogue))
    few_shot = load_few_shot(resolve(src.examples)) if cfg.generator == "openai" else {}
    cache_dir = default_cache_dir(ctx.out) if cfg.generator == "openai" else None
    result = synthesize(sources, catalogue, cfg, few_shot=few_shot, cache_dir=cache_dir)
    if not result.examples:
        raise SourceError(
            "synthesis produced no examples; rejections per reason: "
            f"{result.stats.get('rejected_per_reason')}"
        )
    write_jsonl(EXAMPLES.file(ctx.out), result.examples)
    write_jsonl(EXAMPLES.file(ctx.out, "rejected.jsonl"), result.rejected)
    per_task = result.stats["per_task"]
    rejected = result.stats["rejected_per_task"]
    task_rows = [
        {"task": t, "examples": n, "rejected": rejected.get(t, 0)} for t, n in per_task.items()
    ]
    write_jsonl(ctx.out / "task_stats.jsonl", task_rows)
    write_json(ctx.out / "stats.json", result.stats)
    return SynthesizeResult(
        metrics=SynthesizeMetrics.model_validate(result.metrics),
        tables={"task_stats": "task_stats.jsonl", "rejected": "rejected.jsonl"},
        summary=SynthesizeSummary.model_validate(
            {
                k: result.stats[k]
                for k in ("generator", "examples", "rejected", "rejected_per_reason")
                if k in result.stats
            }
        ),
    )
