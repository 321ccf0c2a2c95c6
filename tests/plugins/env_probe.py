"""A light plugin stage that runs in the ``serve`` environment role (loaded via
HARNESS_STAGE_PLUGINS): it reports the interpreter it ran with, for the tests of the
current-interpreter mode."""

from __future__ import annotations

import sys

from harness.core.stage import SpecSlice, StageContext, StageResult, read, stage


class PlatformSlice(SpecSlice):
    platform: str = read("run.platform")


@stage(name="env_probe", envs=("serve",))
def env_probe(ctx: StageContext, spec: PlatformSlice) -> StageResult:
    """Report this interpreter and the run's platform."""
    return StageResult(
        metrics={"ran": 1.0},
        summary={"python": sys.executable, "platform": ctx.platform},
    )
