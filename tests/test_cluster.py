"""A real Ray cluster the harness did not start, reached only through ``cluster.address``.

The cluster is started here with the ``ray`` CLI on 127.0.0.1: a head node and a worker node,
one CPU each, each ``ray start --block`` in a session of its own, with its own temp dir and a
small object store. Its nodes get this process's environment without the harness's variables
and without secrets, so what the workers see of them is what the harness forwards. The runs
root is a temp dir every node sees (one machine), as a shared filesystem is on a real cluster.

Through ``cluster.address``: sweep trials spread over both nodes and share the stage cache;
two inference replicas serve rows from both nodes; the trials of one model run on the node
where its one engine runs, which ends with the sweep, also a killed one; a node killed
mid-sweep fails only the trial it ran, the sweep finishes the others, and running the sweep
again retries that trial.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from harness.core import stage as base
from harness.core.executor import execute
from harness.core.plan import MANIFEST, build_plan
from harness.secrets import _SECRET_NAME, SECRET_ENV
from harness.spec import load_spec
from harness.sweeps.cli import load_sweep
from harness.sweeps.executors import SweepRun, run_sweep
from harness.sweeps.trial import read_ledger
from tests.support.paths import REPO
from tests.support.served_sweep import (
    cmdline,
    engine_hosts,
    gone,
    infer_summaries,
    start_sweep,
    wait_for_engines,
    write_served_sweep,
)
from tests.support.vllm_server import free_port

pytestmark = pytest.mark.slow

TINY = REPO / "experiments" / "tiny_cpu.yaml"
RAY = Path(sys.executable).with_name("ray")
TEMPERATURE = "decoding.generation.temperature"
PLUGINS = "tests.plugins.toy_stages,tests.plugins.cluster_probe"
PROBE_FILE = "probe.json"  # what cluster_probe writes (its module registers on import)
OBJECT_STORE_BYTES = 100 * 2**20
START_TIMEOUT_S = 120
# Secret-named variables with the prefixes the harness forwards: none may reach a node.
SECRETS = {
    "HF_TOKEN": "hf_cluster_test_secret_value",
    "VLLM_API_KEY": "vllm-cluster-test-secret-value",
    "HARNESS_PROBE_API_KEY": "harness-cluster-test-secret-value",
}


def _session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if os.getsid(int(p.name)) != sid:
                continue
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            out.append(int(p.name))
    return out


def _node_env() -> dict[str, str]:
    """What the nodes start with: this environment without the harness's own variables (the
    driver forwards those) and without secrets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HARNESS_") and k not in SECRET_ENV and not _SECRET_NAME.search(k)
    }
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray turns token authentication on for a head when a token file exists (a local
    # `ray.init()` writes one) but not for the nodes joining it: this cluster runs without.
    env["RAY_AUTH_MODE"] = "disabled"
    return env


@dataclass
class Node:
    """One ``ray start --block`` and everything it started (one session)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        """Every live process of the node: raylet, agents, workers and their children."""
        return _session_pids(self.proc.pid)

    @property
    def alive(self) -> bool:
        """True while ``ray start`` runs."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL every process of the node at once, as when its machine dies."""
        for _ in range(20):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        self.proc.wait(timeout=30)


@dataclass
class Cluster:
    """A head node and worker nodes on 127.0.0.1 (one CPU each)."""

    root: Path
    address: str = ""
    head: Node | None = None
    workers: list[Node] = field(default_factory=list)

    def start_node(self, name: str, *args: str) -> Node:
        """``ray start --block`` in a session of its own; returns once the node is up."""
        log = self.root / f"{name}.log"
        cmd = [
            str(RAY),
            "start",
            *args,
            "--node-ip-address=127.0.0.1",  # Ray registers the host's own address for it
            "--num-cpus=1",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--temp-dir={self.root / name}",
            "--disable-usage-stats",
            "--block",
        ]
        with log.open("wb") as f:
            proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                env=_node_env(),
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        node = Node(name, proc, log)
        deadline = time.time() + START_TIMEOUT_S
        while b"Ray runtime started" not in log.read_bytes():
            if not node.alive or time.time() > deadline:
                node.kill()
                pytest.fail(f"Ray node {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return node

    def start(self) -> None:
        """Start the head node and one worker node."""
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.head = self.start_node(
            "head",
            "--head",
            f"--port={port}",
            f"--ray-client-server-port={free_port()}",
            "--include-dashboard=false",
        )
        self.ensure_worker()

    def ensure_worker(self) -> Node:
        """The live worker node (a new one joins when the last one was killed)."""
        live = [w for w in self.workers if w.alive]
        if live:
            return live[0]
        worker = self.start_node(f"worker{len(self.workers)}", f"--address={self.address}")
        self.workers.append(worker)
        return worker

    def node_of(self, pid: int) -> str | None:
        """The name of the node whose session holds ``pid``."""
        for node in (self.head, *self.workers):
            if node is not None and pid in node.pids():
                return node.name
        return None

    def stop(self) -> None:
        """Kill every node (workers first) and remove the temp dirs."""
        for node in (*self.workers, self.head):
            if node is not None:
                node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and a worker node; every process of both is killed at the end, pass or fail."""
    # Short: Ray's socket paths under the temp dir must fit the 107-byte Unix limit.
    c = Cluster(Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp")))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def plugins() -> Iterator[None]:
    """Register ``cluster_probe`` here (the trials' nodes get it through the forwarded
    ``HARNESS_STAGE_PLUGINS``); unregistered at the end."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_STAGE_PLUGINS", PLUGINS)
    base.stage_defs()
    try:
        yield
    finally:
        base.STAGES.remove("cluster_probe")
        mp.undo()


@pytest.fixture()
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's runs root (every node sees it), and secrets in the driver's environment."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()  # a Ray this process is still connected to would take the trials
    root = tmp_path / "runs"
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(root))
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")  # a setting the nodes lack
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    return root


