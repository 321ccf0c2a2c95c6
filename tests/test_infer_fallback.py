"""The transformers engine as the fallback where vLLM cannot be imported: serving an AutoAWQ
GEMM checkpoint with its linears dequantised at load, ``infer.fallback_engine``, and the
quantize stage's serving check with transformers."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from harness.inference.agreement import logprob_gap
from harness.inference.awq_dense import awq_state_dict, load_causal_lm
from harness.inference.engines import base as engine_base
from harness.inference.engines.base import (
    EngineSpec,
    GenRequest,
    engine_available,
    make_engine,
    resolve_engine,
)
from harness.quant import QuantizeError
from harness.quant.arch import LINEARS
from harness.quant.check import VllmJob, check_prompt_ids, run_vllm_jobs, vllm_importable
from harness.spec.schema import DecodingParams, InferConfig, TinyModelConfig
from shopbench_kernels.awq_dequant import pack_gemm
from tests.support.paths import REPO, TINY_CPU
from tests.support.stages import stage_context

Models = tuple[Path, Path, dict[str, np.ndarray]]
GROUP = 64
TINY = TinyModelConfig(
    hidden_size=128,
    intermediate_size=256,
    num_attention_heads=4,
    num_key_value_heads=2,
    corpus=["experiments/data/products.jsonl"],
)


def _pseudo_quantize(w: np.ndarray, group: int) -> tuple[np.ndarray, ...]:
    """AutoAWQ's zero-point quantisation of ``w`` (``[out, in]``) per group of inputs:
    4-bit values and zeros (``[in, out]``, ``[in / group, out]``), fp16 scales, and the
    dequantised ``[out, in]`` weight."""
    wt = w.T.astype(np.float32)  # [in, out]
    n_in, n_out = wt.shape
    g = wt.reshape(n_in // group, group, n_out)
    lo, hi = g.min(axis=1), g.max(axis=1)
    scales = (np.maximum(hi - lo, 1e-5) / 15).astype(np.float16)
    s32 = scales.astype(np.float32)
    zeros = np.clip(np.round(-lo / s32), 0, 15)
    q = np.clip(np.round(g / s32[:, None, :]) + zeros[:, None, :], 0, 15)
    deq = ((q - zeros[:, None, :]) * s32[:, None, :]).reshape(n_in, n_out)
    return q.reshape(n_in, n_out), zeros, scales, deq.T


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """The tiny model, an AutoAWQ GEMM checkpoint of it (group 64, packed by the harness's
    packer, which the kernel tests prove bit-exact with AutoAWQ's), and the dequantised
    weight of every quantised linear."""
    from harness.tiny_model import build_tiny_model

    src = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(TINY, src, REPO)
    dst = tmp_path_factory.mktemp("awq") / "model"
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != ".complete":
            shutil.copy(f, dst / f.name)
    tensors: dict[str, np.ndarray] = {}
    for f in sorted(src.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    config = json.loads((src / "config.json").read_text())
    out: dict[str, np.ndarray] = {}
    expected: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        prefix = name[: -len(".weight")]
        if name.endswith(".weight") and prefix.split(".", 3)[-1] in LINEARS:
            q, z, s, deq = _pseudo_quantize(t, GROUP)
            out[f"{prefix}.qweight"] = pack_gemm(q.astype(np.uint8))
            out[f"{prefix}.qzeros"] = pack_gemm(z.astype(np.uint8))
            out[f"{prefix}.scales"] = s
            expected[name] = deq.astype(np.float32)
        else:
            out[name] = t.astype(np.float16)
    assert len(expected) == 7 * config["num_hidden_layers"]
    # safetensors writes an array's buffer as is: every array must be C-contiguous.
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, str(dst / "model.safetensors"))
    config["quantization_config"] = {
        "quant_method": "awq",
        "bits": 4,
        "group_size": GROUP,
        "zero_point": True,
        "version": "gemm",
    }
    config["dtype"] = "float16"
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    return src, dst, expected


def test_awq_checkpoint_loads_with_exactly_the_dequantised_weights(models: Models) -> None:
    _, awq, expected = models
    state = awq_state_dict(awq, GROUP, torch.float32)
    assert not [n for n in state if n.endswith((".qweight", ".qzeros", ".scales"))]
    model = load_causal_lm(awq, dtype=torch.float32, device="cpu", awq_group_size=GROUP)
    params = dict(model.named_parameters())
    for name, want in expected.items():
        got = params[name].detach().numpy()
        assert got.shape == want.shape and np.array_equal(got, want), name
    assert not hasattr(model.config, "quantization_config")
    assert not model.training


def test_a_checkpoint_missing_a_packed_tensor_is_refused(models: Models, tmp_path: Path) -> None:
    _, awq, _ = models
    broken = tmp_path / "broken"
    shutil.copytree(awq, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["model.layers.0.mlp.up_proj.qzeros"]
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(Exception, match=r"model\.layers\.0\.mlp\.up_proj` lacks one of"):
        awq_state_dict(broken, GROUP, torch.float32)


def test_fallback_engine_is_used_only_when_vllm_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_fallback = InferConfig(engine="vllm", fallback_engine="transformers")
    assert engine_available("vllm") and engine_available("openai")
    assert resolve_engine(with_fallback) == "vllm"
    monkeypatch.setitem(engine_base.ENGINE_PACKAGES, "vllm", "no_such_module_xyz")
    assert not engine_available("vllm")
    assert resolve_engine(with_fallback) == "transformers"
    assert resolve_engine(InferConfig(engine="vllm")) == "vllm"  # no fallback: vLLM's error


def test_transformers_engine_serves_the_awq_checkpoint_as_the_fallback(
    models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, awq, _ = models
    monkeypatch.setitem(engine_base.ENGINE_PACKAGES, "vllm", "no_such_module_xyz")
    infer = InferConfig(engine="vllm", fallback_engine="transformers", dtype="float32")
    engine = make_engine(EngineSpec(infer=infer, model_dir=str(awq)))
    reference = make_engine(
        EngineSpec(infer=InferConfig(engine="transformers", dtype="float32"), model_dir=str(src))
    )
    try:
        assert engine.name == "transformers" and engine.weights == "awq-dequantized"
        assert reference.weights == "dense"
        ids = tuple(engine.tokenizer("Which category does a kettle belong to?")["input_ids"])
        req = GenRequest(0, "generation", "", ids, (), DecodingParams(max_tokens=6), 0)
        (res,) = engine.generate([req])
        assert res.output_tokens >= 1 and res.prompt_tokens == len(ids)
        seq = [list(ids) + list(res.token_ids)]
        gap = logprob_gap(reference.score(seq), engine.score(seq))
        assert 0 < gap["mean_abs"] < 1.0  # 4-bit weights: close, not equal
    finally:
        engine.close()
        reference.close()


def test_serving_check_with_transformers_scores_the_same_sequences(
    models: Models, tmp_path: Path
) -> None:
    src, awq, _ = models
    from transformers import AutoTokenizer

    prompts = check_prompt_ids(AutoTokenizer.from_pretrained(src), None, 4)
    ref, q = run_vllm_jobs(
        [
            VllmJob(src, tmp_path / "ref.json", 1, "none"),
            VllmJob(awq, tmp_path / "q.json", 1, "awq"),
        ],
        prompts,
        log_file=tmp_path / "check.log",
        dtype="float32",
        max_tokens=8,
        engine="transformers",
    )
    assert ref["engine"] == q["engine"] == "transformers" and q["vllm"] is None
    assert (ref["awq_kernel"], q["awq_kernel"]) == (None, "dequantized")
    assert q["sequences"] == ref["sequences"]
    assert [len(x) for x in q["logprobs"]] == [len(s) - 1 for s in ref["sequences"]]
    gap = logprob_gap(ref["logprobs"], q["logprobs"])
    assert 0 < gap["mean_abs"] < 1.0
    with pytest.raises(ValueError, match="unknown check engine"):
        run_vllm_jobs(
            [VllmJob(src, tmp_path / "x.json")], prompts, log_file=tmp_path / "x.log", engine="x"
        )


def test_quantize_check_without_vllm_names_the_fallback_setting(
    models: Models, tmp_path: Path
) -> None:
    from harness.stages.quantize import QuantizeSlice, _Job, _precheck, _serving_check

    src, _, _ = models
    assert vllm_importable(sys.executable)
    missing = str(tmp_path / "no-python")
    assert not vllm_importable(missing)

    def job(*overrides: str) -> _Job:
        ctx = stage_context(
            TINY_CPU,
            "quantize",
            *overrides,
            out=tmp_path / "out",
            inputs={"model": src.parent},
            pythons={"serve": missing},
        )
        return _precheck(ctx, QuantizeSlice.model_validate(ctx.config))

    with pytest.raises(QuantizeError, match=r"`infer\.fallback_engine: transformers`"):
        _serving_check(job("infer.tensor_parallel_size=1"), tmp_path, None)
    with pytest.raises(QuantizeError, match="checks on one device"):
        _serving_check(job("infer.fallback_engine=transformers"), tmp_path, None)


@pytest.mark.gpu
def test_dequantised_linear_matches_autoawq_gemm_on_cuda() -> None:
    """On CUDA, a linear with the dequantised weight computes what AutoAWQ's own GEMM module
    (its kernel) computes from the packed tensors, up to fp16 accumulation."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    awq_gemm = pytest.importorskip("awq.modules.linear.gemm")
    from shopbench_kernels.awq_dequant import dequantize_gemm

    torch.manual_seed(0)
    n_in, n_out, group = 1024, 768, 128
    linear = torch.nn.Linear(n_in, n_out, bias=False)
    q, z, s, _ = _pseudo_quantize(linear.weight.detach().numpy(), group)
    scales = torch.from_numpy(s.astype(np.float32))
    zeros = torch.from_numpy(z.astype(np.float32))
    linear.weight.data = torch.from_numpy(
        (
            (q.reshape(n_in // group, group, n_out) - z[:, None, :])
            * s.astype(np.float32)[:, None, :]
        )
        .reshape(n_in, n_out)
        .T.astype(np.float32)
    )
    module = awq_gemm.WQLinear_GEMM.from_linear(linear, 4, group, scales=scales, zeros=zeros)
    module = module.to("cuda").half()
    weight = dequantize_gemm(
        module.qweight.cpu().numpy(),
        module.qzeros.cpu().numpy(),
        module.scales.cpu().numpy(),
        group,
    )
    x = torch.randn(4, 16, n_in, device="cuda", dtype=torch.float16)
    with torch.inference_mode():
        kernel = module(x).float()
        dense = torch.nn.functional.linear(x, torch.from_numpy(weight.T.copy()).cuda()).float()
    rel = (kernel - dense).norm() / dense.norm()
    assert rel < 5e-3, float(rel)
