"""Data-parallel replicas on a Ray cluster (``infer.replicas > 1``).

Each replica is a Ray actor holding its own engine (a vLLM engine may itself be tensor
parallel). Every task-type group is split into contiguous shards, one per replica, which
run concurrently; results are merged back into data order. Per-request seeds make each
sample independent of the shard it lands in.

Ray is started locally unless ``cluster.address`` names a cluster; a local Ray gets no
dashboard and an object store capped at ``cluster.object_store_memory_gib``. On GPUs an
actor reserves ``tensor_parallel_size`` GPUs (with the ``mp`` executor; with ``ray`` vLLM
places its workers itself); on CPU one CPU. :attr:`ReplicaPool.placement` says where each
replica ran (Ray node, host, process) and how many requests it served.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from harness.inference.engines.base import EngineSpec, GenRequest, GenResult, make_engine
from harness.spec.schema import ClusterConfig

GIB = 1 << 30


class _Replica:
    """The actor body: one engine, generating the shards it is sent."""

    def __init__(self, spec: EngineSpec) -> None:
        start = time.perf_counter()
        self.engine = make_engine(spec)
        self.start_s = time.perf_counter() - start

    def ready(self) -> float:
        return self.start_s

    def where(self) -> dict[str, Any]:
        """The Ray node, host name and process id of this replica."""
        import os
        import socket

        import ray

        node = ray.get_runtime_context().get_node_id()
        return {"node": node, "host": socket.gethostname(), "pid": os.getpid()}

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        return self.engine.generate(requests)

    def close(self) -> None:
        self.engine.close()


def shard(requests: Sequence[GenRequest], n: int) -> list[list[GenRequest]]:
    """Split requests into ``n`` contiguous, near-equal shards (some possibly empty)."""
    size, extra = divmod(len(requests), n)
    out, pos = [], 0
    for i in range(n):
        k = size + (1 if i < extra else 0)
        out.append(list(requests[pos : pos + k]))
        pos += k
    return out


def init_ray(cluster: ClusterConfig) -> bool:
    """Connect to (or start) Ray.

    Args:
        cluster: The ``cluster`` section.

    Returns:
        True when this call started Ray (the caller shuts it down).
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if cluster.address:
        kwargs["address"] = cluster.address
    else:
        kwargs["object_store_memory"] = int(cluster.object_store_memory_gib * GIB)
        if cluster.num_cpus:
            kwargs["num_cpus"] = cluster.num_cpus
    ray.init(**kwargs)
    return True


class ReplicaPool:
    """``replicas`` engines as Ray actors."""

    def __init__(self, spec: EngineSpec, replicas: int, cluster: ClusterConfig) -> None:
        """Start Ray (if needed) and one actor per replica; waits until every engine is up.

        Args:
            spec: The engine spec each replica starts.
            replicas: Number of replicas.
            cluster: The ``cluster`` section.
        """
        import ray

        self._started_ray = init_ray(cluster)
        gpus = 0.0
        if spec.infer.engine != "openai" and _has_gpu():
            ray_executor = spec.infer.distributed_executor_backend == "ray"
            gpus = 0.0 if ray_executor else float(spec.infer.tensor_parallel_size)
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(_Replica)
        self.actors = [actor.remote(spec) for _ in range(replicas)]
        self.start_s = max(ray.get([a.ready.remote() for a in self.actors]))
        # Where each replica runs, and the requests it has served.
        self.placement: list[dict[str, Any]] = [
            {**w, "requests": 0} for w in ray.get([a.where.remote() for a in self.actors])
        ]

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Generate one task-type group across the replicas; results in request order."""
        import ray

        shards = shard(requests, len(self.actors))
        for where, part in zip(self.placement, shards, strict=True):
            where["requests"] += len(part)
        refs = [a.generate.remote(s) for a, s in zip(self.actors, shards, strict=True) if s]
        out: list[GenResult] = [r for part in ray.get(refs) for r in part]
        return out

    def close(self) -> None:
        """Stop the engines, the actors and (if this pool started it) Ray."""
        import ray

        try:
            ray.get([a.close.remote() for a in self.actors])
        finally:
            for a in self.actors:
                ray.kill(a)
            if self._started_ray:
                ray.shutdown()


def _has_gpu() -> bool:
    import shutil

    return shutil.which("nvidia-smi") is not None


def serve_requests(
    spec: EngineSpec, cluster: ClusterConfig, requests: Sequence[GenRequest]
) -> tuple[list[GenResult], Any, float, Any]:
    """Start the engine a spec asks for (Ray replicas when ``infer.replicas > 1``; the shared
    engine of an open :mod:`~harness.inference.engine_pool` when there is one), run every
    request through it, and release it (a shared engine keeps running for the next stage).

    vLLM's Ray executor joins the Ray started here (the spec's cluster, capped, no
    dashboard), which is shut down again afterwards.

    Args:
        spec: The engine spec.
        cluster: The ``cluster`` section.
        requests: All requests.

    Returns:
        Results in data order, the run's :class:`~harness.inference.runner.RunStats`, the
        engine start-up seconds, and the (closed) engine, for its facts (``weights``,
        ``placement``).
    """
    from harness.inference.runner import generate_all

    infer = spec.infer
    own_ray = (
        infer.replicas == 1
        and infer.engine == "vllm"
        and infer.distributed_executor_backend == "ray"
        and init_ray(cluster)
    )
    from harness.inference.engine_pool import current_pool, shareable

    pool = current_pool() if shareable(spec) and not own_ray else None
    try:
        t0 = time.perf_counter()
        engine: Any
        if pool is not None:
            engine, start_s = pool.acquire(spec)
        else:
            engine = (
                ReplicaPool(spec, infer.replicas, cluster)
                if infer.replicas > 1
                else make_engine(spec)
            )
            start_s = time.perf_counter() - t0
        try:
            results, stats = generate_all(requests, engine)
        finally:
            engine.close()
    finally:
        if own_ray:
            import ray

            ray.shutdown()
    return results, stats, start_s, engine
