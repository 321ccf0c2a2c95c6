"""Checks made before any quantisation work starts.

Everything that would make AutoAWQ fail part-way (after minutes or hours of calibration on a
72B model), produce nothing, or produce a checkpoint that cannot be served at the spec's
tensor parallel size is rejected here, with every problem listed at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.quant import QuantizeError
from harness.quant.arch import check_architecture, expected_linear_names

SUPPORTED_W_BIT = 4
SUPPORTED_VERSION = "GEMM"


def precheck(
    config: Mapping[str, Any],
    *,
    w_bit: int,
    group_size: int,
    version: str,
    tensor_parallel_size: int,
    where: Path | str,
    backend: str = "autoawq",
) -> dict[str, Any]:
    """Validate a quantisation request against the source model's ``config.json``.

    Args:
        config: The source model's ``config.json`` dict.
        w_bit: ``quantize.w_bit``.
        group_size: ``quantize.q_group_size``.
        version: ``quantize.version`` (AutoAWQ's layout; llm-compressor writes
            ``pack-quantized`` whatever it says).
        tensor_parallel_size: ``infer.tensor_parallel_size`` the output must serve at.
        where: The config file (for messages).
        backend: ``quantize.backend``: AutoAWQ's own shape limits (pack factor and clipping
            search on the output dims) apply to ``autoawq`` only; the group rule and the
            tensor-parallel alignment to both.

    Returns:
        Facts for the stage summary: model type and the expected number of quantised linears.

    Raises:
        QuantizeError: Listing every problem found, each naming the spec key or config field.
    """
    from shopbench_kernels.errors import KernelError
    from shopbench_kernels.tp_math import awq_shape_problems, check_tp

    problems: list[str] = []
    if w_bit != SUPPORTED_W_BIT:
        problems.append(
            f"`quantize.w_bit` is {w_bit}: only 4-bit AWQ is supported (AutoAWQ's GEMM "
            "layout and vLLM's AWQ kernels pack eight 4-bit values per int32)"
        )
    if backend == "autoawq" and version.upper() != SUPPORTED_VERSION:
        problems.append(
            f"`quantize.version` is {version!r}: only GEMM checkpoints are produced (the layout "
            "vLLM serves)"
        )
    model_type = None
    try:
        model_type = check_architecture(config, str(where))
    except QuantizeError as e:
        problems.append(str(e))
    expected = expected_linear_names(config) if model_type else []
    if model_type and not expected:
        problems.append(
            f"{where}: `num_hidden_layers` is 0: the configuration would quantise zero layers"
        )
    if model_type:
        try:
            shape = awq_shape_problems(config, group_size, autoawq=backend == "autoawq")
            if shape:
                who = "AutoAWQ" if backend == "autoawq" else "llm-compressor"
                problems.append(
                    f"{who} cannot quantise this model with `quantize.q_group_size` "
                    f"{group_size}: " + "; ".join(shape)
                )
            tp = check_tp(config, tensor_parallel_size, group_size)
            if tp:
                problems.append(
                    f"the quantised model would not serve at `infer.tensor_parallel_size` "
                    f"{tensor_parallel_size} with group size {group_size}: " + "; ".join(tp)
                )
        except KernelError as e:
            problems.append(str(e))
    if problems:
        raise QuantizeError(f"cannot quantise {where}:\n" + "\n".join(f"  - {p}" for p in problems))
    return {"model_type": model_type, "expected_linears": len(expected)}
