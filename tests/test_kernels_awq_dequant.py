"""AWQ GEMM unpacking/dequantisation against AutoAWQ's own code."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from shopbench_kernels.awq_dequant import (
    AWQ_ORDER,
    dequantize_gemm,
    pack_gemm,
    relative_error,
    unpack_gemm,
)
from shopbench_kernels.errors import AwqLayoutError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def packing_utils() -> ModuleType:
    """AutoAWQ's ``awq/utils/packing_utils.py``, loaded from its file: importing the ``awq``
    package itself pulls in transformers and takes ~15 s, this module needs only torch."""
    spec = importlib.util.find_spec("awq")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("autoawq is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "utils" / "packing_utils.py"
    mod_spec = importlib.util.spec_from_file_location("awq_packing_utils", path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def _random_packed(
    rng: np.random.Generator, n_in: int, n_out: int, group: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    qweight = rng.integers(-(2**31), 2**31, size=(n_in, n_out // 8), dtype=np.int64)
    qzeros = rng.integers(-(2**31), 2**31, size=(n_in // group, n_out // 8), dtype=np.int64)
    scales = (rng.random((n_in // group, n_out)) * 0.05 + 1e-3).astype(np.float16)
    return qweight.astype(np.int32), qzeros.astype(np.int32), scales


def test_pack_order_is_autoawq_gemm_order(packing_utils: ModuleType) -> None:
    assert list(AWQ_ORDER) == packing_utils.AWQ_ORDER
    # Column c of a word lives in nibble AWQ_ORDER.index(c).
    values = np.arange(8, dtype=np.int64)[None, :]
    word = int(pack_gemm(values).view(np.uint32)[0, 0])
    nibbles = [(word >> (4 * k)) & 0xF for k in range(8)]
    assert nibbles == [0, 2, 4, 6, 1, 3, 5, 7]


@pytest.mark.parametrize(
    ("n_in", "n_out", "group"), [(128, 64, 128), (256, 128, 64), (384, 40, 32), (64, 8, 64)]
)
def test_dequantize_matches_autoawq_bit_for_bit(
    packing_utils: ModuleType, n_in: int, n_out: int, group: int
) -> None:
    rng = np.random.default_rng(n_in * 7 + n_out)
    qweight, qzeros, scales = _random_packed(rng, n_in, n_out, group)
    ours = dequantize_gemm(qweight, qzeros, scales, group)
    theirs = packing_utils.dequantize_gemm(
        torch.from_numpy(qweight), torch.from_numpy(qzeros), torch.from_numpy(scales), 4, group
    ).numpy()
    assert ours.dtype == theirs.dtype == np.float16
    assert ours.shape == theirs.shape == (n_in, n_out)
    assert np.array_equal(ours.view(np.uint16), theirs.view(np.uint16))


def test_unpack_matches_autoawq(packing_utils: ModuleType) -> None:
    rng = np.random.default_rng(1)
    qweight, qzeros, _ = _random_packed(rng, 64, 32, 32)
    iw, iz = packing_utils.unpack_awq(torch.from_numpy(qweight), torch.from_numpy(qzeros), 4)
    iw, iz = packing_utils.reverse_awq_order(iw, iz, 4)
    assert np.array_equal(unpack_gemm(qweight), (iw & 0xF).numpy())
    assert np.array_equal(unpack_gemm(qzeros), (iz & 0xF).numpy())


def test_pack_unpack_round_trip() -> None:
    rng = np.random.default_rng(2)
    values = rng.integers(0, 16, size=(5, 48))
    packed = pack_gemm(values)
    assert packed.dtype == np.int32 and packed.shape == (5, 6)
    assert np.array_equal(unpack_gemm(packed), values)


def test_quantise_dequantise_round_trip_recovers_weight() -> None:
    """Quantise a weight the way AWQ does (asymmetric, per group), pack, dequantise."""
    rng = np.random.default_rng(3)
    n_in, n_out, group = 256, 64, 64
    w = rng.normal(size=(n_in, n_out)).astype(np.float32)
    g = w.reshape(n_in // group, group, n_out)
    lo, hi = g.min(axis=1), g.max(axis=1)
    scales = ((hi - lo) / 15).astype(np.float16)
    zeros = np.clip(np.round(-lo / scales.astype(np.float32)), 0, 15)
    q = np.clip(np.round(g / scales.astype(np.float32)[:, None]) + zeros[:, None], 0, 15)
    deq = dequantize_gemm(
        pack_gemm(q.reshape(n_in, n_out).astype(np.int64)),
        pack_gemm(zeros.astype(np.int64)),
        scales,
        group,
    )
    err = relative_error(w, deq.astype(np.float32))
    assert 0 < err < 0.15  # 4-bit, 64-wide groups of N(0, 1): about 8 %


def test_layout_errors_name_the_shapes() -> None:
    rng = np.random.default_rng(4)
    qweight, qzeros, scales = _random_packed(rng, 128, 64, 64)
    with pytest.raises(AwqLayoutError, match="qzeros shape"):
        dequantize_gemm(qweight, qzeros[:1], scales, 64)
    with pytest.raises(AwqLayoutError, match="scales shape"):
        dequantize_gemm(qweight, qzeros, scales[:, :8], 64)
    with pytest.raises(AwqLayoutError, match="multiple of group_size"):
        dequantize_gemm(qweight, qzeros, scales, 96)
    with pytest.raises(AwqLayoutError, match="2-D int32"):
        unpack_gemm(qweight.astype(np.int64))
    with pytest.raises(AwqLayoutError, match=r"0\.\.15"):
        pack_gemm(np.full((1, 8), 16))
    with pytest.raises(AwqLayoutError, match="shape mismatch"):
        relative_error(np.zeros((2, 2)), np.zeros((2, 3)))
    assert relative_error(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0


@pytest.mark.slow
def test_dequantize_autoawq_wqlinear_gemm() -> None:
    """AutoAWQ's real packer (``WQLinear_GEMM.from_linear``, fed as its quantizer feeds it:
    the pseudo-quantised weight, scales and zeros as ``[in / group, out]``) round-trips
    through our unpacking to the same integers and through our dequantisation to the
    pseudo-quantised weight."""
    awq_gemm = pytest.importorskip("awq.modules.linear.gemm")
    torch.manual_seed(0)
    n_in, n_out, group = 256, 128, 64
    linear = torch.nn.Linear(n_in, n_out, bias=False)
    w = linear.weight.data.reshape(-1, group)  # AutoAWQ's pseudo_quantize_tensor, zero point
    max_val, min_val = w.amax(dim=1, keepdim=True), w.amin(dim=1, keepdim=True)
    scales = (max_val - min_val).clamp(min=1e-5) / 15
    zeros = (-torch.round(min_val / scales)).clamp(0, 15)
    q_int = torch.clamp(torch.round(w / scales) + zeros, 0, 15)
    linear.weight.data = ((q_int - zeros) * scales).reshape(n_out, n_in)
    scales_t = scales.view(n_out, -1).t().contiguous()
    zeros_t = zeros.view(n_out, -1).t().contiguous()
    q = awq_gemm.WQLinear_GEMM.from_linear(linear, 4, group, scales=scales_t, zeros=zeros_t)

    unpacked = unpack_gemm(q.qweight.numpy())
    assert np.array_equal(unpacked, q_int.reshape(n_out, n_in).t().numpy().astype(np.uint8))
    assert np.array_equal(unpack_gemm(q.qzeros.numpy()), zeros_t.numpy().astype(np.uint8))
    deq = dequantize_gemm(q.qweight.numpy(), q.qzeros.numpy(), q.scales.numpy(), group)
    want = linear.weight.data.t().numpy()
    assert relative_error(want, deq.astype(np.float32)) < 1e-3  # fp16 scales
