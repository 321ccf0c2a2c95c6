"""On-disk cache of the sentence embeddings of the similarity metrics.

A vector is keyed by the sentence model — its name and a SHA-256 digest of its weight,
config and tokenizer files — and by the SHA-256 of the text, so a dataset's references are
embedded once and a re-score (the other parser mode, another sweep trial) embeds only the
texts it has not seen. The cache lives in one SQLite database, ``embeddings.sqlite3``, under
``$HARNESS_EMBEDDING_CACHE`` (default ``$XDG_CACHE_HOME/shopbench-harness/embeddings``; ``off``
turns it off).

Crash safety: each batch of new vectors is written in one transaction, so a killed writer
leaves the database as it was before the batch (SQLite rolls an unfinished transaction
back when the database is next opened, and drops log frames whose checksums do not match:
a torn write). Each row also records its vector's dtype, length and CRC-32; a row that
fails a check is treated as missing and rewritten, never read as a vector. Processes may share the cache (WAL journal; writers wait for each other). A cache
that cannot be opened, read or written turns itself off for the process with a warning:
scores never depend on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from harness import config

ENV_VAR = "HARNESS_EMBEDDING_CACHE"
OFF_VALUES = frozenset({"off", "0", "false", "no", "none"})
DB_NAME = "embeddings.sqlite3"
SCHEMA_VERSION = 1
# Files whose content decides a model's vectors: weights, configs, tokenizer and vocabulary.
MODEL_FILE_SUFFIXES = frozenset({".safetensors", ".json", ".txt", ".model"})
# Exported copies of the weights that sentence-transformers does not load here.
SKIPPED_MODEL_DIRS = frozenset({"onnx", "openvino"})
_CHUNK = 500  # keys per SELECT, well under SQLite's bound on query parameters

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    dtype TEXT NOT NULL,
    dim INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, text_sha256)
) WITHOUT ROWID
"""


def default_root() -> Path:
    """``embeddings`` in :func:`harness.config.cache_home` (``$XDG_CACHE_HOME/shopbench-harness``)."""
    return config.cache_home() / "embeddings"


def configured_root() -> Path | None:
    """The cache directory ``$HARNESS_EMBEDDING_CACHE`` names; None when it is ``off``."""
    value = config.get(ENV_VAR)
    if value is None:
        return default_root()
    if value.lower() in OFF_VALUES:
        return None
    return Path(value).expanduser()


def default_cache() -> EmbeddingCache | None:
    """The configured cache (one instance per directory and process), None when off."""
    root = configured_root()
    return None if root is None else _cache_at(str(root.resolve()))


@cache
def _cache_at(root: str) -> EmbeddingCache:
    return EmbeddingCache(Path(root))


def _model_files(path: Path) -> list[Path]:
    files = []
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if rel.parts[0] in SKIPPED_MODEL_DIRS or f.suffix not in MODEL_FILE_SUFFIXES:
            continue
        if f.is_file():
            files.append(f)
    return files


