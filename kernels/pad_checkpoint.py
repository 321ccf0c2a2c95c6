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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import struct
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kernels.errors import CheckpointError, PaddingError, UnsupportedModelError
from kernels.fsutil import fsync_dir as _fsync_dir
from kernels.fsutil import pid_alive as _pid_alive
from kernels.tp_math import check_tp, pad_target

Placement = Literal["interleave", "append"]
PLACEMENTS: tuple[str, ...] = ("interleave", "append")

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"

SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
)
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")

# Weight files of other formats are never copied next to the padded safetensors: they would
# hold the unpadded weights.
SKIPPED_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model*.bin.index.json",
    "tf_model*.h5",
    "flax_model*.msgpack",
    "*.gguf",
    "*.ckpt",
    "*.pt",
    "*.pth",
)

DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")

MAX_HEADER_BYTES = 100 << 20
DEFAULT_CHUNK_BYTES = 512 << 10  # half a core's L2 cache (see _Writer)
_HOLE_MIN = 1 << 20  # smaller zero runs are written (small holes fragment files)
_ZEROS_MAX = 1 << 20

_MLP_RE = re.compile(
    r"^(?P<prefix>(?:.*\.)?)layers\.(?P<layer>\d+)\.mlp\."
    r"(?P<proj>gate_proj|up_proj|down_proj)\.(?P<kind>weight|bias)$"
)
_PARTIAL_RE = r"^\.{name}\.partial-(?P<pid>\d+)-[0-9a-f]+$"


# --------------------------------------------------------------------------- placement


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


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file.

    Attributes:
        name: Tensor name.
        dtype: safetensors dtype string (``BF16``, ``F32``, ...).
        shape: Shape.
        start: Absolute file offset of its first byte.
        nbytes: Size in bytes.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    nbytes: int


@dataclass(frozen=True)
class ShardHeader:
    """The parsed header of a safetensors file.

    Attributes:
        path: The file.
        metadata: Its ``__metadata__`` (or None).
        tensors: Its tensors in file order.
    """

    path: Path
    metadata: dict[str, str] | None
    tensors: tuple[TensorInfo, ...]


