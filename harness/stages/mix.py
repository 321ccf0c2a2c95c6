"""The ``mix`` stage: the training mix in ECInstruct format.

Reads ``data.mix`` (sources, weights, caps, held-out fraction, seed; the contents of every
source ``path`` enter the key) and ``eval.data`` (for the contamination check), and
optionally the ``synthesize`` stage's examples (``kind: synthetic``).

Writes ``train.jsonl`` and ``heldout.jsonl`` (one ECInstruct object per line: ``instruction,
input, options, output, task, task_type``), ``heldout_shopbench.jsonl`` (the held-out items
that have a ShopBench dev-format form, for evaluating the tune), ``task_stats.jsonl`` and
``stats.json`` (per-task counts, lengths and multiple-choice answer positions).
"""

from __future__ import annotations

from pathlib import Path

from harness.atomic import write_json, write_jsonl
from harness.core.artifacts import EXAMPLES, MIX
from harness.core.stage import (
    SpecSlice,
    StageContext,
    StageMetrics,
    StageResult,
    StageSummary,
    read,
    stage,
)
from harness.spec.schema import MixConfig, SynthesisConfig


def _catalogue(configured: str | None) -> str:
    """The task catalogue the mix maps imported tasks with (the synthesis one, or its default)."""
    return (
        configured if configured is not None else SynthesisConfig.model_fields["catalogue"].default
    )


class MixSlice(SpecSlice):
    """What ``mix`` reads: its section, the eval data (contamination check) and the task
    catalogue imported tasks map through."""

    mix: MixConfig = read("data.mix")
    eval_data: str | None = read("eval.data")
    catalogue: str | None = read("data.synthesis.catalogue")


class MixMetrics(StageMetrics):
    """Rows in the mix and held out, contaminated rows dropped, tasks; per task the extra
    metric ``train/<task>``."""

    train: float
    heldout: float
    heldout_shopbench: float
    contaminated: float
    tasks: float
    mc_answer_position_max_share: float | None = None


class MixSummary(StageSummary):
    """Row counts and the sources mixed."""

    train: int
    heldout: int


class MixResult(StageResult):
    """What ``mix`` reports."""

    metrics: MixMetrics
    summary: MixSummary


@stage(
    name="mix",
    section="data.mix",
    version="2",
    derived_files={"catalogue": lambda slice_: _catalogue(slice_["data.synthesis.catalogue"])},
    optional_inputs={"synthetic": ("synthesize",)},
    outputs=(MIX,),
)
def run(ctx: StageContext, spec: MixSlice) -> MixResult:
    """Build and write the mix."""
    from harness.data.catalogue import load_catalogue
    from harness.data.mix import build_mix, ec_row, load_source
    from harness.shopbench.data import load_eval_data

    cfg = spec.mix
    catalogue_dir = ctx.path(_catalogue(spec.catalogue))
    catalogue = load_catalogue(catalogue_dir) if catalogue_dir.is_dir() else None
    skipped: list[str] = []
    loaded = [
        (
            src,
            load_source(
                src,
                root=ctx.root,
                synthetic=EXAMPLES.file(ctx.inputs["synthetic"])
                if "synthetic" in ctx.inputs
                else None,
                catalogue=catalogue,
                skipped=skipped,
            ),
        )
        for src in cfg.sources
    ]
    eval_path = spec.eval_data
    eval_prompts = None
    if eval_path:
        eval_prompts = [r.input_field for r in load_eval_data(ctx.path(Path(eval_path)))]
    result = build_mix(loaded, cfg, eval_prompts)

    write_jsonl(MIX.train(ctx.out), [ec_row(it) for it in result.train])
    write_jsonl(MIX.heldout(ctx.out), [ec_row(it) for it in result.heldout])
    write_jsonl(
        MIX.heldout_shopbench(ctx.out), [it.dev for it in result.heldout if it.dev is not None]
    )
    tasks = result.stats["tasks"]
    rows = [
        {
            "task": t,
            "task_type": st["task_type"],
            "train": st["train"],
            "heldout": st["heldout"],
            "input_chars_mean": st.get("input_chars_mean"),
            "answer_positions": st.get("answer_positions"),
        }
        for t, st in tasks.items()
    ]
    write_jsonl(ctx.out / "task_stats.jsonl", rows)
    stats = {**result.stats, "skipped_rows": len(skipped), "skipped_sample": skipped[:20]}
    write_json(ctx.out / "stats.json", stats)
    shares = [
        st["answer_position_max_share"]
        for st in tasks.values()
        if "answer_position_max_share" in st
    ]
    metrics = {
        "train": float(len(result.train)),
        "heldout": float(len(result.heldout)),
        "heldout_shopbench": float(sum(it.dev is not None for it in result.heldout)),
        "contaminated": float(len(result.contaminated)),
        "tasks": float(len(tasks)),
    }
    if shares:
        metrics["mc_answer_position_max_share"] = max(shares)
    metrics.update({f"train/{t}": float(st["train"]) for t, st in tasks.items()})
    return MixResult(
        metrics=MixMetrics.model_validate(metrics),
        tables={"task_stats": "task_stats.jsonl"},
        summary=MixSummary.model_validate(
            {
                "train": len(result.train),
                "heldout": len(result.heldout),
                "sources": result.stats["sources"],
                "contamination_checked": result.stats["contamination_checked"],
            }
        ),
    )
