"""Reading a Hugging Face checkpoint: safetensors headers and JSON files.

Only headers and small JSON files are read here; tensor data is streamed by the writers.

Attributes:
    WEIGHTS_NAME: The file name of a single-file safetensors checkpoint.
    INDEX_NAME: The file name of a sharded checkpoint's index.
    CONFIG_NAME: The file name of the model config.
    DTYPE_SIZES: Bytes per element of every safetensors dtype.
    FLOAT_DTYPES: The floating-point safetensors dtypes (the ones that can be padded).
    MAX_HEADER_BYTES: The largest safetensors header accepted.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopbench_kernels.errors import CheckpointError

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"

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
