"""Warm stage workers shared by the trials of a sweep.

While a pool is open (:func:`open_workers`: ``harness sweep`` on this machine), the executor
runs each stage in a child forked by the :mod:`~harness.core.stage_worker` of the stage's
interpreter instead of a fresh ``python -m harness.core.stage_main`` process: same context,
same result, same log, without the seconds of imports. One worker serves every stage with
the same interpreter and environment (:func:`worker_key`), started by the first of them (or
ahead of time, :meth:`WorkerPool.prestart`) and kept until the pool closes.

The pool is a private directory (``HARNESS_STAGE_WORKER_POOL``) holding one
``<key>.worker.json`` per running worker behind a file lock per key, like the engine pool
(:mod:`harness.inference.engine_pool`); Ray workers of a sweep inherit it through the
environment. Workers watch the process that opened the pool and end with it, also when it is
killed; :meth:`WorkerPool.close` ends them at once. A worker that died or went stale (the
project's code changed under it) is replaced on the next request.

``HARNESS_STAGE_WORKERS=off`` turns the pool off: every stage starts a fresh process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from multiprocessing.connection import Client, Connection
from multiprocessing.reduction import send_handle
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from shopbench_kernels.fsutil import flocked
from shopbench_kernels.fsutil import pid_running as _alive

POOL_ENV = "HARNESS_STAGE_WORKER_POOL"
START_TIMEOUT_S = 600.0
CLOSE_WAIT_S = 10.0
INFO = ".worker.json"
VOLATILE_ENV = ("PYTHONBREAKPOINT", "SPT_NOENV", "WANDB_SERVICE")
VOLATILE_PREFIX = "RAY_"
"""Variables that differ between the processes of one sweep and that nothing a worker imports
reads: what Ray sets in its workers (and its driver, once started) and the address of the W&B
service a process started. A stage in a Ray worker and one in the driver share a worker; the
child still gets them."""


def workers_enabled() -> bool:
    """``HARNESS_STAGE_WORKERS`` is not ``off``."""
    from harness import config

    value = (config.get("HARNESS_STAGE_WORKERS") or "on").lower()
    if value not in ("on", "off", "1", "0", "true", "false"):
        raise HarnessError(f"HARNESS_STAGE_WORKERS={value!r}: must be `on` or `off`")
    return value in ("on", "1", "true")


def worker_key(python: str, env: Mapping[str, str]) -> str:
    """Which worker serves a stage: its interpreter and environment (what the worker's
    imports saw), less :data:`VOLATILE_ENV` and the pool itself."""
    kept = {
        k: v
        for k, v in env.items()
        if k not in VOLATILE_ENV and not k.startswith(VOLATILE_PREFIX) and k != POOL_ENV
    }
    text = json.dumps({"python": python, "env": kept}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class StageChild:
    """A stage running in a child of a worker (its pid), and how it ended."""

    def __init__(self, conn: Connection, pid: int, code: int | None = None) -> None:
        self.conn = conn
        self.pid = pid
        self.code = code

    def wait(self) -> int:
        """The child's exit code (once its stage is done)."""
        if self.code is not None:
            self.conn.close()
            return self.code
        try:
            kind, code = self.conn.recv()
        except (EOFError, OSError):
            return -int(signal.SIGKILL)  # the worker died: so did the child
        finally:
            self.conn.close()
        return int(code) if kind == "exit" else 1

    def kill(self) -> None:
        """Kill the child's session (closing the connection makes the worker do it too)."""
        if self.pid > 0:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self.conn.close()


