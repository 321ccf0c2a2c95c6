"""The local data cache: where datasets live, whether one is complete, and offline resolution
of ``data://NAME[/inner/path]`` references.

A dataset is complete when its manifest ``<cache>/<name>/.dataset.json`` exists: the fetcher
writes it last, after every file was verified and published, so a crash or kill at any point
leaves a dataset without one, which resolves as absent. The manifest records each file's
checksums; a registry entry that pins other checksums makes the cached copy *stale*.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from harness import config
from harness.atomic import read_json
from harness.public_data.entries import REGISTRY, DataFile, Dataset, get_dataset
from harness.public_data.errors import DatasetError, DatasetNotCachedError

SCHEME = "data://"
ENV_VAR = "HARNESS_DATA_DIR"
MANIFEST = ".dataset.json"
Status = Literal["cached", "stale", "partial", "missing"]


def data_dir() -> Path:
    """The cache directory: ``$HARNESS_DATA_DIR`` if set, else ``data`` in
    :func:`harness.config.cache_home` (``$XDG_CACHE_HOME/shopbench-harness``)."""
    env = config.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return config.cache_home() / "data"


def _root(cache_dir: str | Path | None) -> Path:
    return data_dir() if cache_dir is None else Path(cache_dir).expanduser()


def read_manifest(dataset_dir: Path) -> dict[str, Any] | None:
    """The manifest of a cached dataset; None when absent or unreadable (an incomplete fetch)."""
    try:
        data = read_json(dataset_dir / MANIFEST)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), list) else None


def cache_status(
    dataset: Dataset, cache_dir: str | Path | None = None, files: Sequence[DataFile] | None = None
) -> Status:
    """Whether ``dataset`` is in the cache, without reading its data.

    Args:
        dataset: The registry entry.
        cache_dir: The cache (default: :func:`data_dir`).
        files: The files to expect (default: the entry's; the fetcher passes its overrides).

    Returns:
        ``cached`` (complete, the pinned version), ``stale`` (complete, another version),
        ``partial`` (an unfinished fetch left something) or ``missing``.
    """
    ddir = _root(cache_dir) / dataset.name
    if not ddir.is_dir() or not any(ddir.iterdir()):
        return "missing"
    manifest = read_manifest(ddir)
    if manifest is None:
        return "partial"
    recorded = {r.get("path"): r for r in manifest["files"] if isinstance(r, dict)}
    for f in dataset.files if files is None else files:
        rec = recorded.get(f.path)
        if rec is None:
            return "stale"
        if (f.sha256 and rec.get("sha256") != f.sha256) or (
            f.git_blob and rec.get("git_blob") != f.git_blob
        ):
            return "stale"
        if not (ddir / f.path).is_file() or (f.extract and not (ddir / f.extract).is_dir()):
            return "partial"
    return "cached"


def fetch_command(dataset: Dataset, cache_dir: str | Path | None = None) -> str:
    """The ``harness data fetch`` command line that puts ``dataset`` into ``cache_dir``."""
    cmd = f"harness data fetch {dataset.name}"
    if len(dataset.files) == 1 and not dataset.verifiable:
        cmd += " --sha256 HEX"
    if cache_dir is not None and _root(cache_dir) != data_dir():
        cmd += f" --data-dir {_root(cache_dir)}"
    return cmd


def dataset_path(dataset: Dataset, cache_dir: str | Path | None = None) -> Path:
    """Where ``data://NAME`` points (the entry's ``default``, else its directory)."""
    ddir = _root(cache_dir) / dataset.name
    return ddir / dataset.default if dataset.default else ddir


def is_ref(ref: str | os.PathLike[str]) -> bool:
    """True for a ``data://`` reference."""
    return str(ref).startswith(SCHEME)


def parse_ref(ref: str) -> tuple[str, str]:
    """``data://NAME/inner/path`` -> ``(NAME, "inner/path")`` (inner may be ``""``).

    Raises:
        DatasetError: No name, or an inner path that leaves the dataset.
    """
    name, _, inner = ref[len(SCHEME) :].partition("/")
    inner = inner.strip("/")
    if not name:
        raise DatasetError(f"{ref!r}: expected data://NAME or data://NAME/inner/path")
    if inner:
        p = PurePosixPath(inner)
        if "\\" in inner or ".." in p.parts:
            raise DatasetError(f"{ref!r}: the inner path must stay inside the dataset")
        inner = p.as_posix()
    return name, inner


def resolve(
    ref: str | os.PathLike[str],
    *,
    cache_dir: str | Path | None = None,
    registry: Mapping[str, Dataset] | None = None,
) -> Path:
    """Resolve a dataset reference offline; plain paths pass through unchanged.

    ``data://NAME`` is the entry's default file or directory; ``data://NAME/inner/path`` is
    ``inner/path`` inside the dataset's cache directory (an extracted zip is a directory there).

    Args:
        ref: ``data://...`` or a filesystem path.
        cache_dir: The cache (default: :func:`data_dir`).
        registry: The registry (default: the shipped one).

    Returns:
        The local path.

    Raises:
        DatasetNotCachedError: The dataset is absent, incomplete or another version; the
            message gives the exact fetch command.
        DatasetError: An unknown dataset or a path the cached dataset does not have.
    """
    if not is_ref(ref):
        return ref if isinstance(ref, Path) else Path(ref)
    text = str(ref)
    name, inner = parse_ref(text)
    dataset = get_dataset(name, registry)
    root = _root(cache_dir)
    status = cache_status(dataset, root)
    if status != "cached":
        what = {
            "missing": "is not in the local data cache",
            "partial": "is only partly downloaded in the local data cache",
            "stale": "in the local data cache is not the version the registry pins",
        }[status]
        raise DatasetNotCachedError(
            f"{text}: dataset {name!r} {what} ({root}); fetch it with: "
            f"{fetch_command(dataset, cache_dir)}"
        )
    target = root / name / inner if inner else dataset_path(dataset, root)
    if not target.exists():
        have = sorted(p.name for p in (root / name).iterdir() if not p.name.startswith("."))
        raise DatasetError(
            f"{text}: no such path in dataset {name!r} ({root / name} holds: {', '.join(have)})"
        )
    return target


@dataclass(frozen=True)
class DatasetRow:
    """One line of ``harness data list``."""

    name: str
    description: str
    size: int | None
    licence: str
    status: Status
    path: Path | None
    verifiable: bool


def list_datasets(
    cache_dir: str | Path | None = None, registry: Mapping[str, Dataset] | None = None
) -> list[DatasetRow]:
    """The registry's datasets with their cache status, by name.

    Args:
        cache_dir: The cache (default: :func:`data_dir`).
        registry: The registry (default: the shipped one).

    Returns:
        One row per dataset; ``path`` is set when it is cached.
    """
    reg = REGISTRY if registry is None else registry
    rows = []
    for name in sorted(reg):
        ds = reg[name]
        status = cache_status(ds, cache_dir)
        rows.append(
            DatasetRow(
                name=name,
                description=ds.description,
                size=ds.size,
                licence=ds.licence,
                status=status,
                path=dataset_path(ds, cache_dir) if status == "cached" else None,
                verifiable=ds.verifiable,
            )
        )
    return rows


def resolve_path(p: str | os.PathLike[str], root: Path) -> Path:
    """A path named in a spec or a data file: a dataset reference (``data://...``, resolved
    offline by :func:`resolve`), else a file path relative to ``root`` unless absolute."""
    if is_ref(p):
        return resolve(p)
    path = Path(p)
    return path if path.is_absolute() else root / path
