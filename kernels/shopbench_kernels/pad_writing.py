"""Writing the padded checkpoint's files into the partial output directory.

Shards are written in parallel, each through its own :class:`~shopbench_kernels.pad_writer._Writer`
(:func:`_write_shards`); JSON files and the other files of the model dir are written or
copied through one writer; :func:`_verify_output` re-opens every written shard before the
directory is renamed into place.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from shopbench_kernels.errors import CheckpointError
from shopbench_kernels.pad_placement import _Layout
from shopbench_kernels.pad_plan import CheckpointPlan, _ShardPlan
from shopbench_kernels.pad_reading import read_header
from shopbench_kernels.pad_relayout import _emit_cols, _emit_rows
from shopbench_kernels.pad_writer import _Writer


def _header_bytes(shard: _ShardPlan) -> bytes:
    header: dict[str, Any] = {}
    if shard.header.metadata is not None:
        header["__metadata__"] = shard.header.metadata
    offset = 0
    for tp in shard.tensors:
        n = tp.new_nbytes
        header[tp.info.name] = {
            "dtype": tp.info.dtype,
            "shape": list(tp.new_shape),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _write_shard(shard: _ShardPlan, dst: Path, layout: _Layout, out: _Writer, durable: bool) -> str:
    """Write one padded shard; returns its sha256."""
    fd = os.open(shard.header.path, os.O_RDONLY)
    try:
        out.open(dst)
        out.put_bytes(_header_bytes(shard))
        for tp in shard.tensors:
            if tp.op == "copy":
                out.put_file(fd, tp.info.start, tp.info.nbytes, shard.header.path)
            elif tp.op == "rows":
                _emit_rows(fd, shard.header.path, tp, layout, out)
            else:
                _emit_cols(fd, shard.header.path, tp, layout, out)
        return out.close(durable)
    except BaseException:
        out.abort()
        raise
    finally:
        os.close(fd)


def _copy_file(src: Path, dst: Path, out: _Writer, durable: bool) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb", buffering=0) as f:
        out.open(dst)
        while n := f.readinto(out.room()):
            out.advance(n)
    return out.close(durable)


def _write_json(path: Path, obj: Any, out: _Writer, durable: bool) -> str:
    out.open(path)
    out.put_bytes((json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return out.close(durable)


def _write_shards(
    plan: CheckpointPlan,
    tmp: Path,
    layout: _Layout,
    chunk: int,
    durable: bool,
    workers: int,
) -> dict[str, str]:
    """Write every shard, ``workers`` at a time (shards are independent; each worker has its
    own buffer and hash). The first failure stops the others."""
    cancel = threading.Event()

    def job(shard: _ShardPlan) -> str:
        with _Writer(chunk, cancel) as out:
            return _write_shard(shard, tmp / shard.name, layout, out, durable)

    out: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shard") as pool:
        futures = {pool.submit(job, shard): shard.name for shard in plan.shards}
        try:
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
        except BaseException:
            cancel.set()
            raise
    return dict(sorted(out.items()))


def _verify_output(tmp: Path, plan: CheckpointPlan) -> None:
    # Re-open every written shard with the safetensors library itself: a file it cannot
    # read is never renamed into place.
    from safetensors import safe_open

    for shard in plan.shards:
        path = tmp / shard.name
        with safe_open(str(path), framework="numpy") as f:
            keys = set(f.keys())
        want = {t.info.name for t in shard.tensors}
        if keys != want:
            raise CheckpointError(
                f"{path}: written shard lists {len(keys)} tensors, not {len(want)}"
            )
        header = read_header(path)
        for t, tp in zip(header.tensors, shard.tensors, strict=True):
            if t.name != tp.info.name or t.shape != tp.new_shape or t.dtype != tp.info.dtype:
                raise CheckpointError(f"{path}: written tensor `{t.name}` is not as planned")
