"""The ``finetune`` stage: LoRA SFT on the training mix, merged into 16-bit weights.

Backends (``finetune.backend``): ``unsloth`` on a CUDA GPU (4-bit base, unsloth's merged save),
``trl`` anywhere (transformers + peft + trl; fp32 on CPU), ``auto`` picks unsloth when a GPU and
unsloth are present. The work is :func:`harness.training.pipeline.finetune`; checkpoints live
in ``.resume-<key>`` beside the stage's temporary dir, so a killed run resumes.

``finetune.merge`` can ask for a weight-space merge instead of the plain one (the 1st-place
KDD Cup 2024 recipe): one run per seed of ``average_seeds`` and/or the adapters of the steps
of ``average_checkpoints``, their weight deltas averaged, then WiSE-FT with the base by
``wise_ft_theta`` (:mod:`harness.training.weight_space`). The table ``weight_deltas`` and
``summary.merge`` record the sources, θ and per-tensor ``max |W_merged − W_base|``.
"""

from __future__ import annotations

from pathlib import Path

from harness.artifacts import MIX, MODEL
from harness.spec.schema import FinetuneConfig
from harness.stages.base import StageContext, StageResult, stage


def resume_dir(ctx: StageContext) -> Path:
    """Where a stage run keeps its checkpoints: beside its temporary output dir."""
    return ctx.out.parent / f".resume-{ctx.key}"


@stage(
    name="finetune",
    section="finetune",
    reads=("finetune", "prompts.system", "model.trust_remote_code"),
    inputs={"model": ("model",), "data": ("mix",)},
    outputs=(MODEL,),
    envs=("train",),
    code=("harness.training", "harness.shopbench.types", "harness.jsonl"),
)
def run(ctx: StageContext, callbacks: tuple = ()) -> StageResult:
    """Fine-tune the upstream model on the upstream mix."""
    from harness.training.pipeline import finetune

    data = ctx.inputs["data"]
    outcome = finetune(
        MODEL.dir(ctx.inputs["model"]),
        MIX.train(data),
        MIX.heldout(data),
        ctx.section("finetune", FinetuneConfig),
        ctx.out,
        resume_dir(ctx),
        system=ctx.value("prompts.system"),
        trust_remote_code=bool(ctx.value("model.trust_remote_code")),
        callbacks=callbacks,
    )
    return StageResult(
        metrics=outcome.metrics,
        series=outcome.series,
        images=outcome.images,
        tables=outcome.tables,
        summary=outcome.summary,
    )
