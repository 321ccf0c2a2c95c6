"""The OpenAI-compatible generator against a local fault-injecting server: retries, the
request cache, resumption after SIGKILL, and accounting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.data.catalogue import load_catalogue
from harness.data.clean import normalize_prompt
from harness.data.errors import GenerationError
from harness.data.openai_gen import Generator, RequestCache, default_cache_dir
from harness.data.sources import Sources, load_sources
from harness.data.synthesize import load_few_shot, plan_requests, synthesize
from harness.spec.schema import OpenAIGenerator, SynthesisConfig
from tests.support.openai_server import FakeOpenAIServer, body_hash
from tests.support.paths import REPO
from tests.support.synth_responder import TemplateResponder

DATA = REPO / "experiments" / "data"
CAT = load_catalogue(REPO / "experiments" / "prompts" / "synth")
_ALL = load_sources(DATA / "products.jsonl", DATA / "categories.csv", DATA / "reviews.jsonl")
# Reviews the stand-in model can always answer for (it needs annotated aspects).
SOURCES = Sources(_ALL.products, _ALL.categories, tuple(r for r in _ALL.reviews if r.aspects))
SHOTS = load_few_shot(DATA / "shopbench_examples.jsonl")
FAULTS = ("429", "500", "slow", "bad_json", None)


class RotatingFaults:
    """The i-th distinct request body gets fault i % 5 on its first sight (so every fault
    kind occurs); one in four bodies also fails with a 500 on its second sight."""

    def __init__(self) -> None:
        self.order: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, h: str, seen: int) -> str | None:
        with self.lock:
            i = self.order.setdefault(h, len(self.order))
        if seen == 0:
            return FAULTS[i % len(FAULTS)]
        if seen == 1 and i % 4 == 1:
            return "500"
        return None


def _cfg(base_url: str, **kw: object) -> SynthesisConfig:
    oa = {
        "base_url": base_url,
        "model": "fake-model",
        "concurrency": 4,
        "max_retries": 4,
        "content_retries": 2,
        "timeout_s": 1.0,
        **kw.pop("openai", {}),  # type: ignore[dict-item]
    }
    return SynthesisConfig.model_validate(
        {
            "generator": "openai",
            "tasks": ["task5", "task6", "task12"],
            "products_per_task": 16,
            "examples_per_product": 2,
            "openai": oa,
            **kw,
        }
    )


def test_faults_are_survived_with_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    with FakeOpenAIServer(TemplateResponder(SOURCES, CAT), RotatingFaults(), slow_s=1.6) as srv:
        cfg = _cfg(srv.base_url)
        res = synthesize(SOURCES, CAT, cfg, few_shot=SHOTS, cache_dir=tmp_path / "a")
        seen = srv.outcomes()
        answered_once = max(srv.state.answered.values())
        n_bodies = len(srv.state.seen)
        # Reference: the same generation on a fresh cache (faults are spent by now).
        ref = synthesize(SOURCES, CAT, cfg, few_shot=SHOTS, cache_dir=tmp_path / "b")

    assert {k: seen[k] > 0 for k in ("429", "500", "slow", "bad_json", "ok")} == dict.fromkeys(
        ("429", "500", "slow", "bad_json", "ok"), True
    )
    usage = res.stats["usage"]
    assert usage["failed_requests"] == 0 and usage["transport_retries"] >= 1
    assert usage["content_retries"] >= 1, "no malformed content was re-asked"
    # Nothing lost: every planned record got its examples; nothing else was rejected.
    planned = plan_requests(SOURCES, CAT, cfg, SHOTS)
    records = [(req.task.name, str(r["id"])) for req in planned for r in req.records]
    got = Counter((e["task_name"], e["meta"]["source_ids"][0]) for e in res.examples)
    assert set(got) == set(records) and len(records) == 48
    assert set(res.stats["rejected_per_reason"]) <= {"duplicate"}
    assert len(res.examples) + res.stats["rejected"] == 2 * len(records)
    # Nothing duplicated: one answer per request body, no repeated prompt.
    assert answered_once == 1 and usage["requests_sent"] == n_bodies
    assert len({normalize_prompt(e["input_field"]) for e in res.examples}) == len(res.examples)
    assert res.examples == ref.examples
    assert usage["prompt_tokens"] > 0 and usage["cost_usd"] > 0


def test_a_second_run_takes_every_answer_from_the_cache(tmp_path: Path) -> None:
    with FakeOpenAIServer(TemplateResponder(SOURCES, CAT)) as srv:
        cfg = _cfg(srv.base_url, products_per_task=8)
        first = synthesize(SOURCES, CAT, cfg, few_shot=SHOTS, cache_dir=tmp_path)
        sent = len(srv.state.log)
        second = synthesize(SOURCES, CAT, cfg, few_shot=SHOTS, cache_dir=tmp_path)
        assert len(srv.state.log) == sent, "a cached request was sent again"
    assert second.examples == first.examples
    u1, u2 = first.stats["usage"], second.stats["usage"]
    assert u2["requests_sent"] == 0 and u2["cache_hits"] == u1["requests_sent"] + u1["cache_hits"]
    assert u2["cost_usd"] == 0 and u2["cost_usd_with_cache"] == pytest.approx(u1["cost_usd"])
    assert len(RequestCache(tmp_path).stored_keys()) == u1["requests_sent"]
    for key in RequestCache(tmp_path).stored_keys():
        record = RequestCache(tmp_path).get(key)
        assert record is not None and "api_key" not in json.dumps(record).lower()


def test_exhausted_retries_are_reported_not_lost(tmp_path: Path) -> None:
    with FakeOpenAIServer(TemplateResponder(SOURCES, CAT), lambda h, seen: "500") as srv:
        cfg = _cfg(srv.base_url, tasks=["task5"], products_per_task=8, openai={"max_retries": 1})
        res = synthesize(SOURCES, CAT, cfg, few_shot=SHOTS, cache_dir=tmp_path)
        assert srv.outcomes() == {"500": 4}  # 2 requests x (1 + 1 retry)
    assert res.examples == [] and res.stats["rejected_per_reason"] == {"request_failed": 2}
    assert res.stats["usage"]["failed_requests"] == 2
    assert RequestCache(tmp_path).stored_keys() == set(), "a failed request must not be cached"
    assert {r["request"]["task"] for r in res.rejected} == {"task5"}


def test_content_that_never_parses_is_rejected_with_its_reason(tmp_path: Path) -> None:
    with FakeOpenAIServer(lambda body: "no JSON here") as srv:
        cfg = _cfg(srv.base_url, tasks=["task5"], products_per_task=4)
        res = synthesize(SOURCES, CAT, cfg, few_shot=SHOTS, cache_dir=tmp_path)
        assert srv.outcomes() == {"ok": 3}  # 1 request + 2 re-asks with other seeds
    assert res.stats["rejected_per_reason"] == {"malformed_content": 1}
    assert res.rejected[0]["attempts"] == 3 and res.rejected[0]["content"] == "no JSON here"
    assert res.metrics["rejected/malformed_content"] == 1.0


def test_missing_key_for_the_openai_api_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SYNTH_TEST_KEY", raising=False)
    cfg = OpenAIGenerator(api_key_env="SYNTH_TEST_KEY")
    gen = Generator(cfg, RequestCache(tmp_path), 0)
    with pytest.raises(GenerationError, match="SYNTH_TEST_KEY is not set"):
        gen.run([[{"role": "user", "content": "hi"}]], str)


def test_cache_dir_lives_under_the_runs_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HARNESS_SYNTH_CACHE", raising=False)
    monkeypatch.delenv("HARNESS_RUNS_ROOT", raising=False)
    out = tmp_path / "runs" / "stages" / "synthesize" / ".tmp-abc-1-x"
    assert default_cache_dir(out) == (tmp_path / "runs" / "cache" / "openai").resolve()
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(tmp_path / "r2"))
    assert default_cache_dir(out) == (tmp_path / "r2" / "cache" / "openai").resolve()


def _spec(path: Path, base_url: str) -> Path:
    spec = {
        "name": "synth_kill",
        "stages": ["synthesize"],
        "model": {"source": "tiny", "tiny": {}},
        "data": {
            "sources": {
                "products": str(DATA / "products.jsonl"),
                "categories": str(DATA / "categories.csv"),
                "reviews": str(DATA / "reviews.jsonl"),
                "examples": str(DATA / "shopbench_examples.jsonl"),
            },
            "synthesis": {
                "generator": "openai",
                "tasks": ["task4", "task5"],
                "products_per_task": 48,
                "examples_per_product": 2,
                "openai": {
                    "base_url": base_url,
                    "model": "fake-model",
                    "concurrency": 2,
                    "content_retries": 2,
                    "timeout_s": 10,
                },
            },
        },
        "tracking": {"mode": "disabled"},
    }
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def _cli(spec: Path, root: Path, **popen: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HARNESS_RUNS_ROOT": str(root)}
    env.pop("HARNESS_SYNTH_CACHE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(spec)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **popen,  # type: ignore[arg-type]
    )


def _examples(root: Path) -> bytes:
    (stage_dir,) = [
        d for d in (root / "stages" / "synthesize").iterdir() if not d.name.startswith(".")
    ]
    return (stage_dir / "examples.jsonl").read_bytes()


@pytest.mark.slow
def test_sigkill_mid_generation_then_rerun_resends_nothing_answered(tmp_path: Path) -> None:
    with FakeOpenAIServer(TemplateResponder(SOURCES, CAT), delay_s=0.15) as srv:
        spec = _spec(tmp_path / "spec.json", srv.base_url)
        root = tmp_path / "killed"
        cache = RequestCache(root / "cache" / "openai")
        proc = _cli(spec, root)
        deadline = time.time() + 120
        while time.time() < deadline and len(cache.stored_keys()) < 8:
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        answered = {body_hash(cache.get(k)["request"]) for k in cache.stored_keys()}  # type: ignore[index]
        mark = len(srv.state.log)

        rerun = _cli(spec, root)
        assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()  # type: ignore[union-attr]
        assert srv.requests_for(answered, since=mark) == [], "an answered request was re-sent"
        total_bodies = len(cache.stored_keys())
        assert 8 <= len(answered) < total_bodies, "the kill did not land mid-generation"
        (stage_dir,) = [
            d for d in (root / "stages" / "synthesize").iterdir() if not d.name.startswith(".")
        ]
        stats = json.loads((stage_dir / "stats.json").read_text(encoding="utf-8"))
        assert stats["usage"]["cache_hits"] == len(answered)
        assert stats["usage"]["requests_sent"] == total_bodies - len(answered)

        clean_root = tmp_path / "uninterrupted"
        once = _cli(spec, clean_root)
        assert once.wait(timeout=300) == 0, once.stderr.read().decode()  # type: ignore[union-attr]
    assert _examples(root) == _examples(clean_root)
    assert len(_examples(root).splitlines()) > 150


def test_html_and_non_completion_replies_are_retried_then_recorded_failed(
    tmp_path: Path,
) -> None:
    """A gateway answering 200 with an HTML page (or JSON that is no completion) is retried
    within the budget; a request that never gets a completion is recorded as failed while the
    replies that arrived beside it are kept and cached."""
    order: dict[str, int] = {}
    lock = threading.Lock()

    def faults(h: str, seen: int) -> str | None:
        with lock:
            i = order.setdefault(h, len(order))
        if i == 0:
            return "html"  # never a completion
        if seen == 0:
            return ("html", "no_choices", None)[i % 3]
        return None

    with FakeOpenAIServer(TemplateResponder(SOURCES, CAT), faults) as srv:
        cfg = _cfg(srv.base_url, tasks=["task5"], products_per_task=8, openai={"max_retries": 2})
        res = synthesize(SOURCES, CAT, cfg, few_shot=SHOTS, cache_dir=tmp_path)
        seen = srv.outcomes()
    assert seen["html"] >= 3 and seen["no_choices"] >= 1
    usage = res.stats["usage"]
    assert usage["failed_requests"] == 1 and usage["transport_retries"] >= 3
    assert res.stats["rejected_per_reason"].get("request_failed") == 1
    failed = [r for r in res.rejected if r["reason"] == "request_failed"]
    assert "malformed reply" in failed[0]["detail"]
    assert len(RequestCache(tmp_path).stored_keys()) == usage["requests_sent"] >= 1
    assert res.examples, "the answered requests' examples were lost"
