"""Tensor-parallel validation: a TP size that does not shard the model fails before serving,
with the reason and, for ``intermediate_size``, the pad target that fixes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError, SpecError
from harness.inference.errors import TensorParallelError
from harness.inference.validate import (
    awq_group_size,
    check_servable,
    resolve_quantization,
    spec_tp_problems,
)
from harness.spec import load_spec
from harness.spec.schema import InferConfig, Spec

QWEN_TINY = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 128,
    "intermediate_size": 320,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 768,
}
AWQ = {"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": True, "version": "gemm"}


def _model_dir(tmp_path: Path, config: dict[str, Any]) -> Path:
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return d


def test_awq_model_whose_down_proj_shard_splits_a_group_is_refused(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, {**QWEN_TINY, "quantization_config": AWQ})
    with pytest.raises(TensorParallelError) as e:
        check_servable(d, InferConfig(tensor_parallel_size=2))
    msg = str(e.value)
    assert "`infer.tensor_parallel_size` 2" in msg
    assert "down_proj" in msg and "160" in msg and "group_size 64" in msg
    assert "pad intermediate_size to 384" in msg
    # TP 1 serves it, and so does TP 2 once padded.
    assert check_servable(d, InferConfig(tensor_parallel_size=1)) == "awq"
    (d / "config.json").write_text(
        json.dumps({**QWEN_TINY, "intermediate_size": 384, "quantization_config": AWQ})
    )
    assert check_servable(d, InferConfig(tensor_parallel_size=2)) == "awq"


def test_heads_that_do_not_split_are_refused_without_a_pad_target(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, QWEN_TINY)
    with pytest.raises(TensorParallelError) as e:
        check_servable(d, InferConfig(tensor_parallel_size=3))
    msg = str(e.value)
    assert "num_attention_heads 4 is not divisible by tp 3" in msg
    assert check_servable(d, InferConfig(tensor_parallel_size=2)) is None


def test_quantization_setting_must_match_the_checkpoint(tmp_path: Path) -> None:
    awq = {**QWEN_TINY, "quantization_config": AWQ}
    assert awq_group_size(awq) == 64 and awq_group_size(QWEN_TINY) is None
    assert resolve_quantization("auto", awq, "m") == "awq"
    assert resolve_quantization("auto", QWEN_TINY, "m") is None
    assert resolve_quantization("awq", awq, "m") == "awq"
    with pytest.raises(HarnessError, match=r"`infer\.quantization: awq` but m is not quantised"):
        resolve_quantization("awq", QWEN_TINY, "m")
    with pytest.raises(HarnessError, match="is an AWQ checkpoint"):
        resolve_quantization("none", awq, "m")
    with pytest.raises(HarnessError, match="cannot read the model config"):
        check_servable(tmp_path, InferConfig())


def _spec(**over: Any) -> Spec:
    base: dict[str, Any] = {
        "name": "t",
        "stages": ["model", "quantize", "infer"],
        "model": {
            "source": "tiny",
            "tiny": {
                "hidden_size": 128,
                "intermediate_size": 320,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            },
        },
        "quantize": {"q_group_size": 64},
        "infer": {"tensor_parallel_size": 2},
    }
    base.update(over)
    return Spec.model_validate(base)


def test_spec_tp_problems_name_the_key_the_reason_and_the_pad_target() -> None:
    problems = spec_tp_problems(_spec())
    assert len(problems) == 1
    p = problems[0]
    assert p.startswith("`infer.tensor_parallel_size`: 2 cannot shard the served model")
    assert "AWQ group_size 64" in p and "pad intermediate_size to 384" in p
    # With the pad stage (auto target) the served model shards; an explicit target may not.
    assert spec_tp_problems(_spec(stages=["model", "pad", "quantize", "infer"], pad={})) == []
    bad_pad = _spec(stages=["model", "pad", "quantize", "infer"], pad={"target": 352})
    assert "352/2 = 176" in " ".join(spec_tp_problems(bad_pad))
    # Unquantised, 320 / 2 shards fine; TP 3 breaks the heads.
    assert spec_tp_problems(_spec(stages=["model", "infer"])) == []
    heads = spec_tp_problems(_spec(stages=["model", "infer"], infer={"tensor_parallel_size": 3}))
    assert any("num_attention_heads 4 is not divisible by tp 3" in p for p in heads)
    # Nothing to check without an infer stage or for an endpoint.
    assert spec_tp_problems(_spec(stages=["model", "quantize"])) == []


def test_spec_tp_problems_read_a_local_model_dir(tmp_path: Path) -> None:
    _model_dir(tmp_path, {**QWEN_TINY, "quantization_config": AWQ})
    spec = Spec.model_validate(
        {
            "name": "t",
            "stages": ["model", "infer"],
            "model": {"source": "local", "path": "m"},
            "infer": {"tensor_parallel_size": 2},
        }
    )
    assert "pad intermediate_size to 384" in " ".join(spec_tp_problems(spec, tmp_path))
    missing = spec.model_copy(update={"model": spec.model.model_copy(update={"path": "nope"})})
    assert spec_tp_problems(missing, tmp_path) == []


def test_loading_a_spec_with_an_unservable_tp_size_fails(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\nstages: [model, quantize, infer]\n"
        "model: {source: tiny, tiny: {hidden_size: 128, intermediate_size: 320}}\n"
        "quantize: {q_group_size: 64}\ninfer: {tensor_parallel_size: 2}\n"
        "eval: {data: dev.jsonl}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError, match="pad intermediate_size to 384"):
        load_spec(path)
