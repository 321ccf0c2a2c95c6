"""Post-conditions of the quantize stage on real checkpoint files: a quantiser that matched
nothing, wrote a larger file, or broke a layer is caught."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.quant import QuantizeError
from harness.quant.arch import expected_linear_names
from harness.quant.autoawq_backend import ScaleRecord
from harness.quant.verify import (
    check_errors,
    check_linears,
    finalize_model_dir,
    quantized_linears,
    reconstruction_errors,
    size_report,
)
from shopbench_kernels.awq_dequant import pack_gemm

CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
GROUP = 32


def _save(path: Path, tensors: dict[str, np.ndarray]) -> None:
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()},
        str(path / "model.safetensors"),
    )


def _shapes() -> dict[str, tuple[int, int]]:
    h, i, kv = 64, 128, 32
    return {
        "self_attn.q_proj": (h, h),
        "self_attn.k_proj": (kv, h),
        "self_attn.v_proj": (kv, h),
        "self_attn.o_proj": (h, h),
        "mlp.gate_proj": (i, h),
        "mlp.up_proj": (i, h),
        "mlp.down_proj": (h, i),
    }


def _quantise(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain asymmetric 4-bit group quantisation of an [out, in] weight, AWQ GEMM layout."""
    wt = w.T.reshape(-1, GROUP, w.shape[0])  # [groups, group, out]
    lo, hi = wt.min(axis=1), wt.max(axis=1)
    scale = np.maximum(hi - lo, 1e-5) / 15
    zero = np.clip(np.round(-lo / scale), 0, 15)
    q = np.clip(np.round(wt / scale[:, None]) + zero[:, None], 0, 15)
    qweight = pack_gemm(q.reshape(w.shape[1], w.shape[0]).astype(np.int64))
    return qweight, pack_gemm(zero.astype(np.int64)), scale.astype(np.float16)


@pytest.fixture()
def checkpoints(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    src_t: dict[str, np.ndarray] = {"model.embed_tokens.weight": rng.standard_normal((512, 64))}
    out_t: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": src_t["model.embed_tokens.weight"].astype(np.float16)
    }
    for lin, (o, i) in _shapes().items():
        name = f"model.layers.0.{lin}"
        w = rng.standard_normal((o, i)).astype(np.float32) * 0.02
        src_t[name + ".weight"] = w
        qw, qz, s = _quantise(w)
        out_t |= {name + ".qweight": qw, name + ".qzeros": qz, name + ".scales": s}
    src_t = {k: v.astype(np.float32) for k, v in src_t.items()}
    src, out = tmp_path / "src", tmp_path / "out"
    _save(src, src_t)
    _save(out, out_t)
    for d in (src, out):
        (d / "config.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    return src, out, src_t


def test_counts_and_errors_of_a_real_checkpoint(checkpoints: tuple[Path, Path, dict]) -> None:
    src, out, _ = checkpoints
    found = quantized_linears(out)
    expected = expected_linear_names(CONFIG)
    assert found == sorted(expected)
    check_linears(found, expected)
    rows = reconstruction_errors(src, out, expected, GROUP, [])
    assert [r["layer"] for r in rows] == expected
    stats = check_errors(rows)
    assert 0.03 < stats["recon_error_mean"] < 0.2  # 4-bit rounding of Gaussian weights
    sizes = size_report(src, out)
    assert sizes["size_ratio"] < 0.5 and sizes["output_bytes"] < sizes["source_bytes"]


def test_recorded_scales_enter_the_reference(checkpoints: tuple[Path, Path, dict]) -> None:
    import torch

    src, out, _ = checkpoints
    names = expected_linear_names(CONFIG)
    plain = {r["layer"]: r["rel_error"] for r in reconstruction_errors(src, out, names, GROUP, [])}
    # Scales claimed for q_proj that were never applied to the stored weight: the reference
    # changes, so the error grows.
    rec = ScaleRecord(
        "model.layers.0.input_layernorm",
        False,
        ("model.layers.0.self_attn.q_proj",),
        torch.linspace(0.5, 2.0, 64),
    )
    scaled = {
        r["layer"]: r["rel_error"] for r in reconstruction_errors(src, out, names, GROUP, [rec])
    }
    assert scaled["model.layers.0.self_attn.q_proj"] > 3 * plain["model.layers.0.self_attn.q_proj"]
    assert scaled["model.layers.0.mlp.down_proj"] == plain["model.layers.0.mlp.down_proj"]


def test_output_not_smaller_than_source_fails(checkpoints: tuple[Path, Path, dict]) -> None:
    src, out, _ = checkpoints
    with pytest.raises(QuantizeError, match="is not smaller than its source"):
        size_report(out, src)  # the fp32 checkpoint as the "output" of the 4-bit one


def test_zero_or_partial_linears_fail(checkpoints: tuple[Path, Path, dict]) -> None:
    src, _, _ = checkpoints
    expected = expected_linear_names(CONFIG)
    assert quantized_linears(src) == []
    with pytest.raises(QuantizeError, match=r"no quantised linears .*matched nothing"):
        check_linears(quantized_linears(src), expected)
    with pytest.raises(QuantizeError, match="quantised 6 linears, expected 7"):
        check_linears(expected[:6], expected)


def test_broken_layer_fails() -> None:
    rows = [{"layer": "a", "rel_error": 0.1}, {"layer": "b", "rel_error": float("nan")}]
    with pytest.raises(QuantizeError, match=r"1 quantised linear\(s\).*b \(nan\)"):
        check_errors(rows)
    with pytest.raises(QuantizeError, match=r"c \(0\.9\)"):
        check_errors([{"layer": "c", "rel_error": 0.9}])


def test_finalize_copies_tokenizer_and_checks_config(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "config.json").write_text(json.dumps({**CONFIG, "use_cache": True}))
    (src / "chat_template.jinja").write_text("{{ messages }}")
    (src / "tokenizer.json").write_text("{}")
    qc = {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm"}
    (out / "config.json").write_text(
        json.dumps({**CONFIG, "use_cache": False, "quantization_config": qc})
    )
    cfg = finalize_model_dir(src, out, qc)
    assert cfg["use_cache"] is True
    assert (out / "chat_template.jinja").read_text() == "{{ messages }}"
    assert (out / "tokenizer.json").is_file()
    with pytest.raises(QuantizeError, match="group_size"):
        finalize_model_dir(src, out, {**qc, "group_size": 128})
