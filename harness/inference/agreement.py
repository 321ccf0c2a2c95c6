"""How closely two models (or two runs of one) agree on the same prompts.

The measure that decides is teacher-forced: both score the *same* token sequences, and
:func:`logprob_gap` compares the log-probability each assigns to every token. Greedy tokens
are not a safe measure: where a model's top two candidates are nearly tied (on a randomly
initialised model they nearly always are: median top-1/top-2 margin 0.07 nats), the rounding
differences of another tensor-parallel size, kernel or batch shape flip the argmax, and from
there the two continuations have nothing in common. The token log-prob difference does not
depend on margins: it is 0 for identical arithmetic, of the order of the rounding error for
a correct model computed differently (bf16: about 1e-3 nats), and grows with the size of a
real error (a wrong quantisation group size: about 3e-2). It costs one prefill per sequence
and one number per position at any vocabulary size, where a KL divergence needs the whole
next-token distribution (152k floats per position on Qwen2).

:func:`greedy_agreement` is still reported, never asserted on random models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

NOISE_BF16 = 0.01
"""Largest mean absolute token log-prob difference (nats) that counts as the rounding noise
of one bf16 model computed two ways (another TP size, AWQ kernel or batch shape). Measured on
the tiny AWQ models of the tensor-parallel tests (860 positions, an Intel host with AVX512
and AMX): a correctly padded model at TP 2 vs TP 1 differs by 0.0014 (vLLM's native and the
harness's torch ``cpu_gemm_wna16``) to 0.0028 (vLLM's int4 x int8 AMX kernel, which also
rounds activations to int8), two kernels on one model by 0.0002-0.003; an unaligned model,
served with the wrong group size at TP 2, by 0.034 on every kernel. The bound sits near the
geometric middle, a factor 3.5 from both."""

NOISE_FP32 = 1e-4
"""The same bound for float32 arithmetic: vLLM TP 1 vs TP 2, vLLM vs transformers and the
OpenAI server vs offline vLLM differ by at most 2e-7 on average (1e-6 at most) on the tiny
model; a wrong model by orders of magnitude more."""


def greedy_agreement(reference: list[list[int]], other: list[list[int]]) -> dict[str, float]:
    """Greedy agreement of two decodings of the same prompts.

    Returns:
        ``sequence``: fraction of prompts decoded identically; ``prefix``: tokens before the
        first difference over all tokens (the longer of each pair counts).

    Raises:
        ValueError: The lists differ in length or are empty.
    """
    if len(reference) != len(other) or not reference:
        raise ValueError("agreement needs two equally long, non-empty lists of decodings")
    same = 0
    prefix = 0
    total = 0
    for a, b in zip(reference, other, strict=True):
        same += a == b
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        prefix += n
        total += max(len(a), len(b))
    return {"sequence": same / len(reference), "prefix": prefix / total if total else 1.0}


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def logprob_gap(reference: list[list[float]], other: list[list[float]]) -> dict[str, float]:
    """Teacher-forced log-prob distance of two models on the same token sequences.

    Args:
        reference: Per sequence, the log-prob of each scored token under one model.
        other: The same positions under the other model.

    Returns:
        ``mean_abs`` (over all positions: the measure the checks compare with a bound),
        ``p95_abs`` and ``max_abs`` over positions, ``seq_median`` and ``seq_max`` of the
        per-sequence means, and ``positions``.

    Raises:
        ValueError: The two do not score the same number of positions per sequence, a value
            is not finite, or there is nothing to compare.
    """
    if len(reference) != len(other):
        raise ValueError(f"logprob_gap: {len(reference)} vs {len(other)} sequences")
    diffs: list[float] = []
    seq_means: list[float] = []
    for i, (a, b) in enumerate(zip(reference, other, strict=True)):
        if len(a) != len(b):
            raise ValueError(f"logprob_gap: sequence {i} has {len(a)} vs {len(b)} positions")
        d = [abs(x - y) for x, y in zip(a, b, strict=True)]
        if not all(math.isfinite(x) for x in d):
            raise ValueError(f"logprob_gap: sequence {i} has a non-finite log-prob")
        if d:
            diffs += d
            seq_means.append(sum(d) / len(d))
    if not diffs:
        raise ValueError("logprob_gap: no positions to compare")
    diffs.sort()
    seq_means.sort()
    return {
        "mean_abs": sum(diffs) / len(diffs),
        "p95_abs": _quantile(diffs, 0.95),
        "max_abs": diffs[-1],
        "seq_median": _quantile(seq_means, 0.5),
        "seq_max": seq_means[-1],
        "positions": float(len(diffs)),
    }
