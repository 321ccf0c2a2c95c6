"""A plugin stage for the Ray cluster tests (loaded via HARNESS_STAGE_PLUGINS).

``cluster_probe`` takes ``toy_b``'s output, records which process ran it and the names (never
the values) of the environment variables it saw, then sleeps ``decoding.generation.top_k``
seconds when that is positive (a window to kill the node it runs on). Its score is
``0.5 + temperature / 10``, like ``toy_b``'s.
"""

from __future__ import annotations

import json
import os
import socket
import time

from harness.core.stage import SpecSlice, StageContext, StageResult, read, stage
from harness.spec.schema import DecodingParams

PROBE_FILE = "probe.json"


class GenerationSlice(SpecSlice):
    generation: DecodingParams = read("decoding.generation")


@stage(name="cluster_probe", inputs={"rows": ("toy_b",)})
def cluster_probe(ctx: StageContext, spec: GenerationSlice) -> StageResult:
    """Record the process and its environment's variable names; sleep ``top_k`` seconds."""
    dec = spec.generation
    seen = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "raylet_pid": os.environ.get("RAY_RAYLET_PID"),
        "env": sorted(os.environ),
    }
    (ctx.out / PROBE_FILE).write_text(json.dumps(seen), encoding="utf-8")
    time.sleep(max(0, dec.top_k))
    return StageResult(metrics={"score": 0.5 + dec.temperature / 10})
