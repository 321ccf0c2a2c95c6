"""A plugin stage for the stage worker tests (``tests/test_stage_workers.py``).

``worker_probe`` takes ``toy_b``'s output and records the process that ran it (pid, parent
pid) and whether its ``warm`` module (``worker_probe_warm``, found on ``PYTHONPATH``) was
already imported when it started, and that module's ``VALUE``. ``decoding.generation.top_k``
picks a misbehaviour (:data:`MODES`): a harness error, an exception, SIGKILL of its own
process, or writing ``probe.started`` in the run dir and sleeping. It registers only when
``WORKER_PROBE=1`` at import, so importing this module elsewhere leaves the stage registry
alone.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time

from harness.core.stage import SpecSlice, StageContext, StageResult, read, stage
from harness.errors import HarnessError
from harness.spec.schema import DecodingParams

WARM = "worker_probe_warm"
PROBE_FILE = "probe.json"
MODES = {1: "user_error", 2: "crash", 3: "kill", 4: "sleep"}
"""``decoding.generation.top_k`` -> misbehaviour (any other value: none)."""


class GenerationSlice(SpecSlice):
    generation: DecodingParams = read("decoding.generation")


def worker_probe(ctx: StageContext, spec: GenerationSlice) -> StageResult:
    """Record the process, the warm module's state; misbehave as ``top_k`` says."""
    preloaded = WARM in sys.modules
    value = importlib.import_module(WARM).VALUE
    mode = MODES.get(spec.generation.top_k, "ok")
    print(f"probe running in {os.getpid()}, secret {os.environ.get('PROBE_API_KEY')}")
    if mode == "user_error":
        raise HarnessError("worker_probe: the input is bad")
    if mode == "crash":
        raise RuntimeError("worker_probe crashed")
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "sleep":
        (ctx.run_dir / "probe.started").write_text(str(os.getpid()))
        time.sleep(120)
    seen = {"pid": os.getpid(), "ppid": os.getppid(), "preloaded": preloaded, "value": value}
    (ctx.out / PROBE_FILE).write_text(json.dumps(seen), encoding="utf-8")
    return StageResult(metrics={"score": 0.5 + spec.generation.temperature / 10})


PROBE = {"name": "worker_probe", "inputs": {"rows": ("toy_b",)}, "warm": (WARM,)}

if os.environ.get("WORKER_PROBE") == "1":
    stage(**PROBE)(worker_probe)
