"""A vLLM OpenAI-compatible server on 127.0.0.1 for tests (one per test session)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVED_NAME = "tiny"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, n: int = 3000) -> str:
    """The last ``n`` characters of a log file ("" when it does not exist)."""
    return path.read_text(encoding="utf-8", errors="replace")[-n:] if path.is_file() else ""


@contextmanager
def serve(model: Path, log_path: Path, timeout_s: float = 1500) -> Iterator[str]:
    """Serve ``model`` (float32, greedy-reproducible, seed 0) as ``tiny``; yield the base URL
    (``http://127.0.0.1:PORT/v1``) once ``/health`` answers; stop the server on exit.

    Raises:
        RuntimeError: The server exited or did not become healthy within ``timeout_s``.
    """
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        # Synthesis prompts with few-shot examples run past 1024 tokens of the tiny tokenizer.
        "--max-model-len",
        "2048",
        # No graph compilation: start-up in seconds, not minutes, on a busy CPU.
        "--enforce-eager",
        # vllm-cpu crashes ("CPU Generator does not use offset") when chunked prefill splits
        # a seeded, sampled request's prompt, as two concurrent 1400-token synthesis
        # prompts can be within the server's 2048-token step budget.
        "--no-enable-chunked-prefill",
        "--seed",
        "0",
    ]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"vLLM server exited:\n{tail(log_path)}")
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"vLLM server not healthy in {timeout_s} s:\n{tail(log_path)}"
                    )
                time.sleep(1)
            yield f"{url}/v1"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
