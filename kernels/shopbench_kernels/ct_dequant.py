"""compressed-tensors' ``pack-quantized`` layout (llm-compressor's 4-bit output) in numpy.

A linear with ``in_features`` I, ``out_features`` O, group size g and asymmetric int4
weights stores

* ``weight_packed``: int32 ``[O, I / 8]``: nibble k (bits 4k..4k+3) of word w holds input
  column ``8 * w + k``, as the unsigned value ``q + 8`` of the signed weight q in -8..7;
* ``weight_scale``: float ``[O, I / g]``;
* ``weight_zero_point``: int32 ``[O / 8, I / g]`` (asymmetric only), packed the same way
  along the output rows: nibble k of row w holds output row ``8 * w + k``, as ``z + 8``;
* ``weight_shape``: the ``[O, I]`` shape,

and the weight ``[out, in]`` is ``(q - z) * s`` per group of g input columns (symmetric: z =
0). The ``+ 8`` offsets cancel in ``q - z``.
"""

from __future__ import annotations

import numpy as np

from shopbench_kernels.errors import AwqLayoutError

CT_BITS = 4
_PACK = 32 // CT_BITS
_SHIFTS = np.arange(0, 32, CT_BITS, dtype=np.uint32)
_OFFSET = 1 << (CT_BITS - 1)


def unpack_rows(packed: np.ndarray, cols: int) -> np.ndarray:
    """Unpack int32 words along the last axis into signed 4-bit values.

    Args:
        packed: int32 ``[rows, ceil(cols / 8)]``.
        cols: Logical columns (the last word may be partly used).

    Returns:
        int8 ``[rows, cols]`` with values -8..7.

    Raises:
        AwqLayoutError: Not a 2-D int32 array, or too few words for ``cols``.
    """
    if packed.ndim != 2 or packed.dtype not in (np.int32, np.uint32):
        raise AwqLayoutError(
            f"packed compressed-tensors tensor must be 2-D int32, got {packed.dtype} {packed.shape}"
        )
    if packed.shape[1] * _PACK < cols:
        raise AwqLayoutError(f"{packed.shape[1]} words cannot hold {cols} 4-bit values")
    words = packed.view(np.uint32)
    nibbles = ((words[:, :, None] >> _SHIFTS) & 0xF).astype(np.int8)
    return nibbles.reshape(packed.shape[0], -1)[:, :cols] - _OFFSET


def dequantize_pack_quantized(
    weight_packed: np.ndarray,
    weight_scale: np.ndarray,
    weight_zero_point: np.ndarray | None,
    shape: tuple[int, int],
) -> np.ndarray:
    """Dequantise one ``pack-quantized`` linear to its ``[out, in]`` float32 weight.

    Args:
        weight_packed: int32 ``[O, I / 8]``.
        weight_scale: ``[O, I / g]``.
        weight_zero_point: int32 ``[O / 8, I / g]`` or None (symmetric).
        shape: ``(O, I)``.

    Returns:
        float32 ``[O, I]``.

    Raises:
        AwqLayoutError: Shapes that do not describe one ``[O, I]`` weight.
    """
    out_f, in_f = shape
    q = unpack_rows(weight_packed, in_f).astype(np.float32)
    if q.shape[0] != out_f:
        raise AwqLayoutError(f"weight_packed has {q.shape[0]} rows, the weight {out_f}")
    if weight_scale.ndim != 2 or weight_scale.shape[0] != out_f or in_f % weight_scale.shape[1]:
        raise AwqLayoutError(
            f"weight_scale {weight_scale.shape} does not group a [{out_f}, {in_f}] weight"
        )
    group = in_f // weight_scale.shape[1]
    z = np.zeros_like(weight_scale, dtype=np.float32)
    if weight_zero_point is not None:
        z = unpack_rows(np.ascontiguousarray(weight_zero_point.T), out_f).T.astype(np.float32)
        if z.shape != weight_scale.shape:
            raise AwqLayoutError(
                f"weight_zero_point unpacks to {z.shape}, weight_scale is {weight_scale.shape}"
            )
    s = weight_scale.astype(np.float32)
    return (q - np.repeat(z, group, axis=1)) * np.repeat(s, group, axis=1)
