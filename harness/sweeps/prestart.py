"""Starting a sweep's engine ahead of its first trial.

An engine start is the longest wait of a sweep over prompts or decoding (the tiny model's
takes half a minute, a 72B checkpoint's minutes); the first trial would otherwise begin it
only once its own planning, tracking and stage process are under way. When the sweep opens
its engine pool, :func:`prestart_engines` plans the first trial and, for each serving stage
of it that will run (its key is not published) and whose model is published already, starts
the engine that stage declares (:attr:`~harness.core.stage.StageDef.engine`) in the pool
without waiting. The trial then finds the engine starting or up
(:meth:`~harness.inference.engine_pool.EnginePool.acquire` waits for the rest of its start).

Nothing is started when the stage would not share a pool engine anyway (several replicas, an
engine that loads nothing, a Ray-distributed engine), or runs in another interpreter than
this one (pinned environments: the stage's engine would differ by its interpreter).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness.core.plan import Plan
from harness.inference.engine_pool import EnginePool, shareable


def prestart_engines(plan: Plan, pool: EnginePool) -> list[str]:
    """Start, without waiting, the engines ``plan``'s serving stages will ask ``pool`` for.

    Args:
        plan: The first trial's plan.
        pool: The sweep's engine pool.

    Returns:
        The stages whose engine was started.
    """
    from harness.core import envs

    started = []
    for st in plan.stages:
        declared = st.definition.engine
        if declared is None or plan.is_cached(st):
            continue
        inputs = {role: plan.stage_dir(plan.by_name(s)) for role, s in st.inputs.items()}
        if not all(plan.is_cached(plan.by_name(s)) for s in st.inputs.values()):
            continue
        python = envs.python_for(st.definition.env, plan.platform, plan.env_mode)
        if Path(python).resolve() != Path(sys.executable).resolve():
            continue
        spec: Any = declared(st.definition.slice_model.model_validate(st.slice), inputs, Path())
        if not shareable(spec) or spec.infer.distributed_executor_backend == "ray":
            continue
        if pool.prestart(spec):
            started.append(st.name)
    return started
