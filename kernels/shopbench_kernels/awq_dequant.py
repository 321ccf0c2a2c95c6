"""AutoAWQ's packed GEMM layout in numpy: unpack, pack and dequantise.

A ``WQLinear_GEMM`` with ``in_features`` I, ``out_features`` O and group size g stores

* ``qweight``: int32 ``[I, O / 8]``, eight 4-bit weights per word,
* ``qzeros``: int32 ``[I / g, O / 8]``, eight 4-bit zero points per word,
* ``scales``: float ``[I / g, O]``,

and the weight (already transposed to ``[in, out]``) is ``(q - z) * s`` per group of g input
rows. Inside each word, nibble k (bits 4k..4k+3) holds output column ``8 * word +
AWQ_ORDER[k]`` with ``AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]`` (``awq.utils.packing_utils``);
reading the columns back in order takes nibble ``AWQ_REVERSE_ORDER[c]`` for column c.
"""

from __future__ import annotations

import numpy as np

from shopbench_kernels.errors import AwqLayoutError

AWQ_BITS = 4
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)
_PACK = 32 // AWQ_BITS
_SHIFTS = np.arange(0, 32, AWQ_BITS, dtype=np.uint32)


def unpack_gemm(packed: np.ndarray) -> np.ndarray:
    """Unpack AWQ GEMM int32 words into 4-bit values in logical column order.

    Args:
        packed: int32 ``[rows, cols / 8]`` (``qweight`` or ``qzeros``).

    Returns:
        uint8 ``[rows, cols]`` with values 0..15.

    Raises:
        AwqLayoutError: Not a 2-D int32 array.
    """
    if packed.ndim != 2 or packed.dtype not in (np.int32, np.uint32):
        raise AwqLayoutError(
            f"packed AWQ tensor must be 2-D int32, got {packed.dtype} {packed.shape}"
        )
    words = packed.view(np.uint32)
    nibbles = ((words[:, :, None] >> _SHIFTS) & 0xF).astype(np.uint8)  # [r, c/8, nibble]
    return nibbles[:, :, list(AWQ_REVERSE_ORDER)].reshape(packed.shape[0], -1)


def pack_gemm(values: np.ndarray) -> np.ndarray:
    """Pack 4-bit values (logical column order) into AWQ GEMM int32 words.

    Args:
        values: Integers 0..15, ``[rows, cols]`` with ``cols % 8 == 0``.

    Returns:
        int32 ``[rows, cols / 8]``; :func:`unpack_gemm` inverts it.

    Raises:
        AwqLayoutError: Wrong shape or values outside 0..15.
    """
    if values.ndim != 2 or values.shape[1] % _PACK:
        raise AwqLayoutError(f"values must be [rows, cols] with cols % 8 == 0, got {values.shape}")
    if values.size and (values.min() < 0 or values.max() > 0xF):
        raise AwqLayoutError("4-bit values must lie in 0..15")
    cols = values.astype(np.uint32).reshape(values.shape[0], -1, _PACK)
    nibbles = cols[:, :, list(AWQ_ORDER)]  # nibble k holds column AWQ_ORDER[k]
    words = np.bitwise_or.reduce(nibbles << _SHIFTS, axis=2)
    return words.astype(np.uint32).view(np.int32)


def dequantize_gemm(
    qweight: np.ndarray,
    qzeros: np.ndarray,
    scales: np.ndarray,
    group_size: int,
) -> np.ndarray:
    """Dequantise one AWQ GEMM linear to its ``[in, out]`` weight.

    Matches ``awq.utils.packing_utils.dequantize_gemm`` bit for bit: ``(q - z)`` is a small
    integer, its product with a float16 scale is exact in float32, so one rounding to the
    scales' dtype gives the same value as the float16 product.

    Args:
        qweight: int32 ``[in, out / 8]``.
        qzeros: int32 ``[in / group_size, out / 8]``.
        scales: float ``[in / group_size, out]``.
        group_size: Input rows per group.

    Returns:
        ``[in, out]`` in the dtype of ``scales``. (``nn.Linear.weight`` is its transpose.)

    Raises:
        AwqLayoutError: Shapes that do not fit together.
    """
    if group_size < 1:
        raise AwqLayoutError(f"group_size must be positive, got {group_size}")
    n_in, n_packed = qweight.shape if qweight.ndim == 2 else (-1, -1)
    n_out = n_packed * _PACK
    n_groups = n_in // group_size if n_in > 0 else -1
    if n_in < 1 or n_in % group_size:
        raise AwqLayoutError(
            f"qweight {qweight.shape}: in_features must be a positive multiple of group_size "
            f"{group_size}"
        )
    if qzeros.shape != (n_groups, n_packed):
        raise AwqLayoutError(
            f"qzeros shape {qzeros.shape} does not fit qweight {qweight.shape} with group_size "
            f"{group_size} (expected {(n_groups, n_packed)})"
        )
    if scales.shape != (n_groups, n_out):
        raise AwqLayoutError(
            f"scales shape {scales.shape} does not fit qweight {qweight.shape} with group_size "
            f"{group_size} (expected {(n_groups, n_out)})"
        )
    q = unpack_gemm(qweight).astype(np.int16).reshape(n_groups, group_size, n_out)
    z = unpack_gemm(qzeros).astype(np.int16)[:, None, :]
    s = scales.astype(np.float32)[:, None, :]
    w = (q - z).astype(np.float32) * s
    return w.reshape(n_in, n_out).astype(scales.dtype, copy=False)


def relative_error(reference: np.ndarray, approx: np.ndarray) -> float:
    """Relative Frobenius error ``||approx - reference|| / ||reference||`` in float64.

    Args:
        reference: The original weight.
        approx: Its reconstruction (same shape).

    Returns:
        The relative error (``inf`` when the reference is all zeros and approx is not).
    """
    if reference.shape != approx.shape:
        raise AwqLayoutError(f"shape mismatch: {reference.shape} vs {approx.shape}")
    ref = reference.astype(np.float64)
    num = float(np.linalg.norm(approx.astype(np.float64) - ref))
    den = float(np.linalg.norm(ref))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den
