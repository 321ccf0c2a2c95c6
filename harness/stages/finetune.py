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

from harness.core.artifacts import MIX, MODEL
from harness.core.stage import (
    SpecSlice,
    StageContext,
    StageMetrics,
    StageResult,
    StageSummary,
    read,
    stage,
)
from harness.spec.schema import FinetuneConfig


def resume_dir(ctx: StageContext) -> Path:
    """Where a stage run keeps its checkpoints: beside its temporary output dir."""
    return ctx.out.parent / f".resume-{ctx.key}"


class FinetuneSlice(SpecSlice):
    """What ``finetune`` reads."""

    finetune: FinetuneConfig = read("finetune")
    system: str | None = read("prompts.system")
    trust_remote_code: bool = read("model.trust_remote_code")


class FinetuneMetrics(StageMetrics):
    """The training loss (first, last, mean of the last ten logged), throughput, run time,
    steps and trainable parameters; ``eval_loss`` with held-out rows; a weight-space merge
    adds its own (``merge_*``, ``wise_ft_theta``, per seed ``<metric>_seed<N>``)."""

    loss_first: float
    loss_last: float
    loss_last10_mean: float
    tokens_per_s: float
    train_runtime_s: float
    steps: float
    trainable_params: float
    records: float
    eval_loss: float | None = None


class FinetuneSummary(StageSummary):
    """The training backend that ran (``trl`` or ``unsloth``); the rest is free-form."""

    backend: str


class FinetuneResult(StageResult):
    """What ``finetune`` reports."""

    metrics: FinetuneMetrics
    summary: FinetuneSummary


@stage(
    name="finetune",
    section="finetune",
    inputs={"model": ("model",), "data": ("mix",)},
    outputs=(MODEL,),
    envs=("train",),
)
def run(ctx: StageContext, spec: FinetuneSlice, callbacks: tuple = ()) -> FinetuneResult:
    """Fine-tune the upstream model on the upstream mix."""
    from harness.training.pipeline import finetune

    data = ctx.inputs["data"]
    outcome = finetune(
        MODEL.dir(ctx.inputs["model"]),
        MIX.train(data),
        MIX.heldout(data),
        spec.finetune,
        ctx.out,
        resume_dir(ctx),
        system=spec.system,
        trust_remote_code=spec.trust_remote_code,
        callbacks=callbacks,
    )
    return FinetuneResult(
        metrics=FinetuneMetrics.model_validate(outcome.metrics),
        series=outcome.series,
        images=outcome.images,
        tables=outcome.tables,
        summary=FinetuneSummary.model_validate(outcome.summary),
    )
