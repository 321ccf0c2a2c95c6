"""A plugin stage for the sweep tests (``tests/test_sweep.py``).

``sweep_probe`` reads the generation decoding settings, takes ``toy_b``'s output, sleeps
``SWEEP_PROBE_SLEEP`` seconds (a window to kill a sweep in) and fails for ``top_k == 13``
(a trial that breaks inside a stage). It registers only when ``SWEEP_PROBE=1``, so importing
this module elsewhere (test collection) leaves the stage registry alone.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from harness.core.stage import SpecSlice, StageContext, StageResult, read, stage
from harness.spec.schema import DecodingParams

UNLUCKY_TOP_K = 13
PROBE: dict[str, Any] = {
    "name": "sweep_probe",
    "inputs": {"rows": ("toy_b",)},
}


class GenerationSlice(SpecSlice):
    generation: DecodingParams = read("decoding.generation")


def sweep_probe(ctx: StageContext, spec: GenerationSlice) -> StageResult:
    """Score ``0.5 + temperature / 10``; fail for the unlucky ``top_k``."""
    dec = spec.generation
    time.sleep(float(os.environ.get("SWEEP_PROBE_SLEEP", "0")))
    if dec.top_k == UNLUCKY_TOP_K:
        raise RuntimeError(f"sweep_probe: top_k {UNLUCKY_TOP_K} is unlucky")
    seen = {"temperature": dec.temperature, "omp": os.environ.get("OMP_NUM_THREADS")}
    (ctx.out / "probe.json").write_text(json.dumps(seen))
    return StageResult(metrics={"score": 0.5 + dec.temperature / 10, "top_k": dec.top_k})


if os.environ.get("SWEEP_PROBE") == "1":
    stage(**PROBE)(sweep_probe)
