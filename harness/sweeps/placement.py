"""Where a sweep's shared engines run on a Ray cluster (``cluster.address``).

On one machine a sweep's trials share engines through one local pool
(:mod:`harness.inference.engine_pool`). An engine host, its abstract socket and its pool
directory belong to one machine, so on a cluster trials can share an engine only on the node
where it runs. The driver therefore places trials by the engine they need:

* A trial's *engine key* is read from its plan before it is submitted: the first serving
  stage (``infer``, ``mmlu_infer``) whose result is not published yet and whose engine is
  shareable, keyed by its model stage's key and every ``infer`` field that fixes an engine.
  A trial whose serving stages are all cached has none and goes wherever Ray puts it.
* The first trial of a key picks a node for it (among the live nodes that can run a trial,
  with GPUs those with ``tensor_parallel_size`` of them; the node with the fewest engine
  keys so far) and starts that node's *keeper* there: a Ray actor, using no CPU, holding the
  node's pool directory. Every trial of that key is scheduled onto that node (soft node
  affinity: it waits for room there, and runs elsewhere only when the node is gone, after
  which the key is placed anew), with the keeper's pool in its environment, so its
  ``infer`` stage takes the node's running engine or starts it there.
* The engine hosts watch their keeper's process. The driver ends the keepers and their
  engines when the sweep's trials are done; a driver that dies takes its actors, and so the
  engines, with it (Ray ends the actors of a dead driver).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import preserved_env
from harness.core.plan import Plan
from harness.inference.engine_host import OWNER_ENV
from harness.inference.engine_pool import POOL_ENV, REQUEST_ONLY_FIELDS, EnginePool
from harness.sweeps.trial import TrialJob, TrialRecord, run_trial

KEEPER_START_S = 300.0


@dataclass(frozen=True)
class EngineNeed:
    """The engine a trial's serving stage needs.

    Attributes:
        key: Equal for stages that can share one engine (model stage key and engine fields).
        gpus: GPUs the engine takes on a node with GPUs (its tensor parallel size).
    """

    key: str
    gpus: int


def engine_need(plan: Plan) -> EngineNeed | None:
    """The engine of the first serving stage of a plan that is not published yet and whose
    engine a pool can share (a local engine, one replica); None when there is none."""
    for st in plan.stages:
        if not st.definition.serves or plan.is_cached(st):
            continue
        infer = st.slice.get("infer")
        model = st.upstream_keys.get("model")
        if not isinstance(infer, dict) or model is None:
            continue
        if infer.get("engine") == "openai" or infer.get("replicas", 1) != 1:
            continue
        material = {
            "model": model,
            "infer": {k: v for k, v in infer.items() if k not in REQUEST_ONLY_FIELDS},
            "trust_remote_code": st.slice.get("model.trust_remote_code"),
        }
        text = json.dumps(material, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()[:20]
        return EngineNeed(digest, int(infer.get("tensor_parallel_size") or 1))
    return None


class EngineKeeper:
    """The Ray actor holding one node's engine pool: the pool's owner process."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="shopbench-engines-"))
        self.pool = EnginePool(self.root)

    def where(self) -> dict[str, Any]:
        """The pool a trial on this node joins: its directory, owner pid and Ray node."""
        import ray

        node = ray.get_runtime_context().get_node_id()
        return {"root": str(self.root), "owner": os.getpid(), "node": node}

    def started(self) -> list[int]:
        """The pids of the engine hosts started in this node's pool so far."""
        return self.pool.started()

    def close(self) -> list[int]:
        """End the node's engine hosts and remove the pool; the pids that were running."""
        ended = self.pool.close()
        shutil.rmtree(self.root, ignore_errors=True)
        return ended


def run_placed_trial(job: TrialJob, params: dict[str, Any], pool: dict[str, Any] | None) -> Any:
    """:func:`~harness.sweeps.trial.run_trial` in a Ray worker, its stages joining the pool
    of the node it was placed on (when it runs there: a trial Ray moved off a dead node
    starts its own engine)."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    if pool is None or here != pool["node"]:
        return run_trial(job, params)
    with preserved_env(POOL_ENV, OWNER_ENV):
        os.environ[POOL_ENV], os.environ[OWNER_ENV] = pool["root"], str(pool["owner"])
        record: TrialRecord = run_trial(job, params)
    return record


class EnginePlacement:
    """The driver's side: which node serves each engine key, and each node's keeper."""

    def __init__(self, cpus_per_trial: float) -> None:
        """Args:
        cpus_per_trial: CPUs a trial task asks for (a node with fewer cannot run one).
        """
        self.cpus_per_trial = cpus_per_trial
        self.nodes: dict[str, str] = {}  # engine key -> Ray node id
        self.keepers: dict[str, tuple[Any, dict[str, Any]]] = {}  # node id -> actor, where
        self.started: list[int] = []

    def _live_nodes(self) -> dict[str, dict[str, float]]:
        import ray

        return {
            n["NodeID"]: n["Resources"]
            for n in ray.nodes()
            if n.get("Alive") and n["Resources"].get("CPU", 0.0) >= self.cpus_per_trial
        }

    def _choose(self, live: dict[str, dict[str, float]], gpus: int) -> str:
        candidates = list(live)
        if any(res.get("GPU", 0.0) > 0 for res in live.values()):
            fits = [n for n in candidates if live[n].get("GPU", 0.0) >= gpus]
            candidates = fits or candidates
        load = {n: sum(v == n for v in self.nodes.values()) for n in candidates}
        return min(candidates, key=lambda n: (load[n], candidates.index(n)))

    def _keeper(self, node: str) -> dict[str, Any]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if node not in self.keepers:
            actor = (
                ray.remote(num_cpus=0, max_restarts=0)(EngineKeeper)
                .options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                .remote()
            )
            where = ray.get(actor.where.remote(), timeout=KEEPER_START_S)
            self.keepers[node] = (actor, where)
        return self.keepers[node][1]

    def place(self, plan: Plan) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Where a trial runs: Ray task options and the pool it joins (none for a trial
        that needs no shared engine, or when no node can hold one: Ray places it then)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        need = engine_need(plan)
        if need is None:
            return {}, None
        live = self._live_nodes()
        if not live:
            return {}, None
        node = self.nodes.get(need.key)
        if node not in live:
            node = self.nodes[need.key] = self._choose(live, need.gpus)
        try:
            where = self._keeper(node)
        except Exception:  # the node went away while its keeper started: Ray places it
            self.nodes.pop(need.key, None)
            return {}, None
        strategy = NodeAffinitySchedulingStrategy(node, soft=True)
        return {"scheduling_strategy": strategy}, where

    def close(self) -> list[int]:
        """End every keeper and its engines; the pids of every engine host the sweep's
        trials started (also in :attr:`started`)."""
        import ray

        for actor, _ in self.keepers.values():
            with suppress(Exception):  # a keeper on a dead node is gone already
                self.started.extend(ray.get(actor.started.remote(), timeout=60))
                ray.get(actor.close.remote(), timeout=120)
            with suppress(Exception):
                ray.kill(actor)
        self.keepers.clear()
        return self.started


__all__ = ["EngineKeeper", "EngineNeed", "EnginePlacement", "engine_need", "run_placed_trial"]
