"""Pre-checks of the quantize stage: every impossible request fails before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.contract import StageContext
from harness.quant import QuantizeError
from harness.quant.arch import expected_linear_names
from harness.quant.checks import precheck
from tests.support.paths import TINY_CPU
from tests.support.stages import run_stage, stage_context

# Overrides of the tiny_cpu spec (AutoAWQ, 4 bits, group 64, served at TP 2).
TP1 = "infer.tensor_parallel_size=1"
LLMC = "quantize.backend=llmcompressor"
QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 256,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def check(config: dict[str, Any], **kw: Any) -> dict[str, Any]:
    args = {"w_bit": 4, "group_size": 64, "version": "GEMM", "tensor_parallel_size": 2}
    return precheck(config, where="model/config.json", **{**args, **kw})


def test_valid_config_expects_seven_linears_per_layer() -> None:
    facts = check(QWEN2)
    assert facts == {"model_type": "qwen2", "expected_linears": 14}
    names = expected_linear_names(QWEN2)
    assert names[0] == "model.layers.0.self_attn.q_proj"
    assert names[-1] == "model.layers.1.mlp.down_proj"


def test_llama_is_supported() -> None:
    cfg = {**QWEN2, "architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    assert check(cfg)["expected_linears"] == 14


def test_w_bit_other_than_four() -> None:
    with pytest.raises(QuantizeError, match=r"`quantize.w_bit` is 8"):
        check(QWEN2, w_bit=8)


def test_gemv_is_refused() -> None:
    with pytest.raises(QuantizeError, match=r"`quantize.version` is 'GEMV'"):
        check(QWEN2, version="GEMV")


def test_unsupported_architecture() -> None:
    cfg = {**QWEN2, "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}
    with pytest.raises(QuantizeError, match=r"model_type 'gpt2'.*not supported"):
        check(cfg)


def test_already_quantised_source() -> None:
    cfg = {**QWEN2, "quantization_config": {"quant_method": "awq"}}
    with pytest.raises(QuantizeError, match="already quantised"):
        check(cfg)


def test_group_size_not_dividing_input_dims() -> None:
    with pytest.raises(QuantizeError, match=r"in_features 256 is not divisible by group_size 96"):
        check(QWEN2, group_size=96, tensor_parallel_size=1)


def test_intermediate_352_cannot_be_quantised_at_all() -> None:
    # 352 = 32 x 11: AutoAWQ's clipping search asserts out_features % 64 == 0 for gate/up.
    cfg = {**QWEN2, "intermediate_size": 352}
    with pytest.raises(QuantizeError) as e:
        check(cfg, group_size=32, tensor_parallel_size=1)
    assert "gate_proj: out_features 352 is not divisible by 64" in str(e.value)


def test_unaligned_tp_names_the_pad_target() -> None:
    # 320 = 64 x 5: at TP 2 down_proj's input shard 160 is not a multiple of the group 64.
    cfg = {**QWEN2, "intermediate_size": 320}
    assert check(cfg, tensor_parallel_size=1)["expected_linears"] == 14
    with pytest.raises(QuantizeError) as e:
        check(cfg, tensor_parallel_size=2)
    msg = str(e.value)
    assert "`infer.tensor_parallel_size` 2" in msg
    assert "pad intermediate_size to 384" in msg


def test_zero_layers_are_refused() -> None:
    with pytest.raises(QuantizeError, match="would quantise zero layers"):
        check({**QWEN2, "num_hidden_layers": 0})


def test_all_problems_are_listed_at_once() -> None:
    with pytest.raises(QuantizeError) as e:
        check({**QWEN2, "intermediate_size": 320}, w_bit=3, version="GEMV")
    msg = str(e.value)
    assert "w_bit" in msg and "version" in msg and "pad intermediate_size" in msg


def _ctx(tmp_path: Path, config: dict[str, Any], *overrides: str) -> StageContext:
    """The quantize stage of the tiny_cpu spec on a model dir holding only ``config``.

    Without an infer stage the spec's own serving checks (which read the spec's tiny model,
    not this one) do not run: what refuses is the stage's pre-check.
    """
    model = tmp_path / "model" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return stage_context(
        TINY_CPU,
        "quantize",
        "stages=[model,quantize]",
        *overrides,
        out=tmp_path / "out",
        inputs={"model": model.parent},
    )


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ({**QWEN2, "intermediate_size": 320}, [], "pad intermediate_size to 384"),
        ({**QWEN2, "num_hidden_layers": 0}, [TP1], "zero layers"),
        (QWEN2, [TP1, "quantize.w_bit=8"], "w_bit"),
        (QWEN2, [TP1, LLMC, "quantize.q_group_size=96"], "llm-compressor cannot"),
        (QWEN2, [TP1, LLMC, "quantize.w_bit=8"], "w_bit"),
    ],
)
def test_stage_refuses_before_any_work(
    tmp_path: Path, config: dict[str, Any], overrides: list[str], message: str
) -> None:
    # The model dir holds only config.json: any attempt to load weights or a tokenizer, or to
    # read calibration data (there is no mix input), would fail with a different error.
    ctx = _ctx(tmp_path, config, *overrides)
    with pytest.raises(QuantizeError, match=message):
        run_stage(ctx)
    assert list(ctx.out.iterdir()) == []
