"""Padding one MLP tensor on the way through the writer.

``gate_proj``/``up_proj`` are padded by whole rows (:func:`_emit_rows`: runs of source rows
with zero rows between them); ``down_proj`` is padded by columns (:func:`_emit_cols`: blocks
of rows re-laid by :func:`_relayout` from the read buffer into the output buffer). Both work
on raw bits, so every dtype is preserved exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from shopbench_kernels.pad_placement import _Layout
from shopbench_kernels.pad_plan import _TensorPlan
from shopbench_kernels.pad_reading import DTYPE_SIZES
from shopbench_kernels.pad_writer import _pread_into, _Writer


def _emit_rows(fd: int, path: Path, tp: _TensorPlan, layout: _Layout, out: _Writer) -> None:
    """Padded channels are whole rows: copy runs of source rows, zero rows in between."""
    info = tp.info
    row = math.prod(info.shape[1:]) * DTYPE_SIZES[info.dtype]
    cursor = 0
    for src_start, dst_start, length in layout.runs:
        out.put_zeros((dst_start - cursor) * row)
        out.put_file(fd, info.start + src_start * row, length * row, path)
        cursor = dst_start + length
    out.put_zeros((layout.new - cursor) * row)


def _relayout(src: np.ndarray, dst: np.ndarray, layout: _Layout, itemsize: int) -> None:
    """Copy ``src`` rows [r, old bytes] into ``dst`` rows [r, new bytes] with zero columns.

    Works on unsigned integers of the element size (any dtype's bits, copied whole: about
    twice as fast as copying bytes).
    """
    r = src.shape[0]
    unit = np.dtype(f"u{itemsize}")
    s, d = src.view(unit).reshape(r, -1), dst.view(unit).reshape(r, -1)
    if layout.period is not None:
        p = layout.period
        blocks = d.reshape(-1, p)
        blocks[:, : p - 1] = s.reshape(-1, p - 1)
        blocks[:, p - 1] = 0
        return
    cursor = 0
    for src_start, dst_start, length in layout.runs:
        if dst_start > cursor:
            d[:, cursor:dst_start] = 0
        d[:, dst_start : dst_start + length] = s[:, src_start : src_start + length]
        cursor = dst_start + length
    if layout.new > cursor:
        d[:, cursor:] = 0


def _emit_cols(fd: int, path: Path, tp: _TensorPlan, layout: _Layout, out: _Writer) -> None:
    """Padded channels are columns: re-lay blocks of whole rows (as bytes: any dtype) from
    the read buffer directly into the output buffer."""
    info = tp.info
    itemsize = DTYPE_SIZES[info.dtype]
    n_rows, old_cols = info.shape
    old_row, new_row = old_cols * itemsize, layout.new * itemsize
    if new_row > out.chunk:  # rows wider than a buffer: one row at a time, via a temporary
        for i in range(n_rows):
            src = np.empty(old_row, dtype=np.uint8)
            _pread_into(fd, memoryview(src), info.start + i * old_row, path)
            dst = np.empty((1, new_row), dtype=np.uint8)
            _relayout(src.reshape(1, -1), dst, layout, itemsize)
            out.put_bytes(dst.tobytes())
        return
    read_all = np.frombuffer(out.read_buf, dtype=np.uint8)
    r0 = 0
    while r0 < n_rows:
        room = out.room()
        r = min(room.nbytes // new_row, n_rows - r0)
        if r == 0:
            out.flush()
            continue
        src = read_all[: r * old_row]
        _pread_into(fd, memoryview(src), info.start + r0 * old_row, path)
        dst = np.frombuffer(room, dtype=np.uint8, count=r * new_row).reshape(r, new_row)
        _relayout(src.reshape(r, old_row), dst, layout, itemsize)
        del dst
        out.advance(r * new_row)
        r0 += r
