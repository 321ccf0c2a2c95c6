"""Where the zero channels of a padded MLP go.

:func:`placement_map` decides, for every channel of the padded ``intermediate_size``,
which original channel it holds (or that it is a zero channel); :class:`_Layout` turns that
map into the runs and the stride the writers copy by.

Attributes:
    Placement: The placement names, as a type.
    PLACEMENTS: The placement names: ``interleave`` and ``append``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from shopbench_kernels.errors import PaddingError

Placement = Literal["interleave", "append"]
PLACEMENTS: tuple[str, ...] = ("interleave", "append")


def placement_map(old: int, new: int, placement: Placement) -> np.ndarray:
    """Where each channel of the padded MLP comes from.

    With ``P = new - old`` zero channels:

    * ``append``: slots ``old .. new-1`` are zero.
    * ``interleave``: slot ``j`` (0-based) is zero iff ``floor((j+1)*P/new) >
      floor(j*P/new)``, i.e. the zeros sit at ``ceil(k*new/P) - 1`` for ``k = 1..P``: evenly
      spaced ``new/P`` apart, the last slot always zero. Any ``g`` consecutive slots then
      hold at least ``floor(g*old/new)`` original channels, which is at least one whenever
      ``old >= new/g``: no AWQ group of ``down_proj``'s inputs (nor of any TP shard's
      inputs, since shards are group-aligned) is all zeros. 29568 -> 29696 puts a zero at
      every 232nd slot, so each 128-group holds at most one.

    In both, the original channels fill the remaining slots in their original order.

    Args:
        old: Current intermediate size.
        new: Padded intermediate size (>= old).
        placement: ``interleave`` or ``append``.

    Returns:
        int64 array of length ``new``: the original channel index, or -1 for a zero slot.

    Raises:
        PaddingError: ``new < old`` or an unknown placement.
    """
    if placement not in PLACEMENTS:
        raise PaddingError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if new < old:
        raise PaddingError(f"target intermediate_size {new} is smaller than the current {old}")
    out = np.full(new, -1, dtype=np.int64)
    pad = new - old
    if placement == "append" or pad == 0:
        out[:old] = np.arange(old)
        return out
    j = np.arange(new, dtype=np.int64)
    zero = ((j + 1) * pad) // new > (j * pad) // new
    out[~zero] = np.arange(old)
    return out


def _runs(mapping: np.ndarray) -> list[tuple[int, int, int]]:
    """Maximal ``(src_start, dst_start, length)`` runs of consecutive original channels."""
    dst = np.flatnonzero(mapping >= 0)
    if dst.size == 0:
        return []
    src = mapping[dst]
    breaks = np.flatnonzero((np.diff(dst) != 1) | (np.diff(src) != 1)) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [dst.size]))
    return [(int(src[s]), int(dst[s]), int(e - s)) for s, e in zip(starts, ends, strict=True)]


@dataclass(frozen=True)
class _Layout:
    """How original channels map to padded ones, precomputed once per run."""

    runs: list[tuple[int, int, int]]  # (src_start, dst_start, length), in channels
    new: int
    period: int | None  # zeros exactly at slots k*period - 1: one strided copy per block

    @classmethod
    def of(cls, mapping: np.ndarray) -> _Layout:
        new = int(mapping.size)
        pad = int((mapping < 0).sum())
        period = None
        if pad and new % pad == 0:
            blocks = mapping.reshape(pad, new // pad)
            if (blocks[:, -1] < 0).all() and (blocks[:, :-1] >= 0).all():
                period = new // pad
        return cls(_runs(mapping), new, period)
