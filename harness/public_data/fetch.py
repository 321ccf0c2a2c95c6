"""Downloading a registry dataset into the cache: resumable, verified, published atomically.

Each file downloads to ``<path>.part`` beside its final name. A rerun after an interruption
(a dropped connection, a timeout, a killed process) asks for the rest with an HTTP ``Range``
request and appends; a server that answers the whole body instead (it ignores ``Range``)
restarts the file from byte 0. Transient failures are retried a few times, resuming each time.

Only a complete ``.part`` whose size and checksums match the registry is published: fsync,
then ``os.replace`` onto the final name, then fsync of the directory. A mismatch deletes the
``.part`` (nothing of a corrupt download is kept); when the mismatching bytes were partly
resumed from an earlier run, the file is downloaded once more from scratch first. A zip is kept
as the zip and extracted into a temporary sibling directory that is renamed into place.
The dataset's manifest is written last (see :mod:`harness.public_data.cache`). Concurrent fetches
of one dataset are refused through a lock file.

Networking is :mod:`urllib` (so ``HTTP(S)_PROXY``/``NO_PROXY`` apply as usual).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from harness.atomic import write_json
from harness.public_data.cache import MANIFEST, cache_status, data_dir, dataset_path
from harness.public_data.entries import DataFile, Dataset, check_sha256, get_dataset
from harness.public_data.errors import ChecksumError, DatasetError
from shopbench_kernels.fsutil import fsync_dir

CHUNK = 1 << 20
USER_AGENT = "shopbench-harness (dataset fetcher)"
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*$")


class Progress(Protocol):
    """Called as bytes arrive: ``progress(path, done_bytes, total_bytes_or_None)``."""

    def __call__(self, path: str, done: int, total: int | None) -> None: ...


class _Transient(Exception):
    """A failure worth retrying (resuming from the kept ``.part``)."""


class _Refused(Exception):
    """The server refused the request (4xx): try the next URL."""


@dataclass(frozen=True)
class _Digest:
    size: int
    sha256: str
    git_blob: str | None


def fetch(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    registry: Mapping[str, Dataset] | None = None,
) -> Path:
    """Download a registry dataset into the cache (a no-op when it is already there).

    Args:
        name: Registry name.
        cache_dir: The cache (default: ``$HARNESS_DATA_DIR`` or ``~/.cache/...``).
        url: Download from this URL instead (single-file datasets only).
        sha256: Expected sha256 (single-file datasets only): required when the registry
            publishes no checksum for the file; must agree with the registry when it does.
        progress: Called as bytes arrive.
        timeout: Seconds of socket inactivity (connect or read) before an attempt fails.
        retries: Further attempts per URL after a transient failure, each resuming.
        registry: The registry (default: the shipped one).

    Returns:
        What ``data://NAME`` resolves to.

    Raises:
        ChecksumError: The downloaded bytes do not match; nothing of them is kept.
        DatasetError: Unknown name, bad overrides, no checksum to verify against, a fetch of
            the same dataset already running, or every URL failed (a partial download is
            kept for the next run to resume).
    """
    dataset = get_dataset(name, registry)
    files = _effective_files(dataset, url, sha256)
    root = data_dir() if cache_dir is None else Path(cache_dir).expanduser()
    ddir = root / dataset.name
    with _lock(root, dataset.name):
        if cache_status(dataset, root, files) == "cached":
            return dataset_path(dataset, root)
        ddir.mkdir(parents=True, exist_ok=True)
        # Whatever follows changes files the manifest describes: drop it first, so that an
        # interruption leaves a dataset that resolves as incomplete.
        (ddir / MANIFEST).unlink(missing_ok=True)
        _clean_temporaries(ddir, files)
        try:
            records = [_fetch_file(f, ddir, progress, timeout, retries) for f in files]
            for f in files:
                if f.extract is not None:
                    _extract(ddir / f.path, ddir / f.extract)
        except BaseException:
            _prune_empty_dirs(ddir)
            raise
        write_json(
            ddir / MANIFEST,
            {
                "name": dataset.name,
                "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": records,
            },
        )
    return dataset_path(dataset, root)


def _effective_files(dataset: Dataset, url: str | None, sha256: str | None) -> list[DataFile]:
    files = list(dataset.files)
    if url is not None or sha256 is not None:
        if len(files) != 1:
            raise DatasetError(
                f"--url/--sha256 apply to single-file datasets; {dataset.name!r} has "
                f"{len(files)} files"
            )
        f = files[0]
        data = f.model_dump()
        if url is not None:
            data["urls"] = [url]
        if sha256 is not None:
            try:
                given = check_sha256(sha256)
            except ValueError as e:
                raise DatasetError(f"--sha256: {e}") from None
            if f.sha256 is not None and given != f.sha256:
                raise DatasetError(
                    f"--sha256 {given} differs from the sha256 the registry pins for "
                    f"{dataset.name!r} ({f.sha256})"
                )
            data["sha256"] = given
        try:
            files = [DataFile.model_validate(data)]
        except ValueError as e:
            raise DatasetError(f"{dataset.name}: {e}") from None
    for f in files:
        if not f.verifiable:
            how = (
                f"check its sha256 against a source you trust and run: harness data fetch "
                f"{dataset.name} --sha256 HEX"
                if len(files) == 1
                else "its checksum has to be added to the registry first"
            )
            raise DatasetError(
                f"{dataset.name}: no checksum is published for {f.path}, so a download of it "
                f"cannot be verified; {how}"
            )
    return files


@contextlib.contextmanager
def _lock(root: Path, name: str) -> Iterator[None]:
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{name}.lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(
                f"another fetch of {name!r} into {root} is running; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _clean_temporaries(ddir: Path, files: Sequence[DataFile]) -> None:
    # Under the lock, any temporaries are leftovers of a killed fetch.
    for tmp in ddir.glob(f".{MANIFEST}.*.tmp"):  # harness.atomic's temporary names
        tmp.unlink(missing_ok=True)
    for f in files:
        if f.extract is not None:
            target = ddir / f.extract
            for tmp in target.parent.glob(f".{target.name}.*-*"):
                shutil.rmtree(tmp, ignore_errors=True)


def _prune_empty_dirs(ddir: Path) -> None:
    if not ddir.is_dir():
        return
    for d in sorted((p for p in ddir.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        ddir.rmdir()


def _fetch_file(
    f: DataFile, ddir: Path, progress: Progress | None, timeout: float, retries: int
) -> dict[str, Any]:
    dest = ddir / f.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        digest, problem = _check(f, dest)
        if problem is None:
            return _record(f, digest, None)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    notes: list[str] = []
    corrupt = False
    for url in f.urls:
        failures, restarted = 0, False
        while True:
            resumed = part.is_file() and part.stat().st_size > 0
            try:
                _download(url, part, f, timeout, progress)
            except _Transient as e:
                failures += 1
                notes.append(f"{url}: {e}")
                if failures > retries:
                    break
                time.sleep(min(0.25 * 2 ** (failures - 1), 8.0))
                continue
            except _Refused as e:
                notes.append(f"{url}: {e}")
                break
            digest, problem = _check(f, part)
            if problem is None:
                _publish(part, dest)
                return _record(f, digest, url)
            part.unlink()
            corrupt = True
            notes.append(f"{url}: {problem}")
            if resumed and not restarted:
                restarted = True  # the kept bytes may be another version's: once more from 0
                continue
            break
    tries: dict[str, int] = {}
    for n in notes:  # the same failure on every retry is said once, with its count
        tries[n] = tries.get(n, 0) + 1
    detail = "\n".join(f"  - {n}" + (f" ({k} attempts)" if k > 1 else "") for n, k in tries.items())
    if corrupt and not part.exists():
        raise ChecksumError(
            f"{f.path}: the download does not match the registry; nothing was kept\n{detail}"
        )
    kept = (
        f"; the partial download {part} is kept and the next fetch resumes it"
        if part.exists()
        else ""
    )
    raise DatasetError(f"{f.path}: could not download it{kept}\n{detail}")


def _download(url: str, part: Path, f: DataFile, timeout: float, progress: Progress | None) -> None:
    """Append the rest of ``url`` to ``part`` (or rewrite it when the server sends it whole)."""
    offset = part.stat().st_size if part.is_file() else 0
    if f.size is not None and offset > f.size:
        part.unlink()
        offset = 0
    if f.size is not None and 0 < offset == f.size:
        return
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            return  # nothing past the end: the .part may already be whole; the check decides
        if e.code in (408, 425, 429) or e.code >= 500:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise _Refused(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Transient(str(getattr(e, "reason", e)) or type(e).__name__) from None
    with resp:
        status = getattr(resp, "status", None) or 200  # file:// responses have none
        match = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
        if not (offset and status == 206 and match and int(match.group(1)) == offset):
            offset = 0
        length_header = resp.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else f.size
        done, too_long = offset, False
        read = getattr(resp, "read1", resp.read)
        try:
            with part.open("ab" if offset else "wb") as out:
                while chunk := read(CHUNK):
                    out.write(chunk)
                    out.flush()
                    done += len(chunk)
                    if progress is not None:
                        progress(f.path, done, total)
                    if f.size is not None and done > f.size:
                        too_long = True  # the size check rejects it; no need to read on
                        break
                os.fsync(out.fileno())
        except (OSError, http.client.HTTPException) as e:
            raise _Transient(f"after {done} bytes: {e or type(e).__name__}") from None
    if not too_long and length is not None and done - offset < length:
        raise _Transient(f"connection closed after {done} of {total} bytes")


def _digest(path: Path, want_git_blob: bool) -> _Digest:
    size = path.stat().st_size
    sha = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            if want_git_blob:
                blob.update(chunk)
    return _Digest(size, sha.hexdigest(), blob.hexdigest() if want_git_blob else None)


def _check(f: DataFile, path: Path) -> tuple[_Digest, str | None]:
    """Digest ``path`` and compare with the entry; the problem, or None when it matches."""
    digest = _digest(path, f.git_blob is not None)
    if f.size is not None and digest.size != f.size:
        return digest, f"{digest.size} bytes, expected {f.size}"
    bad = []
    if f.sha256 is not None and digest.sha256 != f.sha256:
        bad.append(f"sha256 {digest.sha256}, expected {f.sha256}")
    if f.git_blob is not None and digest.git_blob != f.git_blob:
        bad.append(f"git blob {digest.git_blob}, expected {f.git_blob}")
    if not bad:
        return digest, None
    if f.sha256 is not None and f.git_blob is not None and len(bad) == 1:
        # One digest matches the bytes: the other one in the registry is the likely error.
        bad.append("the other checksum matches, so the registry entry may be wrong")
    return digest, "; ".join(bad)


def _record(f: DataFile, digest: _Digest, url: str | None) -> dict[str, Any]:
    rec: dict[str, Any] = {"path": f.path, "size": digest.size, "sha256": digest.sha256}
    if digest.git_blob is not None:
        rec["git_blob"] = digest.git_blob
    if url is not None:
        rec["url"] = url
    return rec


def _publish(part: Path, dest: Path) -> None:
    with part.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(part, dest)
    fsync_dir(dest.parent)


def _extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest`` through a temporary sibling renamed into place."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                p = PurePosixPath(member)
                if p.is_absolute() or ".." in p.parts:
                    raise DatasetError(f"{archive}: refusing to extract {member!r} (outside)")
            zf.extractall(tmp)
    except zipfile.BadZipFile as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{archive}: not a readable zip ({e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for d, _, names in os.walk(tmp):
        for n in names:
            with open(os.path.join(d, n), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(d))
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    fsync_dir(dest.parent)
