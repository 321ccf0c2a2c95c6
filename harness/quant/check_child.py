"""The command line and result files shared by the serving check's child processes
(:mod:`harness.quant.vllm_check` and :mod:`harness.quant.hf_check`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.atomic import write_json


def parse_child_args(
    prog: str, argv: list[str] | None
) -> tuple[argparse.Namespace, list[dict[str, Any]], list[list[int]], list[list[int]] | None]:
    """Parse a check child's command line and read the files it names.

    Returns:
        The parsed arguments, the jobs, the prompts and the sequences to score (None: the
        prompts followed by the first job's greedy continuations).
    """
    p = argparse.ArgumentParser(prog=f"python -m {prog}")
    p.add_argument(
        "--jobs",
        required=True,
        help='JSON list of {"model", "out", "quantization" (awq|none), "tp", "omp_bind"}',
    )
    p.add_argument("--prompts", required=True, help="JSON list of token id lists")
    p.add_argument(
        "--sequences",
        help="JSON list of token id lists to score (default: the prompts plus the first "
        "job's greedy continuations)",
    )
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-remote-code", action="store_true")
    a = p.parse_args(argv)
    jobs = json.loads(Path(a.jobs).read_text(encoding="utf-8"))
    prompts = json.loads(Path(a.prompts).read_text(encoding="utf-8"))
    sequences = json.loads(Path(a.sequences).read_text(encoding="utf-8")) if a.sequences else None
    return a, jobs, prompts, sequences


def write_job_result(job: dict[str, Any], result: dict[str, Any]) -> None:
    """Publish one job's result at its ``out`` path (atomically: the parent reads a finished
    job's file even when a later job of the same process fails)."""
    write_json(Path(job["out"]), result, indent=None, sort_keys=False, durable=False)
