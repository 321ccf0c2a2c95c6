"""The CPU AWQ kernels driven through vLLM's own AWQ repacking
(``_convert_awq_to_standard_format`` and ``CPUWNA16LinearKernel``) and checked against
:mod:`shopbench_kernels.awq_dequant`: vLLM's int4 x int8 AMX kernel (``w4a8``, AMX hosts), its native
``_C::cpu_gemm_wna16`` (AVX512 builds) — each skipped where the host lacks it — and the
harness's torch ``cpu_gemm_wna16`` (what AVX2 hosts run), which every host runs here by
routing vLLM's op wrapper to it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from shopbench_kernels.awq_dequant import dequantize_gemm, pack_gemm

pytest.importorskip("vllm")


@pytest.fixture(scope="module", autouse=True)
def single_rank_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """vLLM's weight parameters ask for the tensor parallel rank: a one-process group."""
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.distributed import (
        destroy_distributed_environment,
        destroy_model_parallel,
        init_distributed_environment,
        initialize_model_parallel,
    )

    init_file = tmp_path_factory.mktemp("dist") / "init"
    with set_current_vllm_config(VllmConfig()):
        init_distributed_environment(
            world_size=1,
            rank=0,
            distributed_init_method=f"file://{init_file}",
            local_rank=0,
            backend="gloo",
        )
        initialize_model_parallel(1, 1)
        yield
        destroy_model_parallel()
        destroy_distributed_environment()


