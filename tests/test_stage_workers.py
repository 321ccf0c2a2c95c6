"""Warm stage workers: stages of a sweep run in children forked from a worker that did their
imports once, with the same results as fresh stage processes, never with stale code, and
nothing left running when the process that opened the pool is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core import stage as base
from harness.core.executor import execute
from harness.core.plan import MANIFEST, build_plan
from harness.core.worker_pool import open_workers, worker_key
from harness.errors import StageError
from harness.spec import load_spec
from tests.plugins.worker_probe import MODES, PROBE, PROBE_FILE, WARM, worker_probe
from tests.support.paths import REPO
from tests.support.paths import TINY_CPU as TINY
from tests.support.served_sweep import alive, gone

PROBED = ["stages=[toy_a,toy_b,worker_probe]", "tracking.mode=disabled"]
PLUGINS = "tests.plugins.toy_stages,tests.plugins.worker_probe"


@pytest.fixture(scope="module")
def probe() -> Iterator[None]:
    """Register ``worker_probe`` for this module; unregistered at the end."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_STAGE_PLUGINS", PLUGINS)
    mp.setenv("WORKER_PROBE", "1")
    base.stage(**PROBE)(worker_probe)
    try:
        yield
    finally:
        base.STAGES.remove("worker_probe")
        mp.undo()


