"""Stage contexts as the executor builds them, from real specs.

A test that runs one stage function directly takes its context from
:func:`stage_context`: the spec is loaded (with ``key=value`` overrides, the command line's
syntax) and planned, and the context carries the planned stage's slice and key, so the
stage sees exactly what ``harness run`` would give it. Settings a test needs are overrides
of a real spec (``quantize.q_group_size=64``), never a hand-written copy of a section. The
upstream stage dirs are the test's own (a tiny model, a fixture mix).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.core.contract import StageContext, StageResult
from harness.core.plan import build_plan
from harness.core.stage import stage_defs
from harness.spec import load_spec
from tests.support.paths import REPO


def stage_context(
    spec: str | Path,
    stage: str,
    *overrides: str,
    out: Path,
    inputs: Mapping[str, Path] | None = None,
    run_dir: Path | None = None,
    root: Path = REPO,
    pythons: Mapping[str, str] | None = None,
) -> StageContext:
    """The context of one stage of a real spec, writing into ``out``.

    Args:
        spec: The spec file (relative paths are taken from the repository).
        stage: The stage to run; it must be in the spec's ``stages`` (after the overrides).
        *overrides: ``key=value`` overrides of the spec.
        out: The directory the stage writes into (created).
        inputs: Role -> upstream stage dir; every required role of the stage must be there,
            and only roles the stage declares.
        run_dir: The run's directory (default: ``out``'s parent).
        root: The project root the spec's relative paths resolve against.
        pythons: Environment role -> interpreter, for roles that should not run with this
            interpreter (every role does by default, as with ``run.env_mode: current``).

    Returns:
        The context, with the planned stage's slice, key and the plan's platform.

    Raises:
        ValueError: The stage is not in the plan, or ``inputs`` lacks a required role or
            names one the stage does not declare.
    """
    path = Path(spec) if Path(spec).is_absolute() else REPO / spec
    plan = build_plan(load_spec(path, list(overrides)), root, strict=False)
    try:
        planned = plan.by_name(stage)
    except KeyError:
        names = [st.name for st in plan.stages]
        raise ValueError(
            f"stage {stage!r} is not in the plan of {path.name} {names}; "
            "add it with a `stages=[...]` override"
        ) from None
    given = dict(inputs or {})
    d = planned.definition
    declared = {**d.inputs, **d.optional_inputs}
    unknown = sorted(set(given) - set(declared))
    missing = sorted(set(d.inputs) - set(given))
    if unknown or missing:
        raise ValueError(
            f"stage {stage!r} takes inputs {sorted(declared)} (required {sorted(d.inputs)}): "
            f"unknown {unknown}, missing {missing}"
        )
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(
        stage=stage,
        key=planned.key,
        config=planned.slice,
        out=out,
        inputs=given,
        upstream={planned.inputs.get(role, declared[role][0]): p for role, p in given.items()},
        root=root,
        run_dir=run_dir or out.parent,
        pythons={**{role: sys.executable for role in planned.envs}, **(pythons or {})},
        platform=plan.platform,
    )


def run_stage(ctx: StageContext, **kwargs: Any) -> StageResult:
    """Run the context's stage function in this process, as the executor's stage process
    does (the slice validated as the stage's model); ``kwargs`` go to the function."""
    return stage_defs()[ctx.stage].call(ctx, **kwargs)
