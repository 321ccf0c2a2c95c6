"""Engines shared by the stages of a sweep (or of one run and its baselines).

A sweep over prompts and decoding changes only what the ``infer`` stage sends; starting an
engine per trial spends most of the sweep loading the same weights. While a pool is open
(:func:`open_pool`: ``harness sweep``, and ``harness run`` when its plan serves more than
one ``infer`` stage), an ``infer`` stage whose engine is shareable asks the pool for an
engine instead of starting one: stages with the same :func:`fingerprint` (model dir, engine,
every ``infer`` field that fixes the engine, the interpreter) get the same
:mod:`~harness.inference.engine_host` process, started by the first of them and kept up
until the pool closes. Requests and decoding stay per stage (per request, in fact), so each
stage's results, key and published dir are what they would be alone.

The pool is a private directory (``HARNESS_ENGINE_POOL``) holding one
``<fingerprint>.host.json`` per running host (its abstract socket address, authentication key
and pid) behind a file lock per fingerprint, so concurrent stages wait for one start instead
of starting two, and the tokenizer classes its stages resolved. Hosts watch
the pool's owner process (``HARNESS_ENGINE_POOL_OWNER``: the process that opened the pool, or
on a Ray cluster the node's keeper actor, :mod:`harness.sweeps.placement`) and end with it,
also when it is killed; :meth:`EnginePool.close` ends them at once. A host that has died is replaced on the
next request; the stage it was serving fails with an error saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from harness.inference.engine_host import OWNER_ENV
from harness.inference.engines.base import EngineSpec, GenRequest, GenResult
from harness.inference.errors import InferenceError
from shopbench_kernels.fsutil import flocked
from shopbench_kernels.fsutil import pid_running as _alive

POOL_ENV = "HARNESS_ENGINE_POOL"
SHAREABLE = ("vllm", "transformers")
"""Engines worth sharing: they load weights locally (``openai`` starts nothing)."""
REQUEST_ONLY_FIELDS = frozenset({"constrained", "route", "keyphrase_as_ner", "limit", "replicas"})
"""``infer`` fields that shape the requests, not the engine; every other field (a new one
too) is part of an engine's fingerprint."""
START_TIMEOUT_S = 1800.0
CLOSE_WAIT_S = 30.0
"""How long :meth:`EnginePool.close` waits for killed hosts to be gone."""
HOST_INFO = ".host.json"
"""Suffix of a running host's address file in the pool directory."""


