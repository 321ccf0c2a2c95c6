"""Child process of the serving check: ``python -m harness.quant.vllm_check --jobs FILE ...``.

Runs one or more jobs in turn, each a model loaded in vLLM's offline ``LLM`` that decodes the
given token-id prompts greedily and then scores fixed token sequences teacher-forced (the
log-prob of every token after the first, from one prefill each). The sequences are those of
``--sequences`` or, without it, each prompt followed by the first job's greedy continuation,
so every job scores the very same tokens. Each job writes
``{"tokens", "texts", "sequences", "logprobs", "start_s", "generate_s", "awq_kernel", ...}``
to its ``out`` file as soon as it is done. Between jobs the engine and the distributed state are torn
down (as vLLM's own tests do), so several models cost one vLLM import.

The module installs :mod:`harness.quant.vllm_cpu_wna16` at import time, outside the
``__main__`` guard: vLLM's engine and worker processes re-import this module, and each needs
the op when the vLLM build lacks its AVX512-only AWQ kernel.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from harness.quant.check import OMP_BIND, WNA16
from harness.quant.check_child import parse_child_args, write_job_result
from harness.quant.vllm_cpu_wna16 import awq_kernel, install

install()


def _score(llm: Any, sequences: list[list[int]]) -> list[list[float]]:
    """Teacher-forced log-prob of every token after the first of each sequence."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
    outs = llm.generate([{"prompt_token_ids": s} for s in sequences], params, use_tqdm=False)
    scored = []
    for seq, o in zip(sequences, outs, strict=True):
        pl = o.prompt_logprobs or []
        scored.append([float(pl[i][tok].logprob) for i, tok in enumerate(seq) if i > 0])
    return scored


def _run_job(
    job: dict[str, Any],
    prompts: list[list[int]],
    sequences: list[list[int]] | None,
    a: argparse.Namespace,
) -> list[list[int]]:
    """Run one job; returns the sequences it scored (for the jobs after it)."""
    import vllm
    from vllm import LLM, SamplingParams

    tp = int(job["tp"])
    longest = max(len(x) for x in prompts) + a.max_tokens
    if sequences is not None:
        longest = max(longest, *(len(x) for x in sequences))
    # One process at TP 1 (no worker process to start); one worker per rank otherwise.
    executor = "mp" if tp > 1 else "uni"
    t0 = time.perf_counter()
    llm = LLM(
        model=job["model"],
        tokenizer=job["model"],
        quantization=None if job["quantization"] == "none" else job["quantization"],
        dtype=a.dtype,
        tensor_parallel_size=tp,
        max_model_len=-(-(longest + 1) // 64) * 64,
        max_num_seqs=max(1, min(len(prompts), 16)),
        seed=a.seed,
        enforce_eager=True,
        trust_remote_code=a.trust_remote_code,
        distributed_executor_backend=executor,
    )
    start_s = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=a.max_tokens, seed=a.seed)
    t1 = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=False)
    tokens = [list(o.outputs[0].token_ids) for o in outs]
    generate_s = time.perf_counter() - t1
    if sequences is None:
        sequences = [p + t for p, t in zip(prompts, tokens, strict=True)]
    t2 = time.perf_counter()
    logprobs = _score(llm, sequences)
    result = {
        "tokens": tokens,
        "texts": [o.outputs[0].text for o in outs],
        "sequences": sequences,
        "logprobs": logprobs,
        "start_s": start_s,
        "generate_s": generate_s,
        "score_s": time.perf_counter() - t2,
        "awq_kernel": awq_kernel(a.dtype) if job["quantization"] in WNA16 else None,
        "vllm": vllm.__version__,
        "tensor_parallel_size": tp,
        "quantization": job["quantization"],
        "dtype": a.dtype,
    }
    write_job_result(job, result)
    del llm, outs
    return sequences


def main(argv: list[str] | None = None) -> int:
    """Run the jobs (see the module docstring)."""
    a, jobs, prompts, sequences = parse_child_args("harness.quant.vllm_check", argv)

    import vllm.envs
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    inherited = os.environ.get(OMP_BIND)
    for i, job in enumerate(jobs):
        # Each job's own CPU core groups (TP 2: one per rank), else what the caller set.
        bind = job.get("omp_bind") or inherited
        if bind is None:
            os.environ.pop(OMP_BIND, None)
        else:
            os.environ[OMP_BIND] = bind
        vllm.envs.disable_envs_cache()
        sequences = _run_job(job, prompts, sequences, a)
        if i + 1 < len(jobs):
            cleanup_dist_env_and_memory()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