def read_header(path: Path) -> ShardHeader:
    """Parse and validate a safetensors header (the data itself is not read).

    Checks the header JSON, dtypes, shapes, that the tensors tile the data region with no
    gap or overlap, and that the file is exactly as long as the header says.

    Args:
        path: A ``.safetensors`` file.

    Returns:
        Its header.

    Raises:
        CheckpointError: Missing, unreadable, malformed or truncated file.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise CheckpointError(
                    f"{path}: header length {n} does not fit the file ({size} bytes): "
                    "truncated or not a safetensors file"
                )
            raw = f.read(n)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: file not found") from e
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e}") from e
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: header is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    base = 8 + n
    tensors = []
    for name, entry in header.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: malformed header entry for `{name}`") from e
        if dtype not in DTYPE_SIZES:
            raise CheckpointError(f"{path}: tensor `{name}` has unknown dtype {dtype!r}")
        nbytes = math.prod(shape) * DTYPE_SIZES[dtype]
        if end - begin != nbytes or begin < 0 or any(d < 0 for d in shape):
            raise CheckpointError(
                f"{path}: tensor `{name}` offsets {begin}..{end} do not match its "
                f"{dtype} shape {list(shape)}"
            )
        tensors.append(TensorInfo(name, dtype, shape, base + begin, nbytes))
    tensors.sort(key=lambda t: (t.start, t.nbytes))
    cursor = base
    for t in tensors:
        if t.start != cursor:
            raise CheckpointError(
                f"{path}: tensor `{t.name}` starts at byte {t.start}, expected {cursor} "
                "(gap or overlap in the data region)"
            )
        cursor += t.nbytes
    if cursor != size:
        what = "truncated" if size < cursor else "has trailing bytes"
        raise CheckpointError(
            f"{path}: {what}: the header describes {cursor} bytes, the file has {size}"
        )
    return ShardHeader(path, metadata, tuple(tensors))


def read_config(src: Path) -> dict[str, Any]:
    """A model dir's ``config.json`` as a dict.

    Raises:
        CheckpointError: Missing, invalid JSON, or not an object.
    """
    config = _read_json(Path(src) / CONFIG_NAME)
    if not isinstance(config, dict):
        raise CheckpointError(f"{Path(src) / CONFIG_NAME}: not a JSON object")
    return config


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: file not found") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}") from e


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _TensorPlan:
    info: TensorInfo
    op: Literal["copy", "rows", "cols"]
    new_shape: tuple[int, ...]

    @property
    def new_nbytes(self) -> int:
        return math.prod(self.new_shape) * DTYPE_SIZES[self.info.dtype]


@dataclass(frozen=True)
class _ShardPlan:
    name: str
    header: ShardHeader
    tensors: tuple[_TensorPlan, ...]


@dataclass(frozen=True)
class CheckpointPlan:
    """What :func:`pad_checkpoint` will do, derived and validated before writing anything.

    Attributes:
        src: Source directory.
        config: Its ``config.json``.
        index: Its ``model.safetensors.index.json`` (None for a single file).
        shards: Shard plans in file-name order.
        intermediate_size: Current intermediate size.
        hidden_size: Hidden size.
        num_layers: Decoder layers.
        extra_files: Other files to copy (relative paths).
        skipped_files: Weight files of other formats that are not copied (relative paths).
    """

    src: Path
    config: dict[str, Any]
    index: dict[str, Any] | None
    shards: tuple[_ShardPlan, ...]
    intermediate_size: int
    hidden_size: int
    num_layers: int
    extra_files: tuple[str, ...]
    skipped_files: tuple[str, ...]


def _check_architecture(config: dict[str, Any], src: Path) -> None:
    where = src / CONFIG_NAME
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise UnsupportedModelError(
            f"{where}: the model is already quantised ({method}); pad the unquantised model "
            "before quantising it"
        )
    archs = config.get("architectures")
    if archs:
        bad = [a for a in archs if a not in SUPPORTED_ARCHITECTURES]
        if bad:
            raise UnsupportedModelError(
                f"{where}: architecture {', '.join(bad)} is not a supported Llama/Qwen2-style "
                f"dense MLP (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
            )
    elif config.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{where}: no `architectures` and model_type {config.get('model_type')!r} is not "
            f"one of {', '.join(SUPPORTED_MODEL_TYPES)}"
        )


def _config_int(config: dict[str, Any], key: str, src: Path) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(
            f"{src / CONFIG_NAME}: `{key}` must be a positive integer, got {value!r}"
        )
    return value


def _shard_names(src: Path) -> tuple[list[str], dict[str, Any] | None]:
    index_path, single = src / INDEX_NAME, src / WEIGHTS_NAME
    if index_path.is_file():
        if single.exists():
            raise CheckpointError(
                f"{src}: both {WEIGHTS_NAME} and {INDEX_NAME} exist; keep only one"
            )
        index = _read_json(index_path)
        wmap = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wmap, dict) or not wmap:
            raise CheckpointError(f"{index_path}: missing or empty `weight_map`")
        names = sorted(set(wmap.values()))
        for name in names:
            if Path(name).name != name or not name.endswith(".safetensors"):
                raise CheckpointError(f"{index_path}: bad shard file name {name!r}")
        return names, index
    if single.is_file():
        return [WEIGHTS_NAME], None
    raise CheckpointError(f"{src}: no {WEIGHTS_NAME} or {INDEX_NAME} (only safetensors are read)")


def _list_files(src: Path, taken: set[str]) -> tuple[list[str], list[str]]:
    extra, skipped = [], []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        key = rel.as_posix()
        if key in taken:
            continue
        if any(rel.match(pat) for pat in SKIPPED_PATTERNS):
            skipped.append(key)
        else:
            extra.append(key)
    return extra, skipped


def plan_checkpoint(src: Path, target: int) -> CheckpointPlan:
    """Read and validate a checkpoint and decide what happens to every tensor.

    Args:
        src: A Hugging Face model directory.
        target: The new intermediate size.

    Returns:
        The plan.

    Raises:
        UnsupportedModelError: Not a Llama/Qwen2-style dense MLP, or already quantised.
        CheckpointError: Missing/mis-shaped/duplicated tensors, inconsistent index, bad files.
        PaddingError: ``target`` smaller than the current size.
    """
    src = Path(src)
    if not src.is_dir():
        raise CheckpointError(f"{src}: not a directory")
    config = read_config(src)
    _check_architecture(config, src)
    inter = _config_int(config, "intermediate_size", src)
    hidden = _config_int(config, "hidden_size", src)
    layers = _config_int(config, "num_hidden_layers", src)
    if target < inter:
        raise PaddingError(
            f"target intermediate_size {target} is smaller than the current {inter} "
            f"({src / CONFIG_NAME}); padding only grows the MLP"
        )

    names, index = _shard_names(src)
    headers = {n: read_header(src / n) for n in names}
    owner: dict[str, str] = {}
    for n, h in headers.items():
        for t in h.tensors:
            if t.name in owner:
                raise CheckpointError(
                    f"{src}: tensor `{t.name}` is in both {owner[t.name]} and {n}"
                )
            owner[t.name] = n
    if index is not None:
        wmap: dict[str, str] = index["weight_map"]
        missing = [k for k, v in wmap.items() if owner.get(k) != v]
        if missing:
            k = missing[0]
            raise CheckpointError(
                f"{src / INDEX_NAME}: {len(missing)} tensor(s) listed in the index are not in "
                f"their shard, e.g. `{k}` (listed in {wmap[k]}, found in "
                f"{owner.get(k, 'no shard')})"
            )
        unlisted = sorted(set(owner) - set(wmap))
        if unlisted:
            raise CheckpointError(
                f"{src / INDEX_NAME}: {len(unlisted)} tensor(s) are in shards but not in the "
                f"index, e.g. `{unlisted[0]}` in {owner[unlisted[0]]}"
            )

    # Classify tensors and check the MLP.
    infos = {t.name: t for h in headers.values() for t in h.tensors}
    found: dict[tuple[int, str, str], TensorInfo] = {}
    foreign = []
    for name, t in infos.items():
        m = _MLP_RE.match(name)
        if m:
            found[(int(m["layer"]), m["proj"], m["kind"])] = t
        elif ".mlp." in name or name.startswith("mlp."):
            foreign.append(name)
    if foreign:
        raise UnsupportedModelError(
            f"{src}: not a Llama/Qwen2-style gate/up/down MLP: {len(foreign)} other MLP "
            f"tensor(s), e.g. {', '.join(sorted(foreign)[:5])}"
        )
    if not found:
        some = ", ".join(sorted(infos)[:5])
        raise UnsupportedModelError(
            f"{src}: no `layers.N.mlp.{{gate,up,down}}_proj.weight` tensors found "
            f"(tensors look like: {some})"
        )
    beyond = sorted({k[0] for k in found if k[0] >= layers})
    if beyond:
        raise CheckpointError(
            f"{src}: MLP tensors for layer(s) {beyond} but config.json says "
            f"num_hidden_layers {layers}"
        )
    missing_w = [
        f"layers.{i}.mlp.{p}.weight"
        for i in range(layers)
        for p in ("gate_proj", "up_proj", "down_proj")
        if (i, p, "weight") not in found
    ]
    if missing_w:
        raise CheckpointError(
            f"{src}: {len(missing_w)} MLP weight(s) missing, e.g. {', '.join(missing_w[:5])}"
        )
    has_bias = {k[1] for k in found if k[2] == "bias"}
    for i in range(layers):
        for p in has_bias:
            if (i, p, "bias") not in found:
                raise CheckpointError(f"{src}: layers.{i}.mlp.{p}.bias is missing")

    ops: dict[str, tuple[str, tuple[int, ...]]] = {}
    for (_layer, proj, kind), t in found.items():
        if kind == "weight":
            expected = (hidden, inter) if proj == "down_proj" else (inter, hidden)
        else:
            expected = (hidden,) if proj == "down_proj" else (inter,)
        if t.shape != expected:
            raise CheckpointError(
                f"{src / owner[t.name]}: `{t.name}` has shape {list(t.shape)}, expected "
                f"{list(expected)} from config.json (hidden_size {hidden}, "
                f"intermediate_size {inter})"
            )
        if t.dtype not in FLOAT_DTYPES:
            raise UnsupportedModelError(
                f"{src / owner[t.name]}: `{t.name}` has dtype {t.dtype}; only floating-point "
                "weights can be padded (is the model quantised?)"
            )
        if proj == "down_proj":
            if kind == "weight":
                ops[t.name] = ("cols", (hidden, target))
        else:
            ops[t.name] = ("rows", (target, *t.shape[1:]))

    shards = tuple(
        _ShardPlan(
            n,
            h,
            tuple(
                _TensorPlan(t, *ops[t.name]) if t.name in ops else _TensorPlan(t, "copy", t.shape)
                for t in h.tensors
            ),
        )
        for n, h in headers.items()
    )
    taken = {*names, CONFIG_NAME}
    if index is not None:
        taken.add(INDEX_NAME)
    extra, skipped = _list_files(src, taken)
    return CheckpointPlan(
        src, config, index, shards, inter, hidden, layers, tuple(extra), tuple(skipped)
    )


# --------------------------------------------------------------------------- writing


class _Writer:
    """Assembles output files through one small buffer: fill, hash, write, repeat.

    Every output byte except long zero runs passes through the buffer once: source ranges
    are read into it (``pread``), ``down_proj`` rows are re-laid into it, and a full buffer
    is hashed and written while it is still in the CPU cache. The buffer size matters: on a
    2 GB checkpoint on a 2-core machine with 1 MiB of L2 per core, 384 KiB to 1 MiB
    buffers padded in 2.1-2.3 s, 64 KiB (per-call overhead) in 3.4-4.2 s and 8 MiB
    (every pass from L3 or memory) in 3-7 s. That also beat the kernel copy
    (``copy_file_range``) plus a separate hashing pass over the source pages, 3.4 s,
    which reads every byte from memory twice. Zero runs of at least ``_HOLE_MIN`` bytes are
    not written: the file offset skips them, leaving a hole that reads as zeros (they are
    still hashed).
    """

    def __init__(self, chunk: int, cancel: threading.Event | None = None) -> None:
        self.chunk = chunk
        self._cancel = cancel
        self.read_buf = bytearray(chunk)
        self._buf = memoryview(bytearray(chunk))
        self._zeros = memoryview(bytes(min(chunk, _ZEROS_MAX)))
        self._pos = 0
        self._fd = -1
        self._sha = hashlib.sha256()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def open(self, path: Path) -> None:
        """Start a new output file (it must not exist)."""
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._sha = hashlib.sha256()
        self._pos = 0

    # -- buffer

    def room(self) -> memoryview:
        """The free tail of the buffer (flushed first when it is full)."""
        if self._pos == self.chunk:
            self.flush()
        return self._buf[self._pos :]

    def advance(self, n: int) -> None:
        """Mark ``n`` bytes of :meth:`room` as filled."""
        self._pos += n

    def flush(self) -> None:
        """Hash and write what the buffer holds."""
        if self._cancel is not None and self._cancel.is_set():
            raise _Cancelled
        if self._pos == 0:
            return
        view = self._buf[: self._pos]
        self._sha.update(view)
        self._write(view)
        self._pos = 0

    def _write(self, view: memoryview) -> None:
        done = 0
        while done < view.nbytes:
            done += os.write(self._fd, view[done:])

    # -- appending

    def put_file(self, fd: int, offset: int, n: int, path: Path) -> None:
        """Append ``n`` bytes of a file at ``offset``."""
        while n > 0:
            room = self.room()
            k = min(n, room.nbytes)
            _pread_into(fd, room[:k], offset, path)
            offset += k
            n -= k
            self.advance(k)

    def put_zeros(self, n: int) -> None:
        """Append ``n`` zero bytes. Large runs are not written at all: the file offset
        skips them, leaving a hole that reads as zeros (sized at :meth:`close`)."""
        if n >= _HOLE_MIN:
            self.flush()
            os.lseek(self._fd, n, os.SEEK_CUR)
            while n > 0:
                k = min(n, self._zeros.nbytes)
                self._sha.update(self._zeros[:k])
                n -= k
            return
        while n > 0:
            room = self.room()
            k = min(n, room.nbytes, self._zeros.nbytes)
            room[:k] = self._zeros[:k]
            n -= k
            self.advance(k)

    def put_bytes(self, data: bytes) -> None:
        """Append bytes."""
        view = memoryview(data)
        while view.nbytes:
            room = self.room()
            k = min(view.nbytes, room.nbytes)
            room[:k] = view[:k]
            view = view[k:]
            self.advance(k)

    # -- finishing

    def close(self, durable: bool) -> str:
        """Finish the current file: flush, fsync if asked, close.

        Returns:
            The file's sha256 hex digest.
        """
        try:
            self.flush()
            end = os.lseek(self._fd, 0, os.SEEK_CUR)
            if os.fstat(self._fd).st_size != end:  # the file ends in a hole
                os.ftruncate(self._fd, end)
            if durable:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
        return self._sha.hexdigest()

    def abort(self) -> None:
        """Close the current file, if any, without caring about its content (error path)."""
        self._pos = 0
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


class _Cancelled(Exception):
    """Another shard's writer failed; this one stops."""


def _pread_into(fd: int, buf: memoryview, offset: int, path: Path) -> None:
    got = os.preadv(fd, [buf], offset)
    if got != buf.nbytes:
        # A single pread of a regular file returns short only at end of file.
        raise CheckpointError(
            f"{path}: truncated while reading: wanted {buf.nbytes} bytes at offset {offset}, "
            f"got {got}"
        )


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
            :func:`kernels.tp_math.check_tp`).
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
