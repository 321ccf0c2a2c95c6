"""AWQ quantisation: pre-checks, calibration text, the AutoAWQ backend, post-conditions and
the vLLM serving check used by the ``quantize`` stage.

Modules import torch, transformers or vLLM only inside functions, except
:mod:`harness.quant.vllm_check` (a child-process entry point) and
:mod:`harness.quant.vllm_cpu_wna16`.
"""

from __future__ import annotations

from harness.errors import HarnessError


class QuantizeError(HarnessError):
    """A configuration that cannot be quantised, or a quantised output that fails its checks."""
