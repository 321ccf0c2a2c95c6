"""A shared engine: one process holding one engine, serving the requests of many stages.

Started by :mod:`harness.inference.engine_pool` as ``python -m
harness.inference.engine_host SPEC_PICKLE INFO_JSON`` (a ``__main__`` module, as vLLM's
spawned workers need) in a session of its own. It starts the engine the pickled
:class:`~harness.inference.engines.base.EngineSpec` names, listens on an abstract Unix
socket (authenticated with a random key), and writes ``INFO_JSON`` (address, key, pid,
start-up seconds) atomically once the engine is up: a client never sees a half-started host.

Clients send groups of :class:`~harness.inference.engines.base.GenRequest` (one task type of
one stage). One engine thread takes every group waiting at that moment, merges those with the
same decoding parameters into one engine call (so concurrent stages batch together) and
answers each client with its own results, in its own order. A client connecting while nothing
else is in flight gets a cleared prefix cache, so a stage served alone sees the engine as a
freshly started one would.

The host ends when its pool's owner process (``HARNESS_ENGINE_POOL_OWNER``) is gone, when it
is told to, or after the engine fails a call (the failure is sent to the clients it was
serving; the pool starts a new host for the next stage). Ending kills its whole process group,
so no engine worker outlives it.
"""

from __future__ import annotations

import os
import pickle
import queue
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

OWNER_ENV = "HARNESS_ENGINE_POOL_OWNER"
WATCH_S = 0.5


@dataclass
class _Job:
    """One group of requests from one client, waiting for its results."""

    requests: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Any] | None = None
    error: str | None = None


class _Host:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.busy = 0  # jobs submitted whose reply is not sent yet
        self.lock = threading.Lock()
        self.served = 0
        self.failed = False
        self.clients = 0  # connections open now

    def facts(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "engine": getattr(self.engine, "name", None),
            "weights": getattr(self.engine, "weights", None),
        }

    def fresh_session(self) -> None:
        """Clear the prefix cache when no other client is being served."""
        with self.lock:
            idle = self.busy == 0 and self.jobs.empty()
        llm = getattr(self.engine, "llm", None)
        if idle and llm is not None and hasattr(llm, "reset_prefix_cache"):
            llm.reset_prefix_cache()

    def submit(self, requests: list[Any]) -> _Job:
        job = _Job(requests)
        with self.lock:
            self.busy += 1
        if self.failed:
            job.error = "the shared engine failed on an earlier call"
            return job
        self.jobs.put(job)
        job.done.wait()
        return job

    def replied(self) -> None:
        """A job's reply is sent; after a failure, the last reply ends the host."""
        with self.lock:
            self.busy -= 1
            last = self.busy == 0
        if self.failed and last:
            _end(1)

    def engine_loop(self) -> None:
        """Serve waiting jobs, merging those with equal decoding parameters."""
        while True:
            jobs = [self.jobs.get()]
            while True:
                try:
                    jobs.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            groups: dict[str, list[_Job]] = {}
            for job in jobs:
                params = job.requests[0].params if job.requests else None
                key = params.model_dump_json() if params is not None else ""
                groups.setdefault(key, []).append(job)
            for group in groups.values():
                merged = [r for job in group for r in job.requests]
                try:
                    out = self.engine.generate(merged) if merged else []
                except Exception as e:
                    # The engine may be broken: fail every waiting job, then end (the
                    # pool starts a new host for the next stage).
                    traceback.print_exc()
                    self.failed = True
                    detail = f"{type(e).__name__}: {e}"
                    for job in jobs:
                        if not job.done.is_set():
                            job.error = f"the shared engine failed: {detail}"
                            job.done.set()
                    return
                pos = 0
                for job in group:
                    job.results = out[pos : pos + len(job.requests)]
                    pos += len(job.requests)
                    self.served += len(job.requests)
                    job.done.set()


def _serve_client(host: _Host, conn: Connection) -> None:
    with host.lock:
        host.clients += 1
    try:
        while True:
            kind, payload = conn.recv()
            if kind == "hello":
                host.fresh_session()
                conn.send(("ok", host.facts()))
            elif kind == "generate":
                job = host.submit(payload)
                try:
                    conn.send(("error", job.error) if job.error else ("ok", job.results))
                finally:
                    host.replied()
            elif kind == "status":  # the asking connection is not counted
                with host.lock:
                    state = {"clients": host.clients - 1, "busy": host.busy}
                conn.send(("ok", {**state, "served": host.served}))
            elif kind == "shutdown":
                conn.send(("ok", None))
                _end(0)
            else:
                conn.send(("error", f"unknown message {kind!r}"))
    except (EOFError, OSError):
        pass
    finally:
        with host.lock:
            host.clients -= 1
        conn.close()


def _end(code: int) -> None:
    """End this host and everything it started (its process group)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.killpg(os.getpgid(0), signal.SIGKILL)
    finally:
        os._exit(code)


def _watch_owner(owner: int, pool_dir: Path) -> None:
    while True:
        time.sleep(WATCH_S)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            # A killed owner could not remove its pool: the first host to notice does.
            print(f"owner process {owner} is gone: ending", flush=True)
            shutil.rmtree(pool_dir, ignore_errors=True)
            _end(0)
        except PermissionError:
            pass


def main(argv: list[str]) -> int:
    """Start the engine, publish the host's address, serve until told to end."""
    from harness.atomic import write_json
    from harness.inference.engines.base import make_engine

    spec_file, info_file = Path(argv[0]), Path(argv[1])
    owner = int(os.environ.get(OWNER_ENV, "0") or 0)
    if owner:
        threading.Thread(target=_watch_owner, args=(owner, info_file.parent), daemon=True).start()
    spec = pickle.loads(spec_file.read_bytes())
    t0 = time.perf_counter()
    engine = make_engine(spec)
    start_s = time.perf_counter() - t0
    host = _Host(engine)
    key = os.urandom(32)
    address = f"\0shopbench-engine-{os.getpid()}-{key[:4].hex()}"
    listener = Listener(address, family="AF_UNIX", authkey=key)
    threading.Thread(target=host.engine_loop, daemon=True).start()
    write_json(
        info_file,
        {
            "address": address,
            "authkey": key.hex(),
            "pid": os.getpid(),
            "start_s": start_s,
            **host.facts(),
        },
    )
    print(f"engine up in {start_s:.1f} s, serving", flush=True)
    while True:
        try:
            conn = listener.accept()
        except Exception:  # a client that failed authentication or went away
            continue
        threading.Thread(target=_serve_client, args=(host, conn), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
