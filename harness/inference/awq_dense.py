"""Loading a causal LM for transformers, AWQ checkpoints included, without an AWQ kernel.

transformers loads AutoAWQ GEMM checkpoints only through a kernel package (gptqmodel) that
the harness's environments do not carry. :func:`load_causal_lm` serves such a checkpoint by
building the model from its config without the quantisation config and filling every
quantised linear with its dequantised weight (``(q - z) * s`` per group,
:func:`shopbench_kernels.awq_dequant.dequantize_gemm`, bit-exact with AutoAWQ's own dequantisation).
The model computes with exactly the quantised weights in 16/32-bit matmuls: the same
log-probs as an AWQ kernel up to activation rounding, at dense speed and memory. It is the
fallback engine's way to serve AWQ models (``infer.fallback_engine``) and the reference in
tests; on vLLM the AWQ kernels run instead. llm-compressor's compressed-tensors
``pack-quantized`` checkpoints are served the same way (:func:`ct_state_dict`,
:func:`shopbench_kernels.ct_dequant.dequantize_pack_quantized`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.inference.errors import InferenceError

QUANT_SUFFIXES = (".qweight", ".qzeros", ".scales")


def _weight_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise InferenceError(f"{model_dir}: no safetensors weights")
    return files


def awq_state_dict(model_dir: Path, group_size: int, dtype: Any) -> dict[str, Any]:
    """The state dict of an AutoAWQ GEMM checkpoint with every quantised linear dequantised.

    Args:
        model_dir: The checkpoint (``*.safetensors`` with ``<linear>.qweight``, ``.qzeros``,
            ``.scales`` per quantised linear).
        group_size: Its quantisation group size.
        dtype: The torch dtype of every floating-point tensor of the result.

    Returns:
        Parameter name -> tensor, with ``<linear>.weight`` (``[out, in]``) in place of the
        packed tensors.

    Raises:
        InferenceError: A quantised linear lacks one of its three tensors.
    """
    import torch

    from shopbench_kernels.awq_dequant import dequantize_gemm

    raw = _read_tensors(model_dir)
    state: dict[str, Any] = {}
    linears = sorted({n[: -len(".qweight")] for n in raw if n.endswith(".qweight")})
    for prefix in linears:
        parts = [raw.pop(f"{prefix}{s}", None) for s in QUANT_SUFFIXES]
        if any(p is None for p in parts):
            raise InferenceError(
                f"{model_dir}: quantised linear `{prefix}` lacks one of "
                f"{', '.join(prefix + s for s in QUANT_SUFFIXES)}"
            )
        qweight, qzeros, scales = parts
        weight = dequantize_gemm(
            qweight.numpy(), qzeros.numpy(), scales.float().numpy(), group_size
        )
        state[f"{prefix}.weight"] = torch.from_numpy(weight.T.copy()).to(dtype)
    for name, tensor in raw.items():
        state[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return state


def _read_tensors(model_dir: Path) -> dict[str, Any]:
    """Every tensor of a checkpoint's safetensors files, by name."""
    from safetensors import safe_open

    raw: dict[str, Any] = {}
    for f in _weight_files(model_dir):
        with safe_open(str(f), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                raw[name] = handle.get_tensor(name)
    return raw


CT_SUFFIXES = (".weight_packed", ".weight_scale", ".weight_shape")


def ct_state_dict(model_dir: Path, dtype: Any) -> dict[str, Any]:
    """The state dict of a compressed-tensors ``pack-quantized`` checkpoint (llm-compressor's)
    with every quantised linear dequantised.

    Args:
        model_dir: The checkpoint (``<linear>.weight_packed``, ``.weight_scale``,
            ``.weight_shape`` and, when asymmetric, ``.weight_zero_point`` per linear).
        dtype: The torch dtype of every floating-point tensor of the result.

    Returns:
        Parameter name -> tensor, with ``<linear>.weight`` in place of the packed tensors.
    """
    import torch

    from shopbench_kernels.ct_dequant import dequantize_pack_quantized

    raw = _read_tensors(model_dir)
    state: dict[str, Any] = {}
    linears = sorted({n[: -len(".weight_packed")] for n in raw if n.endswith(".weight_packed")})
    for prefix in linears:
        packed, scale, shape = (raw.pop(f"{prefix}{s}", None) for s in CT_SUFFIXES)
        if packed is None or scale is None or shape is None:
            raise InferenceError(
                f"{model_dir}: quantised linear `{prefix}` lacks one of "
                f"{', '.join(prefix + s for s in CT_SUFFIXES)}"
            )
        zp = raw.pop(f"{prefix}.weight_zero_point", None)
        out_f, in_f = (int(x) for x in shape.tolist())
        weight = dequantize_pack_quantized(
            packed.numpy(), scale.float().numpy(), None if zp is None else zp.numpy(), (out_f, in_f)
        )
        state[f"{prefix}.weight"] = torch.from_numpy(weight).to(dtype)
    for name, tensor in raw.items():
        state[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return state


def load_causal_lm(
    model_dir: Path,
    *,
    dtype: Any,
    device: str,
    trust_remote_code: bool = False,
    awq_group_size: int | None = None,
    compressed_tensors: bool = False,
) -> Any:
    """A transformers causal LM on ``device``, in eval mode.

    Args:
        model_dir: A Hugging Face model dir.
        dtype: Torch dtype, or ``"auto"`` (an AWQ checkpoint then computes in its scales'
            dtype, float16).
        device: ``cuda`` or ``cpu``.
        trust_remote_code: Allow model code from the checkpoint.
        awq_group_size: The AWQ group size when ``model_dir`` is an AutoAWQ GEMM
            checkpoint (its linears are dequantised at load), else None.
        compressed_tensors: ``model_dir`` is a compressed-tensors ``pack-quantized``
            checkpoint (its linears are dequantised at load).

    Returns:
        The model.

    Raises:
        InferenceError: The checkpoint's tensors do not fit its architecture.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if awq_group_size is None and not compressed_tensors:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True
        )
        return model.to(device).eval()
    if dtype == "auto":
        dtype = torch.float16
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(
        config, dtype=dtype, trust_remote_code=trust_remote_code
    )
    state = (
        ct_state_dict(model_dir, dtype)
        if awq_group_size is None
        else awq_state_dict(model_dir, awq_group_size, dtype)
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = [m for m in missing if m not in tied]
    if missing or unexpected:
        raise InferenceError(
            f"{model_dir}: the quantised checkpoint does not fit its architecture "
            f"(missing {missing[:5]}, unexpected {list(unexpected)[:5]})"
        )
    if tied:
        model.tie_weights()
    return model.to(device=device, dtype=dtype).eval()
