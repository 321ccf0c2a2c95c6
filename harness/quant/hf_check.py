"""Child process of the serving check without vLLM: ``python -m harness.quant.hf_check``.

The same command line, jobs and result files as :mod:`harness.quant.vllm_check`, run with
transformers instead (the quantize stage uses it when vLLM cannot be imported and
``infer.fallback_engine: transformers``). Each job's model is loaded by
:func:`harness.inference.awq_dense.load_causal_lm` (an AWQ checkpoint with its linears
dequantised at load), decodes the prompts greedily one by one (the end-of-sequence token
kept, as vLLM reports it), and scores the shared token sequences teacher-forced in one
forward pass each. Results carry ``"engine": "transformers"``, ``"vllm": None`` and
``"awq_kernel": "dequantized"`` for an AWQ or compressed-tensors model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from harness.quant.check_child import parse_child_args, write_job_result


def _eos_ids(model: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.eos_token_id
    return [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def _run_job(
    job: dict[str, Any],
    prompts: list[list[int]],
    sequences: list[list[int]] | None,
    a: argparse.Namespace,
) -> list[list[int]]:
    """Run one job; returns the sequences it scored (for the jobs after it)."""
    import torch
    from transformers import AutoTokenizer

    from harness.inference.awq_dense import load_causal_lm
    from harness.inference.validate import awq_group_size, read_model_config, weight_format

    model_dir = Path(job["model"])
    config = read_model_config(model_dir)
    group = awq_group_size(config) if job["quantization"] == "awq" else None
    if job["quantization"] == "awq" and group is None:
        raise SystemExit(f"{model_dir}: quantization awq requested, but it is not an AWQ model")
    ct = job["quantization"] == "compressed-tensors"
    if ct and weight_format(config) != "compressed-tensors":
        raise SystemExit(f"{model_dir}: quantization compressed-tensors requested, it is not")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    model = load_causal_lm(
        model_dir,
        dtype=dtype,
        device=device,
        trust_remote_code=a.trust_remote_code,
        awq_group_size=group,
        compressed_tensors=ct,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=a.trust_remote_code)
    start_s = time.perf_counter() - t0
    eos = _eos_ids(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or [0])[0]
    t1 = time.perf_counter()
    tokens: list[list[int]] = []
    with torch.inference_mode():
        for ids in prompts:
            x = torch.tensor([ids], dtype=torch.long, device=device)
            out = model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=a.max_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=eos or None,
                pad_token_id=pad,
            )
            new = [int(t) for t in out[0, len(ids) :].tolist()]
            cut = next((i for i, t in enumerate(new) if t in eos), None)
            tokens.append(new if cut is None else new[: cut + 1])
    generate_s = time.perf_counter() - t1
    if sequences is None:
        sequences = [p + t for p, t in zip(prompts, tokens, strict=True)]
    t2 = time.perf_counter()
    logprobs: list[list[float]] = []
    with torch.inference_mode():
        for seq in sequences:
            x = torch.tensor([seq], dtype=torch.long, device=device)
            logits = model(input_ids=x).logits.float()
            logp = torch.log_softmax(logits[0, :-1], dim=-1)
            picked = logp.gather(-1, x[0, 1:].unsqueeze(-1)).squeeze(-1)
            logprobs.append([float(v) for v in picked.tolist()])
    result = {
        "tokens": tokens,
        "texts": [tokenizer.decode(t, skip_special_tokens=True) for t in tokens],
        "sequences": sequences,
        "logprobs": logprobs,
        "start_s": start_s,
        "generate_s": generate_s,
        "score_s": time.perf_counter() - t2,
        "awq_kernel": "dequantized" if group is not None or ct else None,
        "engine": "transformers",
        "vllm": None,
        "device": device,
        "tensor_parallel_size": 1,
        "quantization": job["quantization"],
        "dtype": a.dtype,
    }
    write_job_result(job, result)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return sequences


def main(argv: list[str] | None = None) -> int:
    """Run the jobs (see the module docstring)."""
    a, jobs, prompts, sequences = parse_child_args("harness.quant.hf_check", argv)
    for job in jobs:
        sequences = _run_job(job, prompts, sequences, a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
