"""Tensor-parallel checks before an engine starts, and at spec validation time.

vLLM does not check that an AWQ model's shards line up with its quantisation groups; it fails
deep inside weight loading, or (on CPU) not at all. The harness refuses first: attention heads
and KV heads must split across the TP ranks, ``intermediate_size`` must divide, and for AWQ
models every row-parallel shard (``o_proj``, ``down_proj``) must hold whole groups. The rules
are :func:`shopbench_kernels.tp_math.check_tp`; a failure caused by ``intermediate_size`` names the pad
target that fixes it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from harness.inference.errors import InferenceError, TensorParallelError
from harness.model_files import read_config
from harness.spec.schema import InferConfig, Spec


def read_model_config(model_dir: Path) -> dict[str, Any]:
    """The ``config.json`` of a model dir.

    Args:
        model_dir: A Hugging Face model directory.

    Returns:
        The parsed config.

    Raises:
        InferenceError: No readable ``config.json``.
    """
    return read_config(model_dir, error=InferenceError)


def awq_group_size(config: dict[str, Any]) -> int | None:
    """The AWQ group size of a quantised model's config, or None when it is not AWQ."""
    q = config.get("quantization_config")
    if not isinstance(q, dict) or str(q.get("quant_method", "")).lower() != "awq":
        return None
    group = q.get("group_size", q.get("q_group_size", 128))
    return int(group)


def weight_format(config: dict[str, Any]) -> str | None:
    """The 4-bit weight format of a checkpoint's config: ``awq`` (AutoAWQ),
    ``compressed-tensors`` (llm-compressor), or None when it is not quantised."""
    q = config.get("quantization_config")
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method", "")).lower()
    return method if method in ("awq", "compressed-tensors") else None


def quant_group_size(config: dict[str, Any]) -> int | None:
    """The quantisation group size of an AWQ or compressed-tensors checkpoint (None: not
    quantised, or not group-wise)."""
    fmt = weight_format(config)
    if fmt == "awq":
        return awq_group_size(config)
    if fmt == "compressed-tensors":
        groups = (config["quantization_config"].get("config_groups") or {}).values()
        sizes = {
            int(w["group_size"])
            for g in groups
            if isinstance(w := g.get("weights"), dict) and w.get("group_size") is not None
        }
        return min(sizes) if sizes else None
    return None


def resolve_quantization(setting: str, config: dict[str, Any], where: str) -> str | None:
    """The vLLM ``quantization`` argument for ``infer.quantization``.

    Args:
        setting: ``auto``, ``awq``, ``compressed-tensors`` or ``none``.
        config: The model's config.
        where: The model dir, for messages.

    Returns:
        ``"awq"``, ``"compressed-tensors"`` or None.

    Raises:
        InferenceError: The setting contradicts the checkpoint.
    """
    fmt = weight_format(config)
    what = {"awq": "an AWQ checkpoint", "compressed-tensors": "a compressed-tensors checkpoint"}
    if setting == "auto":
        return fmt
    if setting == "none":
        if fmt is not None:
            raise InferenceError(
                f"`infer.quantization: none` but {where} is {what[fmt]} "
                "(its weights cannot be served unquantised)"
            )
        return None
    if fmt != setting:
        have = what[fmt] if fmt else "not quantised"
        raise InferenceError(
            f"`infer.quantization: {setting}` but {where} is {have} (its `quantization_config`)"
        )
    return setting


def tp_problems(config: dict[str, Any], tp: int, group_size: int | None) -> list[str]:
    """Why a model config cannot be served at ``tp`` (empty when it can)."""
    from shopbench_kernels.errors import PaddingError
    from shopbench_kernels.tp_math import check_tp

    try:
        return check_tp(config, tp, group_size)
    except PaddingError as e:
        return [str(e)]


def check_servable(model_dir: Path, infer: InferConfig) -> str | None:
    """Refuse a model dir the engine cannot shard at ``infer.tensor_parallel_size``.

    Args:
        model_dir: The model to serve.
        infer: The ``infer`` section.

    Returns:
        The resolved quantization (``"awq"``, ``"compressed-tensors"`` or None).

    Raises:
        TensorParallelError: The TP size does not divide the model; lists every reason.
        InferenceError: Unreadable config, or quantization contradicting the checkpoint.
    """
    config = read_model_config(model_dir)
    quant = resolve_quantization(infer.quantization, config, str(model_dir))
    group = quant_group_size(config) if quant is not None else None
    problems = tp_problems(config, infer.tensor_parallel_size, group)
    if problems:
        raise TensorParallelError(
            problems, f"`infer.tensor_parallel_size` {infer.tensor_parallel_size} ({model_dir})"
        )
    return quant


def _planned_config(spec: Spec, root: Path) -> tuple[dict[str, Any] | None, int | None]:
    """The config and AWQ group size the infer stage will see, when knowable now."""
    from shopbench_kernels.errors import PaddingError
    from shopbench_kernels.tp_math import pad_target

    model = spec.model
    group: int | None = None
    if model.source == "tiny" and model.tiny is not None:
        t = model.tiny
        config: dict[str, Any] = {
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
        }
    elif model.source == "local" and model.path:
        path = Path(model.path)
        path = path if path.is_absolute() else root / path
        if not (path / "config.json").is_file():
            return None, None
        try:
            config = read_model_config(path)
        except InferenceError:
            return None, None
        group = quant_group_size(config)
    else:
        return None, None
    if "quantize" in spec.stages and spec.quantize is not None:
        group = spec.quantize.q_group_size
    if "pad" in spec.stages and spec.pad is not None:
        if isinstance(spec.pad.target, int):
            config = {**config, "intermediate_size": spec.pad.target}
        else:
            tps = spec.pad.tensor_parallel_sizes or [spec.infer.tensor_parallel_size]
            # On PaddingError check_tp below reports the unfixable reasons.
            with contextlib.suppress(PaddingError):
                config = {**config, "intermediate_size": pad_target(config, tps, group)}
    return config, group


def spec_tp_problems(spec: Spec, root: Path | None = None) -> list[str]:
    """TP problems of a spec whose served model is known before running.

    The served config is derived from ``model.tiny`` or a local dir's ``config.json``, with
    ``intermediate_size`` as the pad stage will leave it and the AWQ group size of the quantize
    stage (or of an already quantised local checkpoint). Hub models and configs that do not
    exist yet give no problems here; :func:`check_servable` checks them before serving.

    Args:
        spec: The validated spec.
        root: Root for relative ``model.path`` (default: the current directory).

    Returns:
        Messages naming ``infer.tensor_parallel_size`` (empty when fine or unknowable).
    """
    if "infer" not in spec.stages or spec.infer.engine == "openai":
        return []
    config, group = _planned_config(spec, root or Path.cwd())
    if config is None:
        return []
    tp = spec.infer.tensor_parallel_size
    awq = f" with AWQ group_size {group}" if group is not None else ""
    return [
        f"`infer.tensor_parallel_size`: {tp} cannot shard the served model{awq}: {p}"
        for p in tp_problems(config, tp, group)
    ]
