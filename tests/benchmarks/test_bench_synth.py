"""Benchmark: generation throughput against a local OpenAI-compatible server that adds
200 ms to every request, at concurrency 1 and 16, in one run.

Each setting sends distinct requests through the real generator (``openai`` client,
semaphore, disk cache in a fresh directory); the server runs in its own process. Asserts that concurrency 16
gives at least 8x the requests/s of concurrency 1, and that the server saw many, but never
more than 16, requests in flight. Writes ``bench-results/synth.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.data.openai_gen import Generator, RequestCache
from harness.spec.schema import OpenAIGenerator
from tests.support.paths import REPO

RESULTS = REPO / "bench-results" / "synth.json"
DELAY_S = 0.2
# Enough requests that the run's fixed set-up (client, TLS context) is amortised: 48 take
# about 10 s one at a time, 192 are 12 rounds of 16.
REQUESTS = {1: 48, 16: 192}


def _run(base_url: str, concurrency: int, tag: str, n: int) -> dict[str, float]:
    cfg = OpenAIGenerator(base_url=base_url, model="fake-model", concurrency=concurrency)
    requests = [[{"role": "user", "content": f"{tag} request {i}"}] for i in range(n)]
    with tempfile.TemporaryDirectory() as d:
        gen = Generator(cfg, RequestCache(Path(d)), seed=0)
        t0 = time.perf_counter()
        outcomes = gen.run(requests, json.loads)
        wall = time.perf_counter() - t0
    assert all(o.parsed is not None for o in outcomes)
    assert gen.usage.requests_sent == n
    return {"requests": n, "wall_s": wall, "requests_per_s": n / wall}


def _stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture()
def server() -> Iterator[str]:
    """The fake server in its own process, so it does not share the client's GIL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--delay-s", str(DELAY_S)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.bench
def test_concurrency_16_is_at_least_8x_concurrency_1(server: str) -> None:
    _run(server, 4, "warm-up", 8)  # first imports stay out of the timing
    serial = _run(server, 1, "serial", REQUESTS[1])
    parallel = _run(server, 16, "parallel", REQUESTS[16])
    in_flight = _stats(server)["max_in_flight"]
    ratio = parallel["requests_per_s"] / serial["requests_per_s"]
    result = {
        "benchmark": "synth_generation_throughput",
        "server_delay_s": DELAY_S,
        "concurrency_1": serial,
        "concurrency_16": parallel,
        "max_in_flight": in_flight,
        "throughput_ratio_16_vs_1": ratio,
        "required_ratio": 8.0,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    assert 8 < in_flight <= 16, "the semaphore must bound requests in flight at 16"
    assert ratio >= 8.0, f"concurrency 16 gave only {ratio:.1f}x the throughput of 1"