def write_sweep(tmp_path: Path, name: str, address: str, body: dict[str, Any]) -> Path:
    """A sweep over tiny_cpu.yaml with the toy stages and the probe, on the cluster."""
    overrides = [
        "stages=[toy_a,toy_b,cluster_probe]",
        "tracking.mode=disabled",
        f"cluster.address={address}",
    ]
    cfg = {
        "name": name,
        "spec": str(TINY),
        "method": "grid",
        "metric": {"name": "score", "goal": "maximize"},
        "overrides": overrides,
        **body,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)), encoding="utf-8")
    return path


def stage_dirs(runs: Path, stage: str) -> list[Path]:
    """Finished dirs (with a manifest) of a stage."""
    return sorted(p.parent for p in (runs / "stages" / stage).glob(f"*/{MANIFEST}"))


def probe_of(runs: Path, key: str) -> dict[str, Any]:
    """What ``cluster_probe`` recorded in its stage dir."""
    return json.loads((runs / "stages" / "cluster_probe" / key / PROBE_FILE).read_text())


def test_sweep_trials_spread_over_both_nodes_and_share_the_stage_cache(
    cluster: Cluster, plugins: None, runs: Path, tmp_path: Path
) -> None:
    worker = cluster.ensure_worker()
    temps = [0.0, 0.3, 0.6, 0.9]
    body = {"parameters": {TEMPERATURE: {"values": temps}}}
    sweep = load_sweep(write_sweep(tmp_path, "spread", cluster.address, body))
    assert sweep.base.spec.cluster.address == cluster.address
    run = run_sweep(sweep, executor="ray", concurrency=2, project_root=REPO)

    assert run.executor == "ray"
    assert all(r.ok and not r.skipped for r in run.records), [r.error for r in run.records]
    assert [r.metric for r in run.records] == pytest.approx([0.5 + t / 10 for t in temps])
    # One CPU per node and one per trial: the two trials running at once are on two nodes.
    nodes = {r.node for r in run.records}
    assert len(nodes) == 2 and None not in nodes, nodes
    host = socket.gethostname()
    assert all((r.host or "").startswith(f"{host}:") for r in run.records)
    # Ray's node of each trial is the node its stage processes ran on (their raylet).
    names: dict[str | None, set[str | None]] = {}
    for r in run.records:
        probe = probe_of(runs, r.stage_keys["cluster_probe"])
        names.setdefault(r.node, set()).add(cluster.node_of(int(probe["raylet_pid"])))
    assert {n for ns in names.values() for n in ns} == {"head", worker.name}
    assert all(len(ns) == 1 for ns in names.values())
    # The stage cache is shared: toy_a ran once, in one trial, whatever node the others ran on.
    (a_dir,) = stage_dirs(runs, "toy_a")
    assert {r.stage_keys["toy_a"] for r in run.records} == {a_dir.name}
    assert sum("toy_a" in r.ran for r in run.records) == 1
    assert all({"toy_b", "cluster_probe"} <= set(r.ran) for r in run.records)
    assert len(stage_dirs(runs, "toy_b")) == len(temps)
    rows = [json.loads(x) for x in (run.dir / "results.jsonl").read_text().splitlines()]
    assert {row["node"] for row in rows} == nodes
    ledger = read_ledger(run.dir)
    assert {t: r.node for t, r in ledger.items()} == {r.trial: r.node for r in run.records}

    # Forwarded to the workers: the harness's settings and the model libraries', no secret.
    env = set(probe_of(runs, run.records[0].stage_keys["cluster_probe"])["env"])
    assert {"HARNESS_RUNS_ROOT", "HARNESS_STAGE_PLUGINS", "TRANSFORMERS_VERBOSITY"} <= env
    assert not env & set(SECRETS), env & set(SECRETS)
    for secret in SECRETS.values():
        assert secret not in (run.dir / "results.jsonl").read_text()


