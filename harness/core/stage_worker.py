"""A warm stage worker: one interpreter with the stages' heavy imports done, forking a child
per stage.

A sweep runs the same few stages (``infer``, ``score``) once per trial; started afresh, each
stage process spends seconds importing what it needs (transformers to render chat templates,
rouge-score and matplotlib to score) for well under a second of work. While a worker pool is
open (:mod:`harness.core.worker_pool`), the executor hands each stage to the worker of its
interpreter instead: started as ``python -m harness.core.stage_worker INFO_JSON OWNER_PID``,
it imports the code of every stage that declares ``warm`` modules and those modules
(:func:`harness.core.stage.stage`: what the stage function imports lazily), reads the
installed package versions once, then serves requests on an abstract Unix socket
(authenticated with a random key) published in ``INFO_JSON`` (written atomically once it is
ready).

A request names the stage's context and result files, its environment and working directory,
and passes the write end of the executor's log pipe. The worker forks: the child starts a
session of its own, takes the pipe as stdout and stderr, sets the request's environment and
runs :func:`harness.core.stage_main.main` exactly as a fresh stage process would, so a stage
run here writes the same files and result. Each stage still has a process of its own: a crash
or a kill ends that stage only. The client hears ``("started", pid)`` from the child, then
``("exit", code)``: from the child once the stage is done, before its process is torn down,
or from the worker when it reaps a child that could not say it (the worker's word comes only
after the child is gone, so the two never interleave). A client that goes away has its
child's session killed.

The worker never serves code older than the files: before each fork it checks that no
module it imported has changed on disk and that no import directory (site-packages) has,
and otherwise answers ``("stale", why)`` and ends once its running children have (the pool
starts a fresh worker). It is single-threaded by design (forking a multi-threaded process
can leave the child holding a lock no thread will release), and ends, killing its running
children's sessions, when its owner process (the one that opened the pool) is gone or on
SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import importlib
import os
import select
import signal
import socket
import sys
import time
import traceback
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from multiprocessing.reduction import recv_handle
from pathlib import Path
from typing import Any

from shopbench_kernels.fsutil import pid_alive

WATCH_S = 0.2
PR_SET_PDEATHSIG = 1


def preload() -> tuple[list[str], list[str]]:
    """Import, for every stage that declares ``warm`` modules, its code (the project modules
    of :attr:`~harness.core.stage.StageDef.code_modules`) and those modules.

    Returns:
        The modules imported, and those that could not be (``module: why``; an environment
        without a stage's packages still serves the stages it has).
    """
    from harness.core.stage import stage_defs

    done: list[str] = []
    failed: list[str] = []
    for definition in stage_defs().values():
        if not definition.warm:
            continue
        for module in (*definition.code_modules, *definition.warm):
            if module in done:
                continue
            try:
                importlib.import_module(module)
                done.append(module)
            except Exception as e:  # an optional package missing here, say
                failed.append(f"{module}: {type(e).__name__}: {e}")
    return done, failed


def _watched() -> dict[str, tuple[int, int]]:
    """``(mtime_ns, size)`` of every module file imported (a few thousand: milliseconds to
    check) and of every import directory (a package installed or removed)."""
    paths = {f for m in list(sys.modules.values()) if (f := getattr(m, "__file__", None))}
    paths |= {p for p in sys.path if p and os.path.isdir(p)}
    return {p: _stat(p) for p in sorted(paths)}


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_mtime_ns, st.st_size)


def stale(watched: dict[str, tuple[int, int]]) -> str | None:
    """What changed on disk since ``watched`` was taken (None: nothing)."""
    changed = [p for p, seen in watched.items() if _stat(p) != seen]
    if not changed:
        return None
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    return f"{changed[0]}{more} changed since the worker imported it"


class Worker:
    """The serving loop (single-threaded)."""

    def __init__(self, owner: int, packages: dict[str, str]) -> None:
        self.owner = owner
        self.packages = packages
        self.key = os.urandom(32)
        self.address = f"\0shopbench-stage-worker-{os.getpid()}-{self.key[:4].hex()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.address)
        self.sock.listen(64)
        self.running: dict[int, Connection] = {}
        self.watched = _watched()
        self.stale_why: str | None = None

    def serve(self) -> None:
        """Accept requests until the owner is gone, or the worker is stale and idle."""
        while True:
            self._reap()
            if self.owner and not pid_alive(self.owner):
                print(f"owner process {self.owner} is gone: ending", flush=True)
                self.end(0)
            if self.stale_why and not self.running:
                print(f"stale ({self.stale_why}): ending", flush=True)
                self.end(0)
            by_fd = {c.fileno(): (pid, c) for pid, c in self.running.items()}
            ready, _, _ = select.select([self.sock, *by_fd], [], [], WATCH_S)
            for fd in ready:
                if fd is self.sock:
                    self._accept()
                elif fd in by_fd:
                    # A client only ever speaks first; readable means it went away.
                    pid, conn = by_fd[fd]
                    if _gone(conn):
                        _kill_session(pid)

    def _accept(self) -> None:
        try:
            raw, _ = self.sock.accept()
        except OSError:
            return
        conn = Connection(raw.detach())
        try:
            deliver_challenge(conn, self.key)
            answer_challenge(conn, self.key)
            if not conn.poll(10):
                raise EOFError("no request")
            kind, request = conn.recv()
            if kind == "status":
                conn.send(("ok", {"running": len(self.running), "pid": os.getpid()}))
                conn.close()
                return
            fd = recv_handle(conn)
        except Exception:  # a client that failed to authenticate or went away
            conn.close()
            return
        why = self.stale_why or stale(self.watched)
        if why:
            self.stale_why = why
            os.close(fd)
            conn.send(("stale", why))
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        # Objects of the preloaded modules are never collected in a child: the collector
        # would otherwise touch (and copy) every page of them.
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            self._child(conn, fd, request)
        os.close(fd)
        self.running[pid] = conn

    def _reap(self) -> None:
        while self.running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.running.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.send(("exit", os.waitstatus_to_exitcode(status)))
                conn.close()

    def _child(self, conn: Connection, fd: int, request: dict[str, Any]) -> None:
        """In the forked child: become a fresh stage process, run the stage, exit."""
        code = 1
        try:
            os.setsid()
            _die_with_parent()
            conn.send(("started", os.getpid()))
            _own_exit_handlers()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            self.sock.close()
            for other in self.running.values():
                other.close()
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            os.environ.clear()
            os.environ.update(request["env"])
            os.chdir(request["cwd"])
            from harness.core import stage_main

            sys.argv = [stage_main.__file__, *request["argv"]]
            code = stage_main.main(list(request["argv"]), packages=self.packages)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            try:
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
                # The stage is done: say so now. Tearing down a forked process can take a
                # second, and nothing the stage wrote depends on it.
                os.close(1)
                os.close(2)
                conn.send(("exit", code))
            finally:
                os._exit(code)

    def end(self, code: int) -> None:
        """Kill every running child's session, then exit."""
        for pid in list(self.running):
            _kill_session(pid)
        sys.stdout.flush()
        os._exit(code)


def _gone(conn: Connection) -> bool:
    try:
        conn.recv()
    except (EOFError, OSError):
        return True
    return False


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _own_exit_handlers() -> None:
    """Drop the exit handlers the worker's imports registered (torch's, matplotlib's, cache
    clearing: seconds of copy-on-write page faults in a forked child, for a process about to
    end) but keep those a stage's own work relies on: multiprocessing's (ends the processes
    it started) and logging's (flushes its handlers). Handlers the stage registers run."""
    import logging
    import multiprocessing.util

    atexit._clear()
    atexit.register(multiprocessing.util._exit_function)
    atexit.register(logging.shutdown)


def _die_with_parent() -> None:
    """Ask Linux to kill this child when the worker dies (a worker killed outright cannot
    end its children itself)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    """Preload, publish the worker's address, serve."""
    from harness.atomic import write_json
    from harness.core.stage_main import package_versions

    info_file, owner = Path(argv[0]), int(argv[1])
    t0 = time.perf_counter()
    warmed, failed = preload()
    packages = package_versions()
    worker = Worker(owner, packages)
    signal.signal(signal.SIGTERM, lambda *_: worker.end(0))
    for line in failed:
        print(f"not warmed: {line}", flush=True)
    warm_s = time.perf_counter() - t0
    write_json(
        info_file,
        {
            "address": worker.address,
            "authkey": worker.key.hex(),
            "pid": os.getpid(),
            "python": sys.executable,
            "warm_s": warm_s,
            "warmed": warmed,
        },
    )
    print(f"warm in {warm_s:.1f} s ({len(warmed)} modules), serving", flush=True)
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
