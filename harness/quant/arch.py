"""Which architectures the quantiser handles, and what it must produce for them.

AutoAWQ quantises the seven linears of every Llama/Qwen2-style decoder layer (q/k/v/o_proj in
attention, gate/up/down_proj in the MLP) and leaves embeddings, norms and ``lm_head`` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.quant import QuantizeError

LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
"""Quantised linears of one decoder layer, relative to ``model.layers.<i>``."""

SUPPORTED = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}
"""``model_type`` -> architecture the stage quantises (AutoAWQ supports both)."""


def check_architecture(config: Mapping[str, Any], where: str) -> str:
    """The ``model_type`` of a supported, not yet quantised model.

    Args:
        config: The model's ``config.json`` dict.
        where: The config file, for messages.

    Returns:
        The model type.

    Raises:
        QuantizeError: Unsupported architecture or an already quantised model.
    """
    model_type = config.get("model_type")
    archs = config.get("architectures") or []
    if model_type not in SUPPORTED or (archs and archs != [SUPPORTED[model_type]]):
        supported = ", ".join(f"{t} ({a})" for t, a in SUPPORTED.items())
        raise QuantizeError(
            f"{where}: model_type {model_type!r} / architectures {archs} is not supported by "
            f"the quantize stage (supported: {supported})"
        )
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method")
        raise QuantizeError(f"{where}: the model is already quantised (quant_method {method!r})")
    return str(model_type)


def expected_linear_names(config: Mapping[str, Any]) -> list[str]:
    """Full names of every linear the quantiser must replace, in layer order."""
    n = config.get("num_hidden_layers")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise QuantizeError(f"config.json: `num_hidden_layers` must be an integer, got {n!r}")
    return [f"model.layers.{i}.{lin}" for i in range(n) for lin in LINEARS]
