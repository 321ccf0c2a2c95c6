"""Synthesis end to end: sources -> generator (template or OpenAI-compatible) -> cleaning.

:func:`synthesize` returns the kept examples (ShopBench dev format plus ``meta``), the
rejected ones with their reason, and statistics; the ``synthesize`` stage writes them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.catalogue import Catalogue, TaskSpec, build_messages, parse_reply
from harness.data.clean import clean
from harness.data.errors import GenerationError, SourceError
from harness.data.openai_gen import Generator, Outcome, RequestCache
from harness.data.sources import Sources
from harness.data.template import World, generate_template, template_tasks
from harness.shopbench.data import load_shopbench
from harness.spec.schema import SynthesisConfig

FEW_SHOT = 3


@dataclass
class SynthResult:
    """What synthesis produced."""

    examples: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def load_few_shot(path: str | Path | None) -> dict[str, list[dict[str, Any]]]:
    """Dev-format examples per task name (validated by the ShopBench loader)."""
    if not path:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for r in load_shopbench(path):
        if r.task_name and r.output_field is not None:
            out.setdefault(r.task_name, []).append(
                {"input_field": r.input_field, "output_field": r.output_field}
            )
    return out


def _records(sources: Sources, world: World, task: TaskSpec) -> list[dict[str, Any]]:
    """The source records a task's requests are built from, each with ``id`` and ``locale``."""
    if task.source == "products":
        return [p.to_json() for p in sorted(sources.products, key=lambda p: p.id)]
    if task.source == "reviews":
        out = []
        for r in sorted(sources.reviews, key=lambda r: r.key):
            p = sources.product(r.product_id)
            out.append(
                {
                    "id": r.key,
                    "locale": p.locale if p else None,
                    "product_title": p.title if p else None,
                    "product_type": world.type_name(p, "en") if p else None,
                    "rating": r.rating,
                    "title": r.title,
                    "text": r.text,
                    "aspects": [a.aspect for a in r.aspects],
                }
            )
        return out
    return [
        {
            "id": c.category,
            "locale": None,
            "description": c.description,
            "attributes": list(c.attributes),
            "complements": list(c.complements),
        }
        for c in sorted(sources.categories, key=lambda c: c.category)
    ]


@dataclass(frozen=True)
class PlannedRequest:
    """One generation request: its task, the records it covers and its messages."""

    task: TaskSpec
    records: tuple[dict[str, Any], ...]
    messages: list[dict[str, str]]


def plan_requests(
    sources: Sources, catalogue: Catalogue, cfg: SynthesisConfig, few_shot: dict[str, list]
) -> list[PlannedRequest]:
    """The requests of an OpenAI-generator run: per task, ``products_per_task`` seeded
    records in batches of the task's ``batch``.

    Raises:
        SourceError: A task lacks its source records or its few-shot examples.
    """
    world = World(sources)
    out: list[PlannedRequest] = []
    for task in catalogue.select(cfg.tasks):
        records = _records(sources, world, task)
        if not records:
            raise SourceError(f"task {task.name} needs `data.sources.{task.source}`")
        shots = few_shot.get(task.name, [])[:FEW_SHOT]
        if not shots:
            raise SourceError(
                f"task {task.name}: no few-shot example of it in `data.sources.examples`"
            )
        rng = random.Random(f"{cfg.seed}:{task.name}")
        chosen = rng.sample(records, min(cfg.products_per_task, len(records)))
        for i in range(0, len(chosen), task.batch):
            batch = chosen[i : i + task.batch]
            msgs = build_messages(catalogue, task, shots, batch, cfg.examples_per_product)
            out.append(PlannedRequest(task, tuple(batch), msgs))
    return out


