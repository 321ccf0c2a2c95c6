"""Streaming, exact ``intermediate_size`` padding of a Hugging Face safetensors checkpoint.

The MLP of a Llama/Qwen2-style decoder is ``down(act(gate(x)) * up(x))``. Adding intermediate
channels whose ``gate_proj``/``up_proj`` rows (and biases) and ``down_proj`` columns are zero
leaves the function unchanged: a new channel computes ``act(0) * 0 = 0`` and ``down_proj``
multiplies it by a zero column. Every other tensor is copied byte for byte.

The checkpoint is streamed tensor by tensor, with each shard's safetensors header computed
up front: verbatim ranges (copied tensors, runs of ``gate``/``up`` rows) are read, hashed
and written through one small buffer, long zero runs become holes, and ``down_proj`` is
re-laid in blocks of rows into the same buffer; every output file's sha256 is computed on
the way. Peak memory is two buffers (default 512 KiB each) per shard worker, independent of
the model size; shards are written in parallel (up to four at a time by default). Padding
works on raw bits, so every dtype (bf16 included) is preserved exactly: all-zero bits are
+0.0 in every float format.

Output goes to a hidden sibling ``.<dst>.partial-<pid>-<token>`` that is renamed to ``dst``
only after every file is written, flushed and re-opened with ``safetensors``; on any error
it is removed, and leftovers of killed runs are removed by the next run. ``dst`` therefore
either does not exist or is complete.

The work is split by what it does: :mod:`shopbench_kernels.pad_placement` (where the zero channels
go), :mod:`shopbench_kernels.pad_reading` (safetensors headers, JSON files), :mod:`shopbench_kernels.pad_plan`
(validation and the per-tensor plan), :mod:`shopbench_kernels.pad_writer` (the buffered, hashing
writer), :mod:`shopbench_kernels.pad_relayout` (padding one tensor) and :mod:`shopbench_kernels.pad_writing`
(writing and verifying the output files). This module is the entry point: it runs them in
order, moves the result into place atomically and re-exports their public names.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shopbench_kernels.errors import CheckpointError, PaddingError
from shopbench_kernels.fsutil import fsync_dir as _fsync_dir
from shopbench_kernels.fsutil import pid_alive as _pid_alive
from shopbench_kernels.pad_placement import PLACEMENTS, Placement, _Layout, placement_map
from shopbench_kernels.pad_plan import (
    SKIPPED_PATTERNS,
    SUPPORTED_ARCHITECTURES,
    SUPPORTED_MODEL_TYPES,
    CheckpointPlan,
    plan_checkpoint,
)
from shopbench_kernels.pad_reading import (
    CONFIG_NAME,
    DTYPE_SIZES,
    FLOAT_DTYPES,
    INDEX_NAME,
    MAX_HEADER_BYTES,
    WEIGHTS_NAME,
    ShardHeader,
    TensorInfo,
    read_config,
    read_header,
)
from shopbench_kernels.pad_writer import DEFAULT_CHUNK_BYTES, _Writer
from shopbench_kernels.pad_writing import _copy_file, _verify_output, _write_json, _write_shards
from shopbench_kernels.tp_math import check_tp, pad_target

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_CHUNK_BYTES",
    "DTYPE_SIZES",
    "FLOAT_DTYPES",
    "INDEX_NAME",
    "MAX_HEADER_BYTES",
    "PLACEMENTS",
    "SKIPPED_PATTERNS",
    "SUPPORTED_ARCHITECTURES",
    "SUPPORTED_MODEL_TYPES",
    "WEIGHTS_NAME",
    "CheckpointPlan",
    "Placement",
    "ShardHeader",
    "TensorInfo",
    "pad_checkpoint",
    "placement_map",
    "plan_checkpoint",
    "read_config",
    "read_header",
    "stale_partials",
]

_PARTIAL_RE = r"^\.{name}\.partial-(?P<pid>\d+)-[0-9a-f]+$"


def stale_partials(dst: Path) -> list[Path]:
    """Leftover ``.<dst>.partial-<pid>-<token>`` dirs of runs whose process is gone."""
    dst = Path(dst)
    if not dst.parent.is_dir():
        return []
    pattern = re.compile(_PARTIAL_RE.format(name=re.escape(dst.name)))
    out = []
    for p in dst.parent.iterdir():
        m = pattern.match(p.name)
        if m and not _pid_alive(int(m["pid"])):
            out.append(p)
    return sorted(out)


def pad_checkpoint(
    src: Path | str,
    dst: Path | str,
    target: int | None = None,
    *,
    tp_sizes: Sequence[int] = (),
    group_size: int | None = None,
    placement: Placement = "interleave",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    durable: bool = True,
    workers: int | None = None,
) -> dict[str, Any]:
    """Pad a checkpoint's MLP ``intermediate_size`` with zero channels, streaming.

    ``gate_proj``/``up_proj`` weight rows (and biases) and ``down_proj`` weight columns get
    zeros at the slots given by :func:`placement_map`; every other tensor, the safetensors
    metadata, the shard layout and every non-weight file (tokenizer, generation config,
    chat template, ...) are copied; ``config.json`` gets the new ``intermediate_size`` and
    the index its new ``total_size``. Weight files in other formats are not copied.

    Args:
        src: A Hugging Face model dir with ``model.safetensors`` or a sharded index.
        dst: Output dir; must not exist (or be empty). Written atomically.
        target: New intermediate size; None: the smallest serving ``tp_sizes``.
        tp_sizes: Tensor parallel sizes the result must serve (checked with
            :func:`shopbench_kernels.tp_math.check_tp`).
        group_size: AWQ group size the TP check assumes (None: unquantised serving).
        placement: ``interleave`` (default) or ``append``.
        chunk_bytes: Bytes per read/write block (bounds memory).
        durable: fsync every file and the directories before/after the rename.
        workers: Shards written in parallel (default: up to 4, at most one per CPU). Each
            holds two buffers of ``chunk_bytes``.

    Returns:
        A summary: ``source``, ``output``, ``intermediate_size`` {before, after},
        ``placement``, ``tensors_padded``, ``tensors_copied``, ``shards``, ``files``
        (relative path -> sha256 of every output file), ``skipped`` (weight files of other
        formats not copied), ``bytes_written`` and ``seconds``.

    Raises:
        PaddingError: No target and no TP sizes, target too small, or a target that fails
            a requested TP size (every reason is listed).
        UnsupportedModelError: Not a Llama/Qwen2-style dense MLP, or already quantised.
        CheckpointError: Bad source (see :func:`plan_checkpoint`) or an existing ``dst``.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if chunk_bytes < 1:
        raise PaddingError(f"chunk_bytes must be positive, got {chunk_bytes}")
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    if workers < 1:
        raise PaddingError(f"workers must be positive, got {workers}")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise CheckpointError(f"{dst}: output already exists; refusing to overwrite it")
    if src.resolve() == dst.resolve():
        raise CheckpointError(f"{dst}: output must differ from the source")
    config = read_config(src)
    if target is None:
        if not tp_sizes:
            raise PaddingError("give a target intermediate_size or tensor parallel sizes")
        try:
            target = pad_target(config, tp_sizes, group_size)
        except PaddingError as e:
            raise PaddingError(f"{src / CONFIG_NAME}: {e}") from e
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise PaddingError(f"target intermediate_size must be a positive integer, got {target!r}")

    plan = plan_checkpoint(src, target)
    padded_config = {**plan.config, "intermediate_size": target}
    problems = [
        f"tp {tp}: {msg}"
        for tp in sorted(set(tp_sizes))
        for msg in check_tp(padded_config, tp, group_size)
    ]
    if problems:
        raise PaddingError(
            f"target intermediate_size {target} does not serve the requested tensor parallel "
            f"sizes (group_size {group_size}):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    mapping = placement_map(plan.intermediate_size, target, placement)
    if placement == "interleave" and group_size is not None and group_size > 0:
        groups = mapping.reshape(-1, group_size) if target % group_size == 0 else None
        if groups is not None and bool((groups < 0).all(axis=1).any()):
            raise PaddingError(
                f"padding {plan.intermediate_size} -> {target} leaves a group of {group_size} "
                "channels all zero under any placement (the target is too large)"
            )
    layout = _Layout.of(mapping)

    for stale in stale_partials(dst):
        shutil.rmtree(stale, ignore_errors=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    files: dict[str, str] = {}
    try:
        files.update(_write_shards(plan, tmp, layout, chunk_bytes, durable, workers))
        with _Writer(chunk_bytes) as out:
            if plan.index is not None:
                index = dict(plan.index)
                index["metadata"] = {
                    **(plan.index.get("metadata") or {}),
                    "total_size": sum(t.new_nbytes for s in plan.shards for t in s.tensors),
                }
                files[INDEX_NAME] = _write_json(tmp / INDEX_NAME, index, out, durable)
            files[CONFIG_NAME] = _write_json(tmp / CONFIG_NAME, padded_config, out, durable)
            for rel in plan.extra_files:
                files[rel] = _copy_file(src / rel, tmp / rel, out, durable)
        _verify_output(tmp, plan)
        if durable:
            for d in sorted({(tmp / rel).parent for rel in files}, reverse=True):
                _fsync_dir(d)
        os.rename(tmp, dst)
        if durable:
            _fsync_dir(dst.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tensors = [t for s in plan.shards for t in s.tensors]
    return {
        "source": str(src),
        "output": str(dst),
        "intermediate_size": {"before": plan.intermediate_size, "after": target},
        "placement": placement,
        "tensors_padded": sum(t.op != "copy" for t in tensors),
        "tensors_copied": sum(t.op == "copy" for t in tensors),
        "shards": [s.name for s in plan.shards],
        "files": dict(sorted(files.items())),
        "skipped": list(plan.skipped_files),
        "bytes_written": sum((dst / rel).stat().st_size for rel in files),
        "seconds": round(time.perf_counter() - t0, 3),
    }