def fingerprint(spec: EngineSpec) -> str:
    """What fixes a running engine: stages with equal fingerprints can share one."""
    infer = spec.infer.model_dump(mode="json", exclude=set(REQUEST_ONLY_FIELDS))
    material = {
        "infer": infer,
        "model_dir": str(Path(spec.model_dir).resolve()) if spec.model_dir else None,
        "trust_remote_code": spec.trust_remote_code,
        "chat": spec.chat,
        "env": spec.env,
        "python": sys.executable,
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def shareable(spec: EngineSpec) -> bool:
    """Whether a stage may take this engine from a pool (one replica of a local engine)."""
    return spec.infer.engine in SHAREABLE and spec.infer.replicas == 1


class RemoteEngine:
    """An engine host behind the engine interface (:class:`~harness.inference.engines.base.
    Engine`); ``close`` only disconnects."""

    def __init__(self, conn: Connection, facts: dict[str, Any], shared: dict[str, Any]) -> None:
        self.conn = conn
        self.name = str(facts.get("engine"))
        self.weights = facts.get("weights")
        self.pid = int(facts["pid"])
        self.shared = shared
        """What the stage summary records: the host's pid, fingerprint, whether it was
        started for this stage."""

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Send one group to the host; its results, in request order."""
        try:
            self.conn.send(("generate", list(requests)))
            status, payload = self.conn.recv()
        except (EOFError, OSError) as e:
            raise InferenceError(
                f"the shared engine (pid {self.pid}) went away while serving this stage "
                f"({type(e).__name__}); the next stage starts a new one"
            ) from None
        if status != "ok":
            raise InferenceError(f"{payload} (shared engine, pid {self.pid})")
        return list(payload)

    def close(self) -> None:
        """Disconnect (the host keeps serving other stages)."""
        self.conn.close()


class EnginePool:
    """The pool directory: finding, starting and ending engine hosts."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _locked(self, fp: str) -> AbstractContextManager[None]:
        return flocked(self.root / f"{fp}.lock")

    def _connect(
        self, info: dict[str, Any], *, hello: bool = True
    ) -> tuple[Connection, dict[str, Any]] | None:
        if not _alive(int(info["pid"])):
            return None
        try:
            conn = Client(info["address"], family="AF_UNIX", authkey=bytes.fromhex(info["authkey"]))
            if not hello:
                return conn, {}
            conn.send(("hello", None))
            status, facts = conn.recv()
        except (OSError, EOFError):
            return None
        return (conn, facts) if status == "ok" else None

    def acquire(self, spec: EngineSpec) -> tuple[RemoteEngine, float]:
        """A connection to the host of this engine, starting the host when none runs.

        Returns:
            The engine and the seconds this stage waited for it to start (0 when it ran).

        Raises:
            InferenceError: The host failed to start (its log's tail is in the message).
        """
        fp = fingerprint(spec)
        info_file = self.root / f"{fp}{HOST_INFO}"
        t0 = time.perf_counter()
        with self._locked(fp):
            if info_file.is_file():
                got = self._connect(json.loads(info_file.read_text()))
                if got is not None:
                    conn, facts = got
                    shared = {"pid": facts["pid"], "fingerprint": fp, "started_here": False}
                    return RemoteEngine(conn, facts, shared), 0.0
                info_file.unlink()
            starting = self._starting(fp)
            info = (
                self._wait(starting, fp, info_file)
                if starting is not None
                else self._start(spec, fp, info_file)
            )
            got = self._connect(info)
            if got is None:
                raise InferenceError(f"the shared engine (pid {info['pid']}) refused a connection")
            conn, facts = got
            shared = {
                "pid": facts["pid"],
                "fingerprint": fp,
                "started_here": starting is None,
                "engine_start_s": info["start_s"],
                **({"started_ahead": True} if starting is not None else {}),
            }
            return RemoteEngine(conn, facts, shared), time.perf_counter() - t0

    def _end_idle_hosts(self, keep: str) -> list[int]:
        """End the other hosts that serve no stage now: a new engine gets the memory (on a GPU
        two engines of one model size rarely fit). Busy hosts are left running."""
        ended = []
        for info_file in sorted(self.root.glob(f"*{HOST_INFO}")):
            if info_file.name == f"{keep}{HOST_INFO}":
                continue
            try:
                info = json.loads(info_file.read_text())
            except (OSError, ValueError):
                continue
            got = self._connect(info, hello=False)
            if got is None:
                continue
            conn, _ = got
            try:
                conn.send(("status", None))
                status, state = conn.recv()
                if status == "ok" and state["clients"] == 0:
                    os.killpg(int(info["pid"]), signal.SIGKILL)
                    ended.append(int(info["pid"]))
                    info_file.unlink(missing_ok=True)
            except (OSError, EOFError, ProcessLookupError):
                pass
            finally:
                conn.close()
        return ended

    def prestart(self, spec: EngineSpec) -> bool:
        """Start the host of this engine without waiting for it (a sweep, ahead of the first
        trial that needs it; that trial's :meth:`acquire` waits for the rest of the start).

        Returns:
            False when a host for it runs or is starting already.
        """
        fp = fingerprint(spec)
        info_file = self.root / f"{fp}{HOST_INFO}"
        with self._locked(fp):
            if info_file.is_file() or self._starting(fp) is not None:
                return False
            self._end_idle_hosts(keep=fp)
            self._spawn(spec, fp, info_file)
            return True

    def _starting(self, fp: str) -> int | None:
        """The pid of a host of ``fp`` started ahead and not up yet (None: none)."""
        try:
            pid = int((self.root / f"{fp}.starting").read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _spawn(self, spec: EngineSpec, fp: str, info_file: Path) -> subprocess.Popen[bytes]:
        spec_file = self.root / f"{fp}.spec.pickle"
        spec_file.write_bytes(pickle.dumps(spec))
        log = self.root / f"{fp}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "harness.inference.engine_host",
                    str(spec_file),
                    str(info_file),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        # One file per host started (a replaced host keeps its own): what close ends and
        # started counts.
        (self.root / f"{fp}.{proc.pid}.pid").write_text(str(proc.pid))
        (self.root / f"{fp}.starting").write_text(str(proc.pid))
        return proc

    def _wait(
        self, proc: subprocess.Popen[bytes] | int, fp: str, info_file: Path
    ) -> dict[str, Any]:
        """The info of the host ``proc`` once it is up (raises when it dies first)."""
        pid = proc if isinstance(proc, int) else proc.pid
        deadline = time.monotonic() + START_TIMEOUT_S
        while not info_file.is_file():
            ended = not _alive(pid)
            if ended or time.monotonic() > deadline:
                if not ended:
                    os.killpg(pid, signal.SIGKILL)
                code = None if isinstance(proc, int) else proc.poll()
                tail = (self.root / f"{fp}.log").read_text(errors="replace")[-3000:]
                raise InferenceError(f"the shared engine failed to start (exit {code}):\n{tail}")
            time.sleep(0.1)
        (self.root / f"{fp}.starting").unlink(missing_ok=True)
        return json.loads(info_file.read_text())

    def _start(self, spec: EngineSpec, fp: str, info_file: Path) -> dict[str, Any]:
        self._end_idle_hosts(keep=fp)
        return self._wait(self._spawn(spec, fp, info_file), fp, info_file)

    def started(self) -> list[int]:
        """The pids of every host started in this pool so far (running or not)."""
        return [int(f.read_text()) for f in sorted(self.root.glob("*.pid"))]

    def close(self) -> list[int]:
        """End every host of the pool (and its processes), and wait until they are gone; the
        pids that were running."""
        ended = []
        for pid_file in sorted(self.root.glob("*.pid")):
            pid = int(pid_file.read_text())
            if _alive(pid):
                ended.append(pid)
                with suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + CLOSE_WAIT_S
        while any(_alive(pid) for pid in ended) and time.monotonic() < deadline:
            time.sleep(0.05)
        return ended


def sharing_enabled() -> bool:
    """``HARNESS_SHARE_ENGINES`` is not ``off``."""
    from harness import config

    value = (config.get("HARNESS_SHARE_ENGINES") or "on").lower()
    if value not in ("on", "off", "1", "0", "true", "false"):
        raise InferenceError(f"HARNESS_SHARE_ENGINES={value!r}: must be `on` or `off`")
    return value in ("on", "1", "true")


def current_pool() -> EnginePool | None:
    """The pool this process's stages share, if one is open (``HARNESS_ENGINE_POOL``) and
    sharing is on."""
    root = os.environ.get(POOL_ENV)
    if not sharing_enabled():
        return None
    return EnginePool(Path(root)) if root and Path(root).is_dir() else None


@contextmanager
def open_pool() -> Iterator[EnginePool | None]:
    """Open a pool for the stages started inside the block (and their subprocesses, which
    inherit the environment); an enclosing open pool is reused, and none is opened with
    ``HARNESS_SHARE_ENGINES=off`` (None). Its hosts end with it."""
    outer = current_pool()
    if outer is not None or not sharing_enabled():
        yield outer  # type: ignore[misc]
        return
    root = Path(tempfile.mkdtemp(prefix="shopbench-engines-"))
    saved = {k: os.environ.get(k) for k in (POOL_ENV, OWNER_ENV)}
    os.environ[POOL_ENV], os.environ[OWNER_ENV] = str(root), str(os.getpid())
    pool = EnginePool(root)
    try:
        yield pool
    finally:
        pool.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)