class WorkerPool:
    """The workers of one pool directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _info(self, key: str) -> dict[str, Any] | None:
        path = self.root / f"{key}{INFO}"
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return info if _alive(int(info["pid"])) else None

    def prestart(self, python: str, env: Mapping[str, str], cwd: Path) -> None:
        """Start the worker for ``python`` and ``env`` now, without waiting for it to be
        ready (its imports overlap whatever comes next)."""
        key = worker_key(python, env)
        with self._lock(key):
            if self._info(key) is None and not self._starting(key):
                self._spawn(python, env, cwd, key)

    def start(
        self, python: str, env: Mapping[str, str], cwd: Path, argv: list[str], out_fd: int
    ) -> StageChild:
        """Run ``stage_main`` with ``argv`` in a child of the worker for ``python`` and
        ``env``; the child writes to ``out_fd`` (the caller closes its own copy).

        Raises:
            HarnessError: The worker could not be started or would not take the stage.
        """
        key = worker_key(python, env)
        for _ in range(3):
            info = self._ready(python, env, cwd, key)
            try:
                conn = Client(
                    info["address"], family="AF_UNIX", authkey=bytes.fromhex(info["authkey"])
                )
            except (OSError, EOFError):  # it died since: start another
                self._forget(key, info)
                continue
            try:
                conn.send(("run", {"argv": argv, "env": dict(env), "cwd": str(cwd)}))
                send_handle(conn, out_fd, int(info["pid"]))
                kind, value = conn.recv()
            except (OSError, EOFError):
                conn.close()
                self._forget(key, info)
                continue
            if kind == "started":
                return StageChild(conn, int(value))
            if kind == "exit":  # the child died before it could say it started
                return StageChild(conn, -1, code=int(value))
            conn.close()
            self._forget(key, info)  # stale: the next try starts a fresh worker
        raise HarnessError(f"no stage worker would take the stage (pool {self.root})")

    def _ready(self, python: str, env: Mapping[str, str], cwd: Path, key: str) -> dict[str, Any]:
        """The running worker's info, starting it (once, under the key's lock) if needed.

        A worker that failed to start is not tried again in this pool: the stages of its key
        run as fresh processes.
        """
        failed = self.root / f"{key}.failed"
        with self._lock(key):
            info = self._info(key)
            if info is not None:
                return info
            if failed.is_file():
                raise HarnessError(failed.read_text())
            proc_pid = self._starting(key) or self._spawn(python, env, cwd, key)
            deadline = time.monotonic() + START_TIMEOUT_S
            while (info := self._info(key)) is None:
                if not _alive(proc_pid) or time.monotonic() > deadline:
                    with suppress(ProcessLookupError):
                        os.killpg(proc_pid, signal.SIGKILL)
                    log = (self.root / f"{key}.log").read_text(errors="replace")[-3000:]
                    failed.write_text(f"the stage worker failed to start:\n{log}")
                    raise HarnessError(failed.read_text())
                time.sleep(0.05)
            return info

    def _starting(self, key: str) -> int | None:
        """The pid of a worker of this key started but not ready yet."""
        pid_file = self.root / f"{key}.starting"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _spawn(self, python: str, env: Mapping[str, str], cwd: Path, key: str) -> int:
        info_file = self.root / f"{key}{INFO}"
        info_file.unlink(missing_ok=True)
        with (self.root / f"{key}.log").open("ab") as log:
            proc = subprocess.Popen(
                [python, "-m", "harness.core.stage_worker", str(info_file), str(self.owner)],
                cwd=cwd,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        (self.root / f"{key}.starting").write_text(str(proc.pid))
        (self.root / f"{key}.{proc.pid}.pid").write_text(str(proc.pid))
        return proc.pid

    def _forget(self, key: str, info: dict[str, Any]) -> None:
        with self._lock(key):
            current = self._info(key)
            if current is not None and current["pid"] == info["pid"]:
                (self.root / f"{key}{INFO}").unlink(missing_ok=True)

    @property
    def owner(self) -> int:
        return int((self.root / "owner").read_text())

    def _lock(self, key: str) -> AbstractContextManager[None]:
        return flocked(self.root / f"{key}.lock")

    def started(self) -> list[int]:
        """The pids of every worker started in this pool so far."""
        return [int(f.read_text()) for f in sorted(self.root.glob("*.pid"))]

    def close(self) -> list[int]:
        """End every worker (each kills its running children first) and wait until they are
        gone; the pids that were running."""
        ended = [pid for pid in self.started() if _alive(pid)]
        for pid in ended:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + CLOSE_WAIT_S
        while any(_alive(pid) for pid in ended) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in ended:
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        return ended


def current_workers() -> WorkerPool | None:
    """The worker pool this process's stages use, if one is open and workers are on."""
    root = os.environ.get(POOL_ENV)
    if not root or not Path(root).is_dir() or not workers_enabled():
        return None
    return WorkerPool(Path(root))


@contextmanager
def open_workers() -> Iterator[WorkerPool | None]:
    """Open a worker pool for the stages started inside the block (and in subprocesses that
    inherit the environment); an enclosing pool is reused, and none is opened with
    ``HARNESS_STAGE_WORKERS=off`` (None). Its workers end with it."""
    outer = current_workers()
    if outer is not None or not workers_enabled():
        yield outer
        return
    root = Path(tempfile.mkdtemp(prefix="shopbench-workers-"))
    (root / "owner").write_text(str(os.getpid()))
    saved = os.environ.get(POOL_ENV)
    os.environ[POOL_ENV] = str(root)
    pool = WorkerPool(root)
    try:
        yield pool
    finally:
        pool.close()
        if saved is None:
            os.environ.pop(POOL_ENV, None)
        else:
            os.environ[POOL_ENV] = saved
        shutil.rmtree(root, ignore_errors=True)


__all__ = [
    "POOL_ENV",
    "StageChild",
    "WorkerPool",
    "current_workers",
    "open_workers",
    "worker_key",
    "workers_enabled",
]