@cache
def _digest(path: str, signature: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, _, _ in signature:
        with open(Path(path) / rel, "rb") as f:
            file_hash = hashlib.file_digest(f, "sha256").hexdigest()
        h.update(f"{rel}\0{file_hash}\n".encode())
    return h.hexdigest()


def model_digest(path: Path) -> str:
    """SHA-256 over a model directory's weight, config and tokenizer files (name + content).

    Args:
        path: The model directory.

    Returns:
        The hex digest (computed once per process while the files' sizes and times stay).
    """
    path = Path(path).resolve()
    signature = []
    for f in _model_files(path):
        st = f.stat()
        signature.append((f.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns))
    return _digest(str(path), tuple(signature))


def model_key(name: str, path: Path) -> str:
    """The cache key of a sentence model: ``<name>@sha256:<digest of its files>``."""
    return f"{name.removeprefix('sentence-transformers/')}@sha256:{model_digest(path)}"


def text_key(text: str) -> bytes:
    """SHA-256 of the UTF-8 text (the text itself is not stored)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class EmbeddingCache:
    """Vectors by (model key, text) in ``<root>/embeddings.sqlite3``.

    Args:
        root: The cache directory (created on first use).

    Attributes:
        stats: Counts of this instance's work: ``hits`` and ``misses`` (texts looked up),
            ``invalid`` (rows that failed a check), ``stored`` (vectors written).
        disabled: Why the cache turned itself off for the process, or None.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / DB_NAME
        self.disabled: str | None = None
        self._conn: sqlite3.Connection | None = None
        self.stats = {"hits": 0, "misses": 0, "invalid": 0, "stored": 0}

    def _disable(self, what: str, error: Exception) -> None:
        self.disabled = f"{what}: {error}"
        warnings.warn(
            f"embedding cache {self.path} is off for this process ({what}: {error}); scores "
            f"are computed without it. Delete the file, or set {ENV_VAR}=off, to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        self.close()

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None or self.disabled:
            return self._conn
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)
            # A filesystem without shared memory keeps the rollback journal: as safe.
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
            conn.execute(_SCHEMA)
            if version == 0:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as e:
            self._disable("cannot open it", e)
            return None
        self._conn = conn
        return conn

    def close(self) -> None:
        """Close the database connection (it reopens on next use)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def lookup(self, model: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of those texts that have one.

        Args:
            model: The model key (:func:`model_key`).
            texts: Distinct texts.

        Returns:
            text -> vector (read-only arrays); rows whose dtype, length or checksum do not
            match their bytes are left out (and counted in ``stats["invalid"]``).
        """
        conn = self._connect()
        if conn is None or not texts:
            return {}
        by_key = {text_key(t): t for t in texts}
        found: dict[str, np.ndarray] = {}
        try:
            for keys in _chunks(list(by_key)):
                rows = conn.execute(
                    "SELECT text_sha256, dtype, dim, crc32, vector FROM vectors WHERE model = ? "
                    f"AND text_sha256 IN ({','.join('?' * len(keys))})",
                    (model, *keys),
                ).fetchall()
                for key, dtype, dim, crc, blob in rows:
                    vector = _decode(dtype, dim, crc, blob)
                    if vector is None:
                        self.stats["invalid"] += 1
                        continue
                    found[by_key[key]] = vector
        except sqlite3.Error as e:
            self._disable("cannot read it", e)
            return {}
        self.stats["hits"] += len(found)
        self.stats["misses"] += len(by_key) - len(found)
        return found

    def store(self, model: str, vectors: Mapping[str, Any]) -> None:
        """Add vectors in one transaction (all of them, or none after a crash).

        Args:
            model: The model key (:func:`model_key`).
            vectors: text -> 1-D numeric array.
        """
        conn = self._connect()
        if conn is None or not vectors:
            return
        rows = []
        for text, vector in vectors.items():
            a = np.ascontiguousarray(vector)
            if a.ndim != 1 or a.dtype.kind != "f":
                raise ValueError(f"an embedding must be a 1-D float array, got {a.dtype} {a.shape}")
            blob = a.tobytes()
            rows.append((model, text_key(text), a.dtype.str, a.shape[0], zlib.crc32(blob), blob))
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            self._disable("cannot write it", e)
            return
        self.stats["stored"] += len(rows)


def _decode(dtype: Any, dim: Any, crc: Any, blob: Any) -> np.ndarray | None:
    """The vector a row holds, or None when the row does not check out."""
    if not (isinstance(blob, bytes) and isinstance(dim, int) and isinstance(dtype, str)):
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return None
    if dt.kind != "f" or dim <= 0 or len(blob) != dim * dt.itemsize:
        return None
    if zlib.crc32(blob) != crc:
        return None
    return np.frombuffer(blob, dtype=dt)
