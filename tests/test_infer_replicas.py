"""Data-parallel replicas on a local Ray cluster give the single engine's outputs, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.inference.engines.base import EngineSpec, GenRequest, make_engine
from harness.inference.prompts import load_prompt_set
from harness.inference.replicas import ReplicaPool, shard
from harness.inference.runner import PromptBuilder, build_requests, generate_all, to_rows
from harness.shopbench.data import load_shopbench
from harness.spec.schema import (
    ClusterConfig,
    DecodingConfig,
    DecodingParams,
    InferConfig,
    PromptsConfig,
)
from tests.support.infer import SUFFIX, SYSTEM
from tests.support.paths import EVAL_TEST_FORMAT, REPO


def _req(i: int) -> GenRequest:
    return GenRequest(i, "generation", "x", (1,), (), DecodingParams(), i)


def test_shards_are_contiguous_and_cover_every_request() -> None:
    reqs = [_req(i) for i in range(7)]
    parts = shard(reqs, 3)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert [r.index for p in parts for r in p] == list(range(7))
    assert [len(p) for p in shard(reqs[:1], 3)] == [1, 0, 0]


@pytest.mark.slow
def test_two_ray_replicas_match_one_engine(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    rows = to_rows(load_shopbench(EVAL_TEST_FORMAT))
    builder = PromptBuilder(
        PromptsConfig(system=SYSTEM, variant="taskwise", non_mc_suffix=SUFFIX),
        load_prompt_set("taskwise", REPO),
        AutoTokenizer.from_pretrained(tiny_model),
    )
    decoding = DecodingConfig.model_validate(
        {"generation": {"max_tokens": 8, "temperature": 0.8, "top_p": 0.9}}
    )
    requests, _ = build_requests(rows, builder, decoding, constrained=True, seed=3)
    # batch_size 1: every sample is computed alone, whatever shard it lands in; one thread,
    # as in each replica (a Ray actor with one CPU): the same arithmetic, so the same tokens.
    import torch

    infer = InferConfig(engine="transformers", dtype="float32", batch_size=1, replicas=2)
    spec = EngineSpec(infer, str(tiny_model))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single = make_engine(spec)
    try:
        want, _ = generate_all(requests, single)
    finally:
        single.close()
        torch.set_num_threads(threads)
    pool = ReplicaPool(spec, 2, ClusterConfig(num_cpus=2, object_store_memory_gib=0.25))
    try:
        got, stats = generate_all(requests, pool)
    finally:
        pool.close()
    assert [r.index for r in got] == list(range(len(rows)))
    assert [r.text for r in got] == [r.text for r in want]
    assert [r.token_ids for r in got] == [r.token_ids for r in want]
    assert stats.n == len(rows) and stats.output_tokens > 0
    import ray

    assert not ray.is_initialized()
