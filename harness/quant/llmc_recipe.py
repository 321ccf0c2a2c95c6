"""The quantisation the ``llmcompressor`` backend asks for, and what its checkpoint must say.

One definition serves both sides: the child process builds its ``QuantizationModifier`` from
:func:`quantization_config_groups`, and the stage checks the written ``config.json`` against
:func:`expected_config` (standard library only: it runs in both environments).
"""

from __future__ import annotations

from typing import Any

FORMAT = "pack-quantized"
QUANT_METHOD = "compressed-tensors"
IGNORED = ("lm_head",)


def quantization_config_groups(w_bit: int, group_size: int, zero_point: bool) -> dict[str, Any]:
    """compressed-tensors ``config_groups``: integer weights of ``w_bit`` bits in groups of
    ``group_size`` input channels, asymmetric with ``zero_point``, static, activations
    untouched, on every ``Linear`` (4, 128, True is the preset ``W4A16_ASYM``)."""
    return {
        "group_0": {
            "targets": ["Linear"],
            "weights": {
                "num_bits": w_bit,
                "type": "int",
                "strategy": "group",
                "group_size": group_size,
                "symmetric": not zero_point,
                "dynamic": False,
            },
        }
    }


def scheme_name(w_bit: int, group_size: int, zero_point: bool) -> str | None:
    """The compressed-tensors preset these settings equal, if any."""
    if (w_bit, group_size) == (4, 128):
        return "W4A16_ASYM" if zero_point else "W4A16"
    return None


def config_problems(
    qc: dict[str, Any], w_bit: int, group_size: int, zero_point: bool
) -> dict[str, tuple[Any, Any]]:
    """What of a checkpoint's ``quantization_config`` differs from the request.

    Returns:
        Field -> (have, want); empty when it matches.
    """
    groups = list((qc.get("config_groups") or {}).values())
    weights = groups[0].get("weights", {}) if len(groups) == 1 else {}
    have = {
        "quant_method": qc.get("quant_method"),
        "format": qc.get("format"),
        "config_groups": len(groups),
        "num_bits": weights.get("num_bits"),
        "type": weights.get("type"),
        "strategy": weights.get("strategy"),
        "group_size": weights.get("group_size"),
        "symmetric": weights.get("symmetric"),
        "input_activations": groups[0].get("input_activations") if groups else None,
        "lm_head ignored": all(i in (qc.get("ignore") or []) for i in IGNORED),
    }
    want = {
        "quant_method": QUANT_METHOD,
        "format": FORMAT,
        "config_groups": 1,
        "num_bits": w_bit,
        "type": "int",
        "strategy": "group",
        "group_size": group_size,
        "symmetric": not zero_point,
        "input_activations": None,
        "lm_head ignored": True,
    }
    return {k: (have[k], want[k]) for k in want if have[k] != want[k]}