def test_two_inference_replicas_serve_rows_from_both_nodes(cluster: Cluster, runs: Path) -> None:
    cluster.ensure_worker()
    rows = 6  # the first six eval rows: one task type, three requests per replica
    spec = load_spec(
        TINY,
        [
            "stages=[model,infer]",
            "tracking.mode=disabled",
            # A tokenizer trained on one small file: the model stage takes a second.
            "model.tiny.vocab_size=512",
            f"model.tiny.corpus=[{REPO / 'tests' / 'data' / 'infer' / 'corpus.txt'}]",
            "infer.engine=transformers",
            "infer.replicas=2",
            f"infer.limit={rows}",
            "infer.dtype=float32",
            "infer.tensor_parallel_size=1",
            "infer.distributed_executor_backend=null",
            "decoding.named_entity_recognition.max_tokens=4",
            f"cluster.address={cluster.address}",
        ],
    )
    plan = build_plan(spec, REPO)
    summary = execute(plan)

    infer = summary.dir_of("infer")
    preds = (infer / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == rows
    result = json.loads((infer / MANIFEST).read_text())["result"]
    placement = result["summary"]["replicas"]
    assert len(placement) == 2
    assert len({p["node"] for p in placement}) == 2, placement
    assert [p["requests"] for p in placement] == [rows // 2, rows // 2]
    assert all(p["host"] == socket.gethostname() for p in placement)


def _engine_watch(cluster: Cluster, runs: Path, stop: threading.Event, seen: dict) -> None:
    """Note every engine host (and the node of its owner) and every node an ``infer`` stage
    process runs on, until ``stop``."""
    while not stop.is_set():
        for host, owner in engine_hosts(runs).items():
            if host not in seen["hosts"]:
                seen["hosts"][host] = (owner, cluster.node_of(owner))
        for node in (cluster.head, *cluster.workers):
            for pid in node.pids() if node is not None and node.alive else ():
                cmd = cmdline(pid)
                if "harness.core.stage_main" in cmd and any("/infer/" in a for a in cmd):
                    seen["infer_nodes"].add(node.name)
        time.sleep(0.1)


def test_trials_of_one_model_run_where_its_engine_runs(
    cluster: Cluster, runs: Path, tmp_path: Path
) -> None:
    cluster.ensure_worker()
    path = write_served_sweep(tmp_path, "placed", [2, 4, 6], f"cluster.address={cluster.address}")
    seen: dict[str, Any] = {"hosts": {}, "infer_nodes": set()}
    stop = threading.Event()
    watch = threading.Thread(target=_engine_watch, args=(cluster, runs, stop, seen))
    watch.start()
    try:
        # Two at a time: unplaced, they would spread over both nodes (one CPU each).
        run = run_sweep(load_sweep(path), executor="ray", concurrency=2, project_root=REPO)
    finally:
        stop.set()
        watch.join()
    assert all(r.ok for r in run.records), [r.error for r in run.records]
    assert all((r.metric or 0) > 0 for r in run.records), [r.metric for r in run.records]
    # Every trial ran on one node, the node of the one engine, whose owner (the node's
    # keeper actor) runs there too; the engine served every trial.
    assert len({r.node for r in run.records}) == 1 and None not in {r.node for r in run.records}
    assert run.engines_started == 1
    ((host, (owner, owner_node)),) = seen["hosts"].items()
    assert seen["infer_nodes"] == {owner_node}, (seen, owner_node)
    shared = [s["shared_engine"] for s in infer_summaries(runs, run.records)]
    assert {s["pid"] for s in shared} == {host}
    assert sum(s["started_here"] for s in shared) == 1
    # The engine and its keeper end with the sweep.
    assert gone([host, owner]), "the engine outlived its sweep"


def test_a_killed_cluster_sweep_leaves_no_engine(
    cluster: Cluster, runs: Path, tmp_path: Path
) -> None:
    cluster.ensure_worker()
    path = write_served_sweep(
        tmp_path, "killed", [2, 4, 6, 8], f"cluster.address={cluster.address}"
    )
    driver = start_sweep(path)
    try:
        hosts = wait_for_engines(driver, runs, within_s=240)
        owners = [o for o in hosts.values() if o]
        assert owners and all(cluster.node_of(o) for o in owners), "the keepers are Ray workers"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    # Ray ends the dead driver's actors: the keeper, then the engine watching it.
    assert gone([*hosts, *owners]), f"engines {hosts} outlived their killed sweep"
    assert not engine_hosts(runs)


def _lost_trial_watch(cluster: Cluster, worker: Node, found: dict[str, Any]) -> None:
    """Kill ``worker`` as soon as a trial's ``cluster_probe`` runs on it; note which run."""
    deadline = time.time() + 180
    while time.time() < deadline and worker.alive:
        for pid in worker.pids():
            cmd = cmdline(pid)
            if "harness.core.stage_main" in cmd and any("/cluster_probe/" in a for a in cmd):
                found["run_dir"] = Path(cmd[cmd.index("harness.core.stage_main") + 1]).parents[2]
                worker.kill()
                return
        time.sleep(0.05)


def test_a_node_dying_mid_trial_fails_that_trial_and_the_sweep_goes_on(
    cluster: Cluster, plugins: None, runs: Path, tmp_path: Path
) -> None:
    worker = cluster.ensure_worker()
    temps = [0.0, 0.3, 0.6, 0.9]
    # top_k: the probe sleeps 2 s, time to kill the node under a running trial.
    params = {TEMPERATURE: {"values": temps}, "decoding.generation.top_k": {"value": 2}}
    path = write_sweep(tmp_path, "nodeloss", cluster.address, {"parameters": params})
    found: dict[str, Any] = {}
    watch = threading.Thread(target=_lost_trial_watch, args=(cluster, worker, found))
    watch.start()
    try:
        run: SweepRun = run_sweep(
            load_sweep(path), executor="ray", concurrency=2, project_root=REPO
        )
    finally:
        watch.join()
    assert not worker.alive and not worker.pids(), "the worker node was killed"
    assert "run_dir" in found, "no trial ran on the worker node"
    # The trial's spec name ends with its id's first 8 characters.
    killed = found["run_dir"].parent.name.rsplit("-", 1)[1]

    (lost,) = [r for r in run.records if not r.ok]
    assert lost.trial.startswith(killed)
    assert "trial lost: the Ray" in (lost.error or "") and "retries it" in (lost.error or "")
    ok = [r for r in run.records if r.ok]
    assert len(ok) == len(temps) - 1, [r.error for r in run.records]
    assert [r.metric for r in ok] == pytest.approx([0.5 + r.params[TEMPERATURE] / 10 for r in ok])
    # Every finished trial ran on the head (the worker died under the first trial it ran);
    # Ray's error names the dead node.
    assert len({r.node for r in ok}) == 1
    assert all(
        cluster.node_of(int(probe_of(runs, r.stage_keys["cluster_probe"])["raylet_pid"])) == "head"
        for r in ok
    )
    if lost.node is not None:
        assert lost.node not in {r.node for r in ok}
    ledger = read_ledger(run.dir)
    assert ledger[lost.trial].status == "failed" and ledger[lost.trial].error == lost.error
    rows = [json.loads(x) for x in (run.dir / "results.jsonl").read_text().splitlines()]
    assert sorted(row["status"] for row in rows) == ["failed", "ok", "ok", "ok"]
    assert run.best is not None and run.best.params[TEMPERATURE] == max(
        r.params[TEMPERATURE] for r in ok
    )

    # Running the sweep again (the head alone now) retries only the lost trial.
    again = run_sweep(load_sweep(path), executor="ray", concurrency=2, project_root=REPO)
    assert all(r.ok for r in again.records), [r.error for r in again.records]
    assert [r.trial for r in again.records if not r.skipped] == [lost.trial]
    assert {r.node for r in again.records} == {r.node for r in ok}
