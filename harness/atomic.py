"""Atomic JSON and JSON Lines files: written to a temporary sibling, flushed, fsynced and
renamed into place, so a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import jsonlines

from shopbench_kernels.fsutil import fsync_dir


@contextmanager
def atomic_open(path: Path, *, durable: bool = True, binary: bool = False) -> Iterator[IO[Any]]:
    """A file handle whose content replaces ``path`` only if the block succeeds.

    Args:
        path: The destination.
        durable: fsync the file before the rename and its directory after it (off for
            scratch files).
        binary: A bytes handle instead of UTF-8 text.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_json(
    path: Path,
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = True,
    allow_nan: bool = True,
    durable: bool = True,
) -> Path:
    """Write ``obj`` as JSON (UTF-8) atomically; returns the path.

    Args:
        path: Destination.
        obj: The value (objects JSON cannot hold are written as their ``str``).
        indent: Indentation (None: one line).
        sort_keys: Sort object keys.
        allow_nan: Write NaN/infinity as JavaScript literals (False: refuse them).
        durable: fsync before the rename.
    """
    with atomic_open(path, durable=durable) as f:
        json.dump(
            obj,
            f,
            indent=indent,
            sort_keys=sort_keys,
            ensure_ascii=False,
            allow_nan=allow_nan,
            default=str,
        )
        f.write("\n")
    return Path(path)


def write_jsonl(
    path: Path, rows: Iterable[Any], *, allow_nan: bool = True, durable: bool = True
) -> int:
    """Write one JSON value per line atomically; returns the number of rows."""
    n = 0

    def dumps(o: Any) -> str:
        return json.dumps(o, ensure_ascii=False, allow_nan=allow_nan, default=str)

    with atomic_open(path, durable=durable) as f, jsonlines.Writer(f, dumps=dumps) as writer:
        for row in rows:
            writer.write(row)
            n += 1
    return n


def write_bytes(path: Path, data: bytes, *, durable: bool = True) -> Path:
    """Write bytes atomically; returns the path."""
    with atomic_open(path, durable=durable, binary=True) as f:
        f.write(data)
    return Path(path)


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
