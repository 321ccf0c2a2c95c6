"""The ``pad`` stage: zero-pad the merged model's ``intermediate_size`` for tensor parallel AWQ.

Reads ``pad`` plus the two settings an ``auto`` target derives from:
``infer.tensor_parallel_size`` (unless ``pad.tensor_parallel_sizes`` is given) and
``quantize.q_group_size`` (None without a ``quantize`` section: unquantised serving). Takes
its model from ``finetune`` (the merged model), else ``model``, and writes the padded model
to ``<stage dir>/model`` with :func:`shopbench_kernels.pad_checkpoint.pad_checkpoint` (streaming,
exact, atomic). A target that does not serve the TP sizes fails before anything is written.
"""

from __future__ import annotations

from typing import Any

from harness.core.artifacts import MODEL
from harness.core.stage import (
    SpecSlice,
    StageContext,
    StageMetrics,
    StageResult,
    read,
    stage,
)
from harness.errors import HarnessError
from harness.spec.schema import PadConfig


def resolve_pad(cfg: PadConfig, infer_tp: int | None) -> tuple[int | None, list[int]]:
    """The explicit target (None for ``auto``) and the TP sizes the padded model must serve.

    Args:
        cfg: The ``pad`` section.
        infer_tp: ``infer.tensor_parallel_size``.

    Returns:
        ``(target, tp_sizes)``.

    Raises:
        HarnessError: ``auto`` with no TP size to derive the target from.
    """
    tps = list(cfg.tensor_parallel_sizes or ([infer_tp] if infer_tp else []))
    if any(tp < 1 for tp in tps):
        raise HarnessError(f"`pad.tensor_parallel_sizes`: sizes must be positive, got {tps}")
    target = None if cfg.target == "auto" else int(cfg.target)
    if target is None and not tps:
        raise HarnessError(
            "`pad.target: auto` needs `pad.tensor_parallel_sizes` or `infer.tensor_parallel_size`"
        )
    return target, tps


class PadSlice(SpecSlice):
    """What ``pad`` reads: its section and the two settings ``auto`` derives from."""

    pad: PadConfig = read("pad")
    tensor_parallel_size: int | None = read("infer.tensor_parallel_size")
    q_group_size: int | None = read("quantize.q_group_size")


class PadMetrics(StageMetrics):
    """The MLP width before and after, what was padded and how long it took."""

    intermediate_size_before: float
    intermediate_size_after: float
    padded_channels: float
    tensors_padded: float
    seconds: float


class PadResult(StageResult):
    """What ``pad`` reports (its summary: sizes, placement, tensor parallel sizes, the output
    files' sha256)."""

    metrics: PadMetrics


@stage(
    name="pad",
    section="pad",
    version="2",
    inputs={"model": ("finetune", "model")},
    outputs=(MODEL,),
)
def run(ctx: StageContext, spec: PadSlice) -> PadResult:
    """Pad the upstream model; the summary carries the sizes, placement and output sha256s."""
    from shopbench_kernels.pad_checkpoint import pad_checkpoint, read_config
    from shopbench_kernels.tp_math import awq_shape_problems

    cfg = spec.pad
    group_size = spec.q_group_size
    target, tps = resolve_pad(cfg, spec.tensor_parallel_size)
    src = MODEL.dir(ctx.inputs["model"])
    result: dict[str, Any] = pad_checkpoint(
        src,
        MODEL.dir(ctx.out),
        target,
        tp_sizes=tps,
        group_size=group_size,
        placement=cfg.placement,
    )
    before = result["intermediate_size"]["before"]
    after = result["intermediate_size"]["after"]
    result["tp_sizes"] = tps
    result["group_size"] = group_size
    if group_size is not None:
        # Informational: AutoAWQ's own shape limits (the quantize stage enforces them).
        padded = read_config(MODEL.dir(ctx.out))
        result["awq_shape_problems"] = awq_shape_problems(padded, group_size)
    result["output"] = "model"
    result.pop("source", None)
    return PadResult(
        metrics=PadMetrics(
            intermediate_size_before=float(before),
            intermediate_size_after=float(after),
            padded_channels=float(after - before),
            tensors_padded=float(result["tensors_padded"]),
            seconds=float(result["seconds"]),
        ),
        summary=result,
    )
