"""The ``finetune`` stage: LoRA SFT on the training mix, merged into 16-bit weights.

Backends (``finetune.backend``): ``unsloth`` on a CUDA GPU (4-bit base, unsloth's merged save),
``trl`` anywhere (transformers + peft + trl; fp32 on CPU), ``auto`` picks unsloth when a GPU and
unsloth are present. The work is in :mod:`harness.training`; this module only registers it.
"""

from __future__ import annotations

from harness.stages.base import StageContext, StageResult, stage


@stage(
    name="finetune",
    version="1",
    env="train",
    reads=("finetune", "prompts.system", "model.trust_remote_code"),
    inputs={"model": ("model",), "data": ("mix",)},
)
def run(ctx: StageContext) -> StageResult:
    """Fine-tune the upstream model on the upstream mix; see :mod:`harness.training.pipeline`."""
    from harness.training.pipeline import run_finetune

    return run_finetune(ctx)
