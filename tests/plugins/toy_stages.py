"""Two light plugin stages for executor tests (loaded via HARNESS_STAGE_PLUGINS).

``toy_a`` reads ``model.tiny.seed`` and writes a file in two halves with a pause between them
(``TOY_SLEEP`` seconds), so a test can SIGKILL it half-way. ``toy_b`` reads the generation
decoding settings and consumes ``toy_a``'s output. Each declares its result model.
"""

from __future__ import annotations

import json
import os
import time

from harness.core.stage import SpecSlice, StageContext, StageMetrics, StageResult, read, stage
from harness.spec.schema import DecodingParams


class SeedSlice(SpecSlice):
    seed: int = read("model.tiny.seed")


class GenerationSlice(SpecSlice):
    generation: DecodingParams = read("decoding.generation")


class ToyAMetrics(StageMetrics):
    seed: float


class ToyAResult(StageResult):
    metrics: ToyAMetrics


class ToyBMetrics(StageMetrics):
    score: float


class ToyBResult(StageResult):
    metrics: ToyBMetrics


@stage(name="toy_a")
def toy_a(ctx: StageContext, spec: SeedSlice) -> ToyAResult:
    seed = spec.seed
    out = ctx.out / "numbers.txt"
    with out.open("w") as f:
        f.write(f"seed={seed}\n")
        f.flush()
        (ctx.run_dir / "toy_a.started").write_text(str(os.getpid()))
        time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
        f.write("done\n")
    return ToyAResult(metrics=ToyAMetrics(seed=float(seed)), tables={"rows": "rows.jsonl"})


@stage(name="toy_b", inputs={"numbers": ("toy_a",)})
def toy_b(ctx: StageContext, spec: GenerationSlice) -> ToyBResult:
    text = (ctx.inputs["numbers"] / "numbers.txt").read_text()
    if "done" not in text:
        raise RuntimeError("toy_a output is incomplete")
    dec = spec.generation
    rows = [{"i": i, "temperature": dec.temperature} for i in range(3)]
    (ctx.out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = ToyBMetrics(score=0.5 + dec.temperature / 10)
    return ToyBResult(metrics=metrics, tables={"rows": "rows.jsonl"})