def rows_from_reply(
    req: PlannedRequest, items: list[dict[str, Any]], n: int, request_key: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Dev-format rows from a parsed reply, and the items rejected before cleaning."""
    by_id = {str(r["id"]): r for r in req.records}
    taken: Counter[str] = Counter()
    rows, rejected = [], []
    t = req.task
    for item in items:
        rid = str(item.get("id", ""))
        if rid not in by_id:
            rejected.append(
                {
                    "reason": "unknown_record",
                    "detail": f"id {rid!r} not in the batch",
                    "example": item,
                }
            )
            continue
        if taken[rid] >= n:
            rejected.append(
                {
                    "reason": "surplus",
                    "detail": f"more than {n} examples for {rid}",
                    "example": item,
                }
            )
            continue
        taken[rid] += 1
        rows.append(
            {
                "input_field": item.get("input_field"),
                "output_field": item.get("output_field"),
                "task_name": t.name,
                "task_type": t.task_type,
                "metric": t.metric,
                "is_multiple_choice": t.is_multiple_choice,
                "track": t.track,
                "meta": {
                    "generator": "openai",
                    "locale": by_id[rid].get("locale"),
                    "source_ids": [rid],
                    "request": request_key,
                },
            }
        )
    return rows, rejected


def _stats(result: SynthResult, tasks: list[str]) -> None:
    per_task = Counter(r["task_name"] for r in result.examples)
    reasons = Counter(r["reason"] for r in result.rejected)
    rejected_per_task: Counter[str] = Counter(
        (r.get("example") or {}).get("task_name") or r.get("task") or "?" for r in result.rejected
    )
    result.stats.update(
        {
            "examples": len(result.examples),
            "rejected": len(result.rejected),
            "per_task": {t: per_task.get(t, 0) for t in tasks},
            "rejected_per_task": dict(sorted(rejected_per_task.items())),
            "rejected_per_reason": dict(sorted(reasons.items())),
        }
    )
    result.metrics.update({"examples": float(len(result.examples))})
    result.metrics.update({f"examples/{t}": float(per_task.get(t, 0)) for t in tasks})
    result.metrics.update({f"rejected/{k}": float(v) for k, v in reasons.items()})


def synthesize(
    sources: Sources,
    catalogue: Catalogue,
    cfg: SynthesisConfig,
    *,
    few_shot: dict[str, list] | None = None,
    cache_dir: Path | None = None,
) -> SynthResult:
    """Generate, clean and count examples.

    Args:
        sources: Source records (already locale-filtered).
        catalogue: The task catalogue.
        cfg: ``data.synthesis``.
        few_shot: Dev-format examples per task (needed by the OpenAI generator).
        cache_dir: Request cache directory (needed by the OpenAI generator).

    Returns:
        Examples, rejections, statistics and metrics.
    """
    result = SynthResult()
    if cfg.generator == "template":
        rows = generate_template(
            sources,
            catalogue,
            cfg.tasks,
            cfg.products_per_task,
            cfg.examples_per_product,
            cfg.seed,
        )
        cleaned = clean(rows)
        result.examples, result.rejected = cleaned.kept, cleaned.rejected
        tasks = [t.name for t in template_tasks(catalogue, cfg.tasks)]
        result.stats["generator"] = "template"
        _stats(result, tasks)
        return result
    if cache_dir is None:
        raise GenerationError("the OpenAI generator needs a cache directory")
    requests = plan_requests(sources, catalogue, cfg, few_shot or {})
    gen = Generator(cfg.openai, RequestCache(cache_dir), seed=cfg.seed)
    outcomes: list[Outcome] = gen.run([r.messages for r in requests], parse_reply)
    candidates: list[dict[str, Any]] = []
    for req, out in zip(requests, outcomes, strict=True):
        request_info = {"task": req.task.name, "records": [str(r["id"]) for r in req.records]}
        if out.parsed is None:
            reason = (out.error or "malformed_content").split(":", 1)
            result.rejected.append(
                {
                    "reason": reason[0],
                    "detail": reason[1].strip() if len(reason) > 1 else "",
                    "task": req.task.name,
                    "request": request_info,
                    "attempts": out.attempts,
                    "content": (out.content or "")[:500],
                }
            )
            continue
        rows, pre = rows_from_reply(
            req, out.parsed, cfg.examples_per_product, out.keys[out.attempts - 1]
        )
        candidates += rows
        result.rejected += pre
    cleaned = clean(candidates)
    result.examples = cleaned.kept
    result.rejected += cleaned.rejected
    tasks = [t.name for t in catalogue.select(cfg.tasks)]
    result.stats.update(
        {
            "generator": "openai",
            "model": cfg.openai.model,
            "base_url": gen.base_url,
            "requests": len(requests),
            "cache_dir": str(cache_dir),
            "usage": gen.usage.metrics(cfg.openai),
        }
    )
    _stats(result, tasks)
    result.metrics.update(gen.usage.metrics(cfg.openai))
    return result