@pytest.fixture()
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probe: None) -> Path:
    """A runs root, and the probe's warm module in a directory on ``PYTHONPATH``."""
    root = tmp_path / "runs"
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(root))
    monkeypatch.setenv("TOY_SLEEP", "0")
    monkeypatch.setenv("HARNESS_STAGE_WORKERS", "on")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / f"{WARM}.py").write_text("VALUE = 1\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(lib), str(REPO)]))
    return root


def _run(*overrides: str):
    plan = build_plan(load_spec(TINY, [*PROBED, *overrides]), REPO)
    return execute(plan)


def _mode(name: str) -> str:
    """The override making the probe misbehave so."""
    return f"decoding.generation.top_k={next(k for k, m in MODES.items() if m == name)}"


def _probe(summary) -> dict:
    return json.loads((summary.dir_of("worker_probe") / PROBE_FILE).read_text())


def _manifest(summary, stage: str) -> dict:
    return json.loads((summary.dir_of(stage) / MANIFEST).read_text())


def test_stages_run_warm_in_worker_children_with_fresh_process_results(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_workers() as pool:
        assert pool is not None
        warm = _run()
        started = pool.started()
        probed = _probe(warm)
    # One worker served all three stages; the probe ran in a child of it, its declared warm
    # module already imported.
    assert len(started) == 1 and probed["ppid"] == started[0]
    assert probed["preloaded"] is True and probed["value"] == 1
    assert not alive(started[0]), "the worker outlived its pool"
    assert not [s for s in started if alive(s)]

    # The same stages as fresh processes (workers off), in another runs root: same keys,
    # outputs and results.
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(runs.parent / "fresh"))
    monkeypatch.setenv("HARNESS_STAGE_WORKERS", "off")
    with open_workers() as none:
        assert none is None
        fresh = _run()
    assert _probe(fresh)["preloaded"] is False and _probe(fresh)["ppid"] == os.getpid()
    for stage in ("toy_a", "toy_b", "worker_probe"):
        a, b = _manifest(warm, stage), _manifest(fresh, stage)
        assert a["key"] == b["key"]
        assert a["result"] == b["result"]
        outputs = {k: v for k, v in a["outputs"].items() if k != PROBE_FILE}
        assert outputs == {k: v for k, v in b["outputs"].items() if k != PROBE_FILE}


def test_log_is_scrubbed_and_failures_are_reported_as_from_a_fresh_process(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_API_KEY", "sk-worker-secret-123456")
    with open_workers() as pool:
        assert pool is not None
        ok = _run("decoding.generation.temperature=0.1")
        log = (ok.run_dir / "stages" / "worker_probe" / "stage.log").read_text()
        assert "probe running in" in log and "sk-worker-secret-123456" not in log

        with pytest.raises(StageError, match="worker_probe: the input is bad"):
            _run(_mode("user_error"))
        with pytest.raises(StageError, match=r"(?s)exit 1.*RuntimeError: worker_probe crashed"):
            _run(_mode("crash"))
        with pytest.raises(StageError, match="exit -9"):
            _run(_mode("kill"))
        # The worker itself is unharmed: it serves the next stage.
        again = _run("decoding.generation.temperature=0.5")
        assert len(pool.started()) == 1 and _probe(again)["ppid"] == pool.started()[0]
    for stage_root in (runs / "stages" / "worker_probe").iterdir():
        # Only the two runs that succeeded published a dir.
        assert stage_root.name.startswith(".") or (stage_root / MANIFEST).is_file()
    published = [
        d for d in (runs / "stages" / "worker_probe").iterdir() if (d / MANIFEST).is_file()
    ]
    assert len(published) == 2


def test_a_changed_module_retires_the_worker(runs: Path, tmp_path: Path) -> None:
    warm_file = tmp_path / "lib" / f"{WARM}.py"
    with open_workers() as pool:
        assert pool is not None
        first = _probe(_run("decoding.generation.temperature=0.1"))
        old = pool.started()
        warm_file.write_text("VALUE = 2\n")
        stamp = time.time() + 5  # a new mtime even on a coarse-grained file system
        os.utime(warm_file, (stamp, stamp))
        second = _probe(_run("decoding.generation.temperature=0.2"))
        assert gone(old, within_s=10), "the stale worker did not end"
        new = [p for p in pool.started() if p not in old]
    assert first["value"] == 1 and first["ppid"] == old[0]
    # A new worker imported the module as it is now.
    assert second["value"] == 2 and second["preloaded"] is True and second["ppid"] == new[0]


def test_the_worker_key_ignores_per_process_variables() -> None:
    env = {"PATH": "/bin", "HF_HUB_OFFLINE": "1"}
    same = {**env, "RAY_JOB_ID": "01000000", "WANDB_SERVICE": "2-1-tcp-localhost-1"}
    assert worker_key(sys.executable, env) == worker_key(sys.executable, same)
    assert worker_key(sys.executable, env) != worker_key(sys.executable, {**env, "X": "1"})
    assert worker_key(sys.executable, env) != worker_key("/other/python", env)


OWNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from harness.core.executor import execute
    from harness.core.plan import build_plan
    from harness.core.worker_pool import open_workers
    from harness.spec import load_spec
    with open_workers():
        plan = build_plan(load_spec(Path(sys.argv[1]), sys.argv[2:]), Path.cwd())
        execute(plan)
    """
)


def test_a_killed_owner_leaves_no_worker_and_no_stage(
    runs: Path,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(TINY), *PROBED, _mode("sleep")],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(runs.glob("runs/*/*/probe.started")):
            assert proc.poll() is None, "the run ended before the probe started"
            time.sleep(0.1)
        started = list(runs.glob("runs/*/*/probe.started"))
        assert started, "the probe never started"
        child = int(started[0].read_text())
        worker = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert worker != proc.pid, "the stage did not run in a worker child"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Worker and child live in sessions of their own: the kill did not reach them.
    assert gone([worker, child], within_s=10), "a worker or its stage outlived its owner"


def test_a_worker_that_cannot_start_leaves_the_stage_to_a_fresh_process(
    runs: Path, tmp_path: Path
) -> None:
    (tmp_path / "lib" / f"{WARM}.py").write_text(
        "import os, sys\n"
        "if sys.argv[0].endswith('stage_worker.py'):\n"
        "    os._exit(3)  # dies while the worker preloads it\n"
        "VALUE = 3\n"
    )
    with open_workers() as pool:
        assert pool is not None
        summary = _run()
        # Tried once (for the first stage), not again for each stage.
        assert len(pool.started()) == 1 and not alive(pool.started()[0])
    probed = _probe(summary)
    assert probed["ppid"] == os.getpid() and probed["value"] == 3
    log = (summary.run_dir / "stages" / "worker_probe" / "stage.log").read_text()
    assert log.startswith("no stage worker (the stage worker failed to start"), log[:300]