@pytest.fixture(params=["w4a8", "native", "torch"])
def gemm(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CPU AWQ kernel under test."""
    import torch
    import vllm._custom_ops as ops

    from harness.quant import vllm_cpu_wna16

    mode = vllm_cpu_wna16.install()
    if request.param == "w4a8":
        monkeypatch.setenv(vllm_cpu_wna16.W4A8_SWITCH, "1")
        if vllm_cpu_wna16.awq_kernel("bfloat16") != "w4a8":
            pytest.skip("vLLM's w4a8 AWQ kernel needs an AMX host")
        return "w4a8"
    monkeypatch.setenv(vllm_cpu_wna16.W4A8_SWITCH, "0")
    if request.param == "native":
        if mode != "native":
            pytest.skip("this vLLM build has no native cpu_gemm_wna16 (AVX512 hosts only)")
        return "native"

    def torch_gemm(input, q_weight, scales, zeros, bias, pack_factor, isa_hint):  # type: ignore[no-untyped-def]
        out = torch.empty((input.shape[0], scales.shape[1]), dtype=input.dtype)
        vllm_cpu_wna16._gemm(input, q_weight, out, scales, zeros, bias, pack_factor, isa_hint)
        return out

    monkeypatch.setattr(ops, "cpu_gemm_wna16", torch_gemm)
    return "torch"


def _awq_linear(rng: np.random.Generator, k: int, n: int, group: int) -> dict[str, np.ndarray]:
    q = rng.integers(0, 16, size=(k, n))
    z = rng.integers(0, 16, size=(k // group, n))
    s = rng.uniform(0.001, 0.02, size=(k // group, n)).astype(np.float16)
    return {"qweight": pack_gemm(q), "qzeros": pack_gemm(z), "scales": s}


def _vllm_apply(w: dict[str, np.ndarray], x: object, group: int) -> object:
    """Run one AWQ linear through vLLM's CPU path: AWQ -> GPTQ repack -> CPUWNA16 kernel."""
    import torch
    from vllm.model_executor.kernels.linear.mixed_precision import (
        CPUWNA16LinearKernel,
        MPLinearLayerConfig,
    )
    from vllm.model_executor.layers.quantization.auto_awq import (
        _convert_awq_to_standard_format,
    )
    from vllm.model_executor.parameter import GroupQuantScaleParameter, PackedvLLMParameter
    from vllm.scalar_type import scalar_types

    k, n = w["qweight"].shape[0], w["scales"].shape[1]
    layer = torch.nn.Module()
    layer.register_parameter("bias", None)  # vLLM's linear layers always carry the attribute
    for name in ("qweight", "qzeros"):
        layer.register_parameter(
            name,
            PackedvLLMParameter(
                data=torch.from_numpy(w[name].copy()),
                input_dim=0,
                output_dim=1,
                packed_dim=1,
                packed_factor=8,
                weight_loader=lambda *a: None,
            ),
        )
    layer.register_parameter(
        "scales",
        GroupQuantScaleParameter(
            data=torch.from_numpy(w["scales"].astype(np.float32)).to(torch.bfloat16),
            input_dim=0,
            output_dim=1,
            weight_loader=lambda *a: None,
        ),
    )
    _convert_awq_to_standard_format(layer, "qweight", "qzeros", 4)
    cfg = MPLinearLayerConfig((k, n), (k, n), scalar_types.uint4, torch.bfloat16, group, True)
    kernel = CPUWNA16LinearKernel(cfg, "qweight", "scales", "qzeros")
    kernel.process_weights_after_loading(layer)
    return kernel.apply_weights(layer, x)


def test_matches_dense_dequantised_weight(gemm: str) -> None:
    import torch

    rng = np.random.default_rng(0)
    k, n, group = 192, 96, 64
    w = _awq_linear(rng, k, n, group)
    x = torch.from_numpy(rng.standard_normal((5, k)).astype(np.float32)).to(torch.bfloat16)
    y = _vllm_apply(w, x, group)
    # vLLM loads the scales in the activation dtype (bf16).
    scales = torch.from_numpy(w["scales"].astype(np.float32)).to(torch.bfloat16).float().numpy()
    dense = dequantize_gemm(w["qweight"], w["qzeros"], scales, group)  # [k, n]
    dense_bf16 = torch.from_numpy(dense).to(torch.bfloat16).float()
    ref = x.float() @ dense_bf16
    assert y.dtype == torch.bfloat16 and y.shape == (5, n)
    # w4a8 also rounds the activations to int8 (per-token scale): about 1% of their range.
    tol = 5e-2 if gemm == "w4a8" else 1e-2
    torch.testing.assert_close(y.float(), ref, rtol=tol, atol=tol)


def test_shard_with_partial_group_runs_with_the_wrong_group_size(gemm: str) -> None:
    """``cpu_gemm_wna16`` (native and torch): a TP shard of 160 input rows with group 64 holds 160 // 64 = 2 groups of scales; the
    kernel derives group size 160 / 2 = 80 from the shapes and silently applies each scale
    to 80 rows instead of 64."""
    import torch

    from shopbench_kernels.awq_dequant import unpack_gemm

    if gemm == "w4a8":
        pytest.skip("the partial-group arithmetic of cpu_gemm_wna16; w4a8 is covered end to end")

    rng = np.random.default_rng(1)
    k, n, group = 160, 64, 64
    full = _awq_linear(rng, 192, n, group)  # the unsharded rows 0..191, three groups
    q = unpack_gemm(full["qweight"])[:k]
    shard = {"qweight": pack_gemm(q), "qzeros": full["qzeros"][:2], "scales": full["scales"][:2]}
    x = torch.from_numpy(rng.standard_normal((3, k)).astype(np.float32)).to(torch.bfloat16)
    y = _vllm_apply(shard, x, group).float()

    def dense(weight: np.ndarray) -> torch.Tensor:
        return x.float() @ torch.from_numpy(weight).to(torch.bfloat16).float()

    scales = torch.from_numpy(shard["scales"].astype(np.float32)).to(torch.bfloat16).float().numpy()
    as_80 = dequantize_gemm(shard["qweight"], shard["qzeros"], scales, 80)
    torch.testing.assert_close(y, dense(as_80), rtol=1e-2, atol=1e-2)
    true_rows = dequantize_gemm(
        full["qweight"], full["qzeros"], full["scales"].astype(np.float32), 64
    )
    assert (y - dense(true_rows[:k])).abs().max() > 0.05
