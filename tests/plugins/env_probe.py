"""A light plugin stage that runs in the ``serve`` environment role (loaded via
HARNESS_STAGE_PLUGINS): it reports the interpreter it ran with, for the tests of the
current-interpreter mode."""

from __future__ import annotations

import sys

from harness.stages.base import StageContext, StageResult, stage


@stage(name="env_probe", reads=("run.platform",), envs=("serve",))
def env_probe(ctx: StageContext) -> StageResult:
    """Report this interpreter and the run's platform."""
    return StageResult(
        metrics={"ran": 1.0},
        summary={"python": sys.executable, "platform": ctx.platform},
    )
