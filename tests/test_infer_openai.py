"""The ``openai`` inference engine against a local fault-injecting server: the shared client's
request cache makes a run that failed part-way resume without re-sending what was answered."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.inference.engines.base import EngineSpec, GenRequest, make_engine
from harness.inference.errors import InferenceError
from harness.openai_client import RequestCache
from harness.spec.schema import DecodingParams, InferConfig
from tests.support.openai_server import FakeOpenAIServer, body_hash


def _requests(n: int) -> list[GenRequest]:
    params = DecodingParams(max_tokens=8, temperature=0.0)
    return [
        GenRequest(
            index=i,
            task_type="generation",
            text=f"question {i}",
            token_ids=None,
            messages=({"role": "user", "content": f"question number {i}"},),
            params=params,
            seed=i,
        )
        for i in range(n)
    ]


def _spec(base_url: str, cache: Path | None) -> EngineSpec:
    infer = InferConfig.model_validate(
        {
            "engine": "openai",
            "openai": {"base_url": base_url, "model": "m", "concurrency": 3, "max_retries": 2},
        }
    )
    return EngineSpec(
        infer=infer, model_dir=None, chat=True, request_cache=str(cache) if cache else None
    )


def test_failed_requests_fail_the_batch_after_the_answered_ones_are_cached(
    tmp_path: Path,
) -> None:
    bad: set[str] = set()  # bodies answered with an HTML page, always
    flaky: set[str] = set()  # bodies answered with a non-completion once, then properly

    def faults(h: str, seen: int) -> str | None:
        if h in bad:
            return "html"
        return "no_choices" if seen == 0 and h in flaky else None

    def responder(body: dict) -> str:
        return "answer to " + body["messages"][-1]["content"]

    with FakeOpenAIServer(responder, faults) as srv:
        engine = make_engine(_spec(srv.base_url, tmp_path / "cache"))
        reqs = _requests(6)
        bad.add(body_hash(engine.body(reqs[3])))
        flaky.add(body_hash(engine.body(reqs[1])))
        with pytest.raises(InferenceError, match=r"1 of 6 requests .* failed") as e:
            engine.generate(reqs)
        assert "row 3" in str(e.value) and "rerun sends only the failed ones" in str(e.value)
        assert len(RequestCache(tmp_path / "cache").stored_keys()) == 5
        assert srv.outcomes()["no_choices"] == 1  # retried, then answered

        bad.clear()  # the gateway recovers; the rerun sends only the failed request
        before = len(srv.state.log)
        results = engine.generate(reqs)
        assert len(srv.state.log) - before == 1, "answered requests were sent again"
    assert [r.index for r in results] == list(range(6))
    assert [r.text for r in results] == [f"answer to question number {i}" for i in range(6)]
    assert engine.stats["cache_hits"] == 5


def test_a_remote_endpoint_without_its_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(InferenceError, match="OPENAI_API_KEY is not set"):
        make_engine(_spec("https://api.openai.com/v1", None))
