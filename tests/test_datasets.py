"""Named datasets: registry, resumable verified fetch, atomic publishing, offline resolution.

Every download goes to :class:`RangeServer`, a local HTTP server on 127.0.0.1 serving bytes the
tests make, with switches that ignore ``Range``, corrupt the body, drop the connection or stall
mid-body; it logs ``(path, Range header, status)`` per request.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.public_data import (
    REGISTRY,
    ChecksumError,
    Dataset,
    DatasetError,
    DatasetNotCachedError,
    cache_status,
    data_dir,
    fetch,
    list_datasets,
    resolve,
)
from harness.public_data import cli as data_cli
from harness.public_data.fetch import _lock

TIMEOUT = 5.0


class RangeServer:
    """In-memory files over HTTP/1.0 on 127.0.0.1, with fault switches.

    ``drop_after`` and ``stall_after`` are one-shot: the next response sends that many body
    bytes, then closes the connection (drop) or waits until the server stops (stall).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ignore_range = False
        self.corrupt = False
        self.drop_after: int | None = None
        self.stall_after: int | None = None
        self.log: list[tuple[str, str | None, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, name: str) -> str:
        """The URL of a served file."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}"

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                with srv._lock:
                    data = srv.files.get(name)
                    cut, stall = srv.drop_after, srv.stall_after
                    srv.drop_after = srv.stall_after = None
                if data is None:
                    srv.log.append((name, rng, 404))
                    self.send_error(404)
                    return
                if srv.corrupt:
                    mid = len(data) // 2
                    data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
                start, status = 0, 200
                if rng and not srv.ignore_range:
                    start, status = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)), 206  # type: ignore[union-attr]
                    if start >= len(data):
                        srv.log.append((name, rng, 416))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                srv.log.append((name, rng, status))
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                try:
                    if cut is not None:
                        self.wfile.write(body[:cut])
                        return  # HTTP/1.0: returning closes the connection mid-body
                    if stall is not None:
                        self.wfile.write(body[:stall])
                        self.wfile.flush()
                        srv._stop.wait(30)
                        return
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with RangeServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _local_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy for the local server; an empty default cache."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "default-cache"))


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def toy(url: str, data: bytes | None, name: str = "toy", **file: Any) -> Dataset:
    """A one-file dataset; ``data`` None leaves the checksum and size unpublished."""
    spec: dict[str, Any] = {"path": "blob.bin", "urls": [url]}
    if data is not None:
        spec |= {"sha256": sha256(data), "size": len(data)}
    spec |= file
    return Dataset(
        name=name,
        description="random bytes",
        licence="CC0-1.0",
        homepage="http://127.0.0.1/",
        layout="zip" if "extract" in spec else "file",
        files=[spec],
        default=spec.get("extract") or spec["path"],
        contents="random bytes",
    )


def files_under(d: Path) -> list[str]:
    """Every file under ``d`` except the lock files, relative."""
    if not d.exists():
        return []
    return sorted(
        p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and ".locks" not in p.parts
    )


def test_fetch_verifies_publishes_and_resolves(server: RangeServer, tmp_path: Path) -> None:
    data = payload(300_000)
    server.files["blob.bin"] = data
    reg = {"toy": toy(server.url("blob.bin"), data)}
    cache = tmp_path / "cache"
    calls: list[tuple[str, int, int | None]] = []
    path = fetch("toy", cache, registry=reg, timeout=TIMEOUT, progress=lambda *a: calls.append(a))
    assert path == cache / "toy" / "blob.bin"
    assert path.read_bytes() == data
    assert files_under(cache) == ["toy/.dataset.json", "toy/blob.bin"]
    manifest = json.loads((cache / "toy" / ".dataset.json").read_text())
    assert manifest["files"][0]["sha256"] == sha256(data)
    assert calls[-1] == ("blob.bin", len(data), len(data))
    assert resolve("data://toy", cache_dir=cache, registry=reg) == path
    assert resolve("data://toy/blob.bin", cache_dir=cache, registry=reg) == path
    [row] = list_datasets(cache, reg)
    assert (row.status, row.size, row.path) == ("cached", len(data), path)
    requests = len(server.log)
    assert fetch("toy", cache, registry=reg, timeout=TIMEOUT) == path
    assert len(server.log) == requests  # already cached: no network


def test_a_killed_fetch_leaves_no_manifest_temporary(server: RangeServer, tmp_path: Path) -> None:
    """A manifest temporary left by a fetch killed while writing it is removed by the next."""
    data = payload(1000)
    server.files["blob.bin"] = data
    reg = {"toy": toy(server.url("blob.bin"), data)}
    cache = tmp_path / "cache"
    (cache / "toy").mkdir(parents=True)
    leftover = cache / "toy" / "..dataset.json.k1ll3d.tmp"  # harness.atomic's naming
    leftover.write_text('{"na')
    fetch("toy", cache, registry=reg, timeout=TIMEOUT)
    assert files_under(cache) == ["toy/.dataset.json", "toy/blob.bin"]


_KILLABLE = """
import sys
from harness.public_data import Dataset, fetch
ds = Dataset.model_validate_json(sys.argv[1])
fetch(ds.name, sys.argv[2], registry={ds.name: ds}, timeout=30, retries=0)
"""


def test_fetch_killed_mid_download_resumes_with_range(server: RangeServer, tmp_path: Path) -> None:
    data = payload(400_000, seed=1)
    server.files["blob.bin"] = data
    server.stall_after = 150_000
    ds = toy(server.url("blob.bin"), data)
    cache = tmp_path / "cache"
    part = cache / "toy" / "blob.bin.part"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, ds.model_dump_json(), str(cache)],
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not (part.is_file() and part.stat().st_size >= 150_000):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the fetch never wrote the first bytes"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert part.stat().st_size == 150_000
    assert not (cache / "toy" / "blob.bin").exists()
    with pytest.raises(DatasetNotCachedError, match="partly downloaded"):
        resolve("data://toy", cache_dir=cache, registry={"toy": ds})

    path = fetch("toy", cache, registry={"toy": ds}, timeout=TIMEOUT)
    assert path.read_bytes() == data
    assert server.log[-1] == ("blob.bin", "bytes=150000-", 206)
    assert files_under(cache) == ["toy/.dataset.json", "toy/blob.bin"]


def test_dropped_connection_is_resumed_within_one_fetch(
    server: RangeServer, tmp_path: Path
) -> None:
    data = payload(200_000, seed=2)
    server.files["blob.bin"] = data
    server.drop_after = 70_000
    reg = {"toy": toy(server.url("blob.bin"), data)}
    path = fetch("toy", tmp_path, registry=reg, timeout=TIMEOUT, retries=1)
    assert path.read_bytes() == data
    assert server.log == [("blob.bin", None, 200), ("blob.bin", "bytes=70000-", 206)]


def test_server_ignoring_range_restarts_from_zero(server: RangeServer, tmp_path: Path) -> None:
    data = payload(100_000, seed=3)
    server.files["blob.bin"] = data
    server.ignore_range = True
    reg = {"toy": toy(server.url("blob.bin"), data)}
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "blob.bin.part").write_bytes(b"x" * 1000)
    path = fetch("toy", tmp_path, registry=reg, timeout=TIMEOUT)
    assert path.read_bytes() == data  # not appended to the 1000 stale bytes
    assert server.log == [("blob.bin", "bytes=1000-", 200)]


def test_resumed_bytes_of_another_version_are_downloaded_again(
    server: RangeServer, tmp_path: Path
) -> None:
    data = payload(100_000, seed=4)
    server.files["blob.bin"] = data
    reg = {"toy": toy(server.url("blob.bin"), data)}
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "blob.bin.part").write_bytes(payload(1000, seed=99))
    assert fetch("toy", tmp_path, registry=reg, timeout=TIMEOUT).read_bytes() == data
    assert server.log == [("blob.bin", "bytes=1000-", 206), ("blob.bin", None, 200)]


def test_corrupt_download_is_refused_and_nothing_kept(server: RangeServer, tmp_path: Path) -> None:
    data = payload(120_000, seed=5)
    server.files["blob.bin"] = data
    server.corrupt = True
    reg = {"toy": toy(server.url("blob.bin"), data)}
    with pytest.raises(ChecksumError, match=r"sha256 .* expected") as err:
        fetch("toy", tmp_path, registry=reg, timeout=TIMEOUT)
    assert "nothing was kept" in str(err.value)
    assert files_under(tmp_path) == []  # no .part, no final file, no manifest
    with pytest.raises(DatasetNotCachedError, match="harness data fetch toy"):
        resolve("data://toy", cache_dir=tmp_path, registry=reg)


def test_oversized_download_is_refused(server: RangeServer, tmp_path: Path) -> None:
    data = payload(50_000, seed=6)
    server.files["blob.bin"] = data + b"trailing"
    reg = {"toy": toy(server.url("blob.bin"), data)}
    with pytest.raises(ChecksumError, match="expected 50000"):
        fetch("toy", tmp_path, registry=reg, timeout=TIMEOUT)
    assert files_under(tmp_path) == []


def test_resolve_of_an_absent_dataset_gives_the_fetch_command(tmp_path: Path) -> None:
    reg = {"toy": toy("http://127.0.0.1:9/blob.bin", b"abc")}
    with pytest.raises(DatasetNotCachedError) as err:
        resolve("data://toy/blob.bin", registry=reg)
    assert isinstance(err.value, HarnessError)
    assert str(err.value).endswith("fetch it with: harness data fetch toy")
    with pytest.raises(
        DatasetNotCachedError, match=re.escape(f"--data-dir {tmp_path / 'other'}") + "$"
    ):
        resolve("data://toy", cache_dir=tmp_path / "other", registry=reg)
    with pytest.raises(DatasetNotCachedError, match=r"harness data fetch shopbench-dev$"):
        resolve("data://shopbench-dev")
    with pytest.raises(DatasetError, match=r"unknown dataset 'nope'.*shopbench-dev"):
        resolve("data://nope/x.json")
    with pytest.raises(DatasetError, match="stay inside"):
        resolve("data://toy/../x", registry=reg)
    assert resolve("rel/dev.json") == Path("rel/dev.json")
    p = tmp_path / "x.json"
    assert resolve(p) is p


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def test_zip_is_kept_extracted_and_inner_paths_resolve(server: RangeServer, tmp_path: Path) -> None:
    archive = _zip({"skills/skill1.json": b'{"a": 1}\n', "multiple_choice/t_dataset.csv": b"q\n"})
    server.files["data.zip"] = archive
    reg = {
        "toyzip": toy(server.url("data.zip"), archive, "toyzip", path="data.zip", extract="data")
    }
    root = fetch("toyzip", tmp_path, registry=reg, timeout=TIMEOUT)
    assert root == tmp_path / "toyzip" / "data"
    assert files_under(tmp_path / "toyzip") == [
        ".dataset.json",
        "data.zip",
        "data/multiple_choice/t_dataset.csv",
        "data/skills/skill1.json",
    ]
    assert (tmp_path / "toyzip" / "data.zip").read_bytes() == archive
    inner = resolve("data://toyzip/data/skills/skill1.json", cache_dir=tmp_path, registry=reg)
    assert inner.read_bytes() == b'{"a": 1}\n'
    assert resolve("data://toyzip", cache_dir=tmp_path, registry=reg) == root
    with pytest.raises(DatasetError, match=r"no such path .* holds: data, data.zip"):
        resolve("data://toyzip/data/skills/nope.json", cache_dir=tmp_path, registry=reg)
    # A lost extraction makes the dataset incomplete; a fetch re-extracts from the kept zip.
    (tmp_path / "toyzip" / "data" / "skills" / "skill1.json").unlink()
    (tmp_path / "toyzip" / "data" / "skills").rmdir()
    (tmp_path / "toyzip" / "data" / "multiple_choice" / "t_dataset.csv").unlink()
    (tmp_path / "toyzip" / "data" / "multiple_choice").rmdir()
    (tmp_path / "toyzip" / "data").rmdir()
    requests = len(server.log)
    assert cache_status(reg["toyzip"], tmp_path) == "partial"
    fetch("toyzip", tmp_path, registry=reg, timeout=TIMEOUT)
    assert inner.read_bytes() == b'{"a": 1}\n'
    assert len(server.log) == requests


def test_zip_escaping_its_directory_is_not_extracted(server: RangeServer, tmp_path: Path) -> None:
    archive = _zip({"ok.txt": b"ok", "../evil.txt": b"evil"})
    server.files["data.zip"] = archive
    reg = {
        "toyzip": toy(server.url("data.zip"), archive, "toyzip", path="data.zip", extract="data")
    }
    with pytest.raises(DatasetError, match="refusing to extract"):
        fetch("toyzip", tmp_path, registry=reg, timeout=TIMEOUT)
    assert not (tmp_path / "evil.txt").exists()
    assert files_under(tmp_path) == ["toyzip/data.zip"]  # verified download, not extracted
    assert cache_status(reg["toyzip"], tmp_path) == "partial"


def test_unpublished_checksum_needs_an_explicit_sha256(server: RangeServer, tmp_path: Path) -> None:
    data = payload(30_000, seed=7)
    server.files["blob.bin"] = data
    reg = {"toy": toy(server.url("blob.bin"), None)}
    with pytest.raises(DatasetError, match=r"no checksum is published.*--sha256 HEX"):
        fetch("toy", tmp_path, registry=reg, timeout=TIMEOUT)
    assert server.log == []
    with pytest.raises(DatasetNotCachedError, match="harness data fetch toy --sha256 HEX"):
        resolve("data://toy", registry=reg)
    with pytest.raises(ChecksumError):
        fetch("toy", tmp_path, registry=reg, sha256="0" * 64, timeout=TIMEOUT)
    with pytest.raises(DatasetError, match="64 hex"):
        fetch("toy", tmp_path, registry=reg, sha256="abc", timeout=TIMEOUT)
    path = fetch("toy", tmp_path, registry=reg, sha256=sha256(data).upper(), timeout=TIMEOUT)
    assert path.read_bytes() == data
    pinned = {"toy": toy(server.url("blob.bin"), data)}
    with pytest.raises(DatasetError, match="differs from the sha256 the registry pins"):
        fetch("toy", tmp_path, registry=pinned, sha256="1" * 64, timeout=TIMEOUT)


def test_url_override_and_git_blob_verification(server: RangeServer, tmp_path: Path) -> None:
    data = payload(40_000, seed=8)
    server.files["mirror/blob.bin"] = data
    reg = {"toy": toy("http://127.0.0.1:9/gone.bin", None, git_blob=git_blob(data))}
    path = fetch("toy", tmp_path, registry=reg, url=server.url("mirror/blob.bin"), timeout=TIMEOUT)
    assert path.read_bytes() == data
    [rec] = json.loads((tmp_path / "toy" / ".dataset.json").read_text())["files"]
    assert (rec["sha256"], rec["git_blob"]) == (sha256(data), git_blob(data))
    wrong = {"toy2": toy(server.url("mirror/blob.bin"), None, "toy2", git_blob="0" * 40)}
    with pytest.raises(ChecksumError, match="git blob"):
        fetch("toy2", tmp_path, registry=wrong, timeout=TIMEOUT)


def test_a_new_registry_version_makes_the_cache_stale(server: RangeServer, tmp_path: Path) -> None:
    old, new = payload(20_000, seed=9), payload(20_000, seed=10)
    server.files["blob.bin"] = old
    fetch("toy", tmp_path, registry={"toy": toy(server.url("blob.bin"), old)}, timeout=TIMEOUT)
    server.files["blob.bin"] = new
    reg = {"toy": toy(server.url("blob.bin"), new)}
    with pytest.raises(DatasetNotCachedError, match="not the version the registry pins"):
        resolve("data://toy", cache_dir=tmp_path, registry=reg)
    assert fetch("toy", tmp_path, registry=reg, timeout=TIMEOUT).read_bytes() == new
    assert resolve("data://toy", cache_dir=tmp_path, registry=reg).read_bytes() == new


def test_concurrent_fetch_of_one_dataset_is_refused(server: RangeServer, tmp_path: Path) -> None:
    reg = {"toy": toy(server.url("blob.bin"), b"abc")}
    with _lock(tmp_path, "toy"), pytest.raises(DatasetError, match="another fetch"):
        fetch("toy", tmp_path, registry=reg, timeout=TIMEOUT)
    assert server.log == []


def test_cache_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "here"))
    assert data_dir() == tmp_path / "here"
    monkeypatch.delenv("HARNESS_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir() == tmp_path / ".cache" / "shopbench-harness" / "data"


def test_registry_entries() -> None:
    assert {"shopbench-dev", "shopping-mmlu", "ec-guide", "ecinstruct"} <= set(REGISTRY)
    for ds in REGISTRY.values():
        assert ds.verifiable, ds.name
        assert all(u.startswith("https://") for f in ds.files for u in f.urls), ds.name
    dev = REGISTRY["shopbench-dev"].files[0]
    assert (dev.size, dev.sha256) == (
        81981,
        "a73043af0d7a19ac5a769e27264084600c83fe71babc2fde4fbbb2269fc462f5",
    )
    mmlu = REGISTRY["shopping-mmlu"]
    assert (mmlu.layout, mmlu.files[0].extract, mmlu.files[0].size) == ("zip", "data", None)
    assert len(REGISTRY["ec-guide"].files) == 27


def test_registry_checksums_match_the_real_dev_set(real_dev_set: Path) -> None:
    dev = real_dev_set
    [f] = REGISTRY["shopbench-dev"].files
    assert (dev.stat().st_size, sha256(dev.read_bytes())) == (f.size, f.sha256)


def test_registry_checksums_match_the_real_ec_guide(real_ec_guide: Path) -> None:
    checked = 0
    for f in REGISTRY["ec-guide"].files:
        copy = real_ec_guide / f.path
        if copy.is_file():
            content = copy.read_bytes()
            # Three files have no published size or sha256 (the shared copy lacks them; the
            # data cache's copy has them): their git blob id pins them.
            assert (
                len(content) if f.size is not None else None,
                sha256(content) if f.sha256 is not None else None,
                git_blob(content),
            ) == (f.size, f.sha256, f.git_blob), f.path
            checked += 1
    assert checked >= 20


def test_cli_fetch_list_and_path(
    server: RangeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(10_000, seed=11)
    server.files["blob.bin"] = data
    monkeypatch.setitem(REGISTRY, "toy", toy(server.url("blob.bin"), data))
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    parser = argparse.ArgumentParser(prog="harness data")
    data_cli.add_arguments(parser)

    def run(*argv: str) -> str:
        out = io.StringIO()
        assert data_cli.main(parser.parse_args(argv), Console(file=out, width=200)) == 0
        return out.getvalue()

    assert "toy" in run("list") and "no" in run("list")
    assert run("fetch", "toy", "--timeout", "5").strip() == str(tmp_path / "toy" / "blob.bin")
    assert re.search(r"toy .* yes", run("list"))
    assert run("path", "data://toy/blob.bin").strip() == str(tmp_path / "toy" / "blob.bin")
    other = tmp_path / "other"
    with pytest.raises(DatasetNotCachedError, match=re.escape(f"--data-dir {other}")):
        run("path", "data://toy", "--data-dir", str(other))
