"""The buffered writer every padded output file goes through.

:class:`_Writer` fills one small buffer from source ranges, zeros and re-laid rows, hashes
it and writes it while it is still in the CPU cache; long zero runs become holes. Its buffer
size, not the model size, bounds memory.

Attributes:
    DEFAULT_CHUNK_BYTES: The default buffer size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path

from shopbench_kernels.errors import CheckpointError

DEFAULT_CHUNK_BYTES = 512 << 10  # half a core's L2 cache (see _Writer)
_HOLE_MIN = 1 << 20  # smaller zero runs are written (small holes fragment files)
_ZEROS_MAX = 1 << 20


class _Writer:
    """Assembles output files through one small buffer: fill, hash, write, repeat.

    Every output byte except long zero runs passes through the buffer once: source ranges
    are read into it (``pread``), ``down_proj`` rows are re-laid into it, and a full buffer
    is hashed and written while it is still in the CPU cache. The buffer size matters: on a
    2 GB checkpoint on a 2-core machine with 1 MiB of L2 per core, 384 KiB to 1 MiB
    buffers padded in 2.1-2.3 s, 64 KiB (per-call overhead) in 3.4-4.2 s and 8 MiB
    (every pass from L3 or memory) in 3-7 s. That also beat the kernel copy
    (``copy_file_range``) plus a separate hashing pass over the source pages, 3.4 s,
    which reads every byte from memory twice. Zero runs of at least ``_HOLE_MIN`` bytes
    are not written: the file offset skips them, leaving a hole that
    reads as zeros (they are still hashed).
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
