"""Sweeps whose trials serve the tiny model, and the engine processes they start.

:data:`SERVED` turns tiny_cpu.yaml into its model and infer stages, fast: a tokenizer trained
on one small file (the model stage takes a second), the transformers engine (an engine
starts in seconds; sharing does not depend on the engine) and the first six eval rows (one
task type, named entity recognition).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from tests.support.paths import REPO

TINY = REPO / "experiments" / "tiny_cpu.yaml"
ENGINE_HOST = "harness.inference.engine_host"
STAGE_WORKER = "harness.core.stage_worker"
NER_TOKENS = "decoding.named_entity_recognition.max_tokens"
SERVED = (
    "stages=[model,infer]",
    "tracking.mode=disabled",
    "model.tiny.vocab_size=512",
    f"model.tiny.corpus=[{REPO / 'tests' / 'data' / 'infer' / 'corpus.txt'}]",
    "infer.engine=transformers",
    "infer.limit=6",
    "infer.dtype=float32",
    "infer.tensor_parallel_size=1",
    "infer.distributed_executor_backend=null",
)


def write_served_sweep(
    directory: Path, name: str, tokens: list[int], *overrides: str, metric: str = "output_tokens"
) -> Path:
    """A grid sweep of :data:`SERVED` over the NER answer length, with more overrides after
    :data:`SERVED` (``metric``: by default the infer stage's ``output_tokens``)."""
    cfg = {
        "name": name,
        "spec": str(TINY),
        "method": "grid",
        "metric": {"name": metric, "goal": "maximize"},
        "overrides": [*SERVED, *overrides],
        "parameters": {NER_TOKENS: {"values": tokens}},
    }
    path = directory / f"{name}.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)), encoding="utf-8")
    return path


def cmdline(pid: int) -> list[str]:
    """A process's arguments ([] when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def environ(pid: int) -> dict[str, str]:
    """A process's environment ({} when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (v.decode(errors="replace").split("=", 1) for v in raw.split(b"\0") if b"=" in v)
    return dict(pairs)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    """True while the process runs (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def module_processes(runs: Path, module: str) -> dict[int, dict[str, str]]:
    """Running ``python -m MODULE`` processes started under the runs root ``runs``: pid ->
    environment."""
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or module not in cmdline(int(p.name)):
            continue
        env = environ(int(p.name))
        if env.get("HARNESS_RUNS_ROOT") == str(runs) and alive(int(p.name)):
            found[int(p.name)] = env
    return found


def engine_hosts(runs: Path) -> dict[int, int]:
    """Running engine hosts started under the runs root ``runs``: host pid -> the pid of the
    pool's owner it watches."""
    return {
        pid: int(env.get("HARNESS_ENGINE_POOL_OWNER", "0") or 0)
        for pid, env in module_processes(runs, ENGINE_HOST).items()
    }


def stage_workers(runs: Path) -> list[int]:
    """Running stage workers started under the runs root ``runs``."""
    return sorted(module_processes(runs, STAGE_WORKER))


def start_sweep(path: Path, *args: str) -> subprocess.Popen[bytes]:
    """``harness sweep PATH --executor ray ARGS`` in a session of its own (to be killed as a
    group), from the repository root."""
    cmd = [sys.executable, "-m", "harness.cli", "sweep", str(path), "--executor", "ray", *args]
    return subprocess.Popen(
        cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_for_engines(proc: subprocess.Popen[bytes], runs: Path, within_s: float) -> dict[int, int]:
    """The engine hosts under ``runs`` once one is up (:func:`engine_hosts`); fails if the
    sweep ends first, and asserts that one started within ``within_s``."""
    deadline = time.time() + within_s
    while time.time() < deadline and not engine_hosts(runs):
        assert proc.poll() is None, "the sweep ended before its engine was seen"
        time.sleep(0.1)
    hosts = engine_hosts(runs)
    assert hosts, "no engine started"
    return hosts


def gone(pids: list[int], within_s: float = 60) -> bool:
    """Whether every process has ended within ``within_s``."""
    deadline = time.time() + within_s
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return not any(alive(p) for p in pids)


def infer_summaries(runs: Path, records: list[Any]) -> list[dict[str, Any]]:
    """The ``infer`` summary of each trial record (from its stage dir's manifest)."""
    out = []
    for r in records:
        manifest = runs / "stages" / "infer" / r.stage_keys["infer"] / "manifest.json"
        out.append(json.loads(manifest.read_text())["result"]["summary"])
    return out
