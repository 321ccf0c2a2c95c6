"""Child process of the serving check: ``python -m harness.quant.vllm_check --model DIR ...``.

Loads the model in vLLM's offline ``LLM``, decodes the given token-id prompts greedily and
writes ``{"tokens", "texts", "start_s", "generate_s", "gemm", "vllm"}`` to ``--out``.

The module installs :mod:`harness.quant.vllm_cpu_wna16` at import time, outside the
``__main__`` guard: vLLM's engine and worker processes re-import this module, and each needs
the op when the vLLM build lacks its AVX512-only AWQ kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from harness.quant.vllm_cpu_wna16 import install

GEMM = install()


def main(argv: list[str] | None = None) -> int:
    """Run the check (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m harness.quant.vllm_check")
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", required=True, help="JSON list of token id lists")
    p.add_argument("--out", required=True)
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--quantization", default="awq", choices=["awq", "none"])
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-remote-code", action="store_true")
    a = p.parse_args(argv)

    import vllm
    from vllm import LLM, SamplingParams

    prompts = json.loads(Path(a.prompts).read_text(encoding="utf-8"))
    longest = max(len(x) for x in prompts) + a.max_tokens
    # One process at TP 1 (no engine-core or worker process to start); one worker per rank
    # otherwise. Each vLLM process start costs an import of vLLM.
    executor = "mp" if a.tp > 1 else "uni"
    t0 = time.perf_counter()
    llm = LLM(
        model=a.model,
        tokenizer=a.model,
        quantization=None if a.quantization == "none" else a.quantization,
        dtype=a.dtype,
        tensor_parallel_size=a.tp,
        max_model_len=-(-longest // 64) * 64,
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
    result = {
        "tokens": [list(o.outputs[0].token_ids) for o in outs],
        "texts": [o.outputs[0].text for o in outs],
        "start_s": start_s,
        "generate_s": time.perf_counter() - t1,
        "gemm": GEMM,
        "vllm": vllm.__version__,
        "tensor_parallel_size": a.tp,
        "quantization": a.quantization,
        "dtype": a.dtype,
    }
    out = Path(a.out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
