"""Generation through any OpenAI-compatible chat-completions endpoint, with a crash-safe
on-disk cache of every request/response.

* Async with bounded concurrency (``asyncio.Semaphore``); the ``openai`` client's own
  retries and timeouts handle 429, 5xx, connection errors and timeouts; replies whose HTTP
  body is not valid JSON are retried here (the client does not), within the same budget.
* A reply whose *content* the caller cannot parse is re-asked up to ``content_retries``
  times; each re-ask is a different request (``seed`` = base seed + attempt).
* Every answered request is written to ``<cache>/<h[:2]>/<h>.json`` (temp file, fsync,
  ``os.replace``) as soon as it arrives, ``h`` being the sha256 of the endpoint and the exact
  request body. A later run — after a crash, a SIGKILL or a finished run — takes answers from
  the cache and never re-sends a request that already has one.
* Token and cost accounting: tokens of requests sent now and of replies taken from the cache.

The API key is read from the environment variable the config names and is never written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.errors import GenerationError
from harness.spec.schema import OpenAIGenerator

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
CACHE_VERSION = 1


def canonical(obj: Any) -> str:
    """Key-order-independent JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class RequestCache:
    """Request -> reply records on disk, one file per request, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(base_url: str, body: dict[str, Any]) -> str:
        """sha256 of the endpoint and the exact request body."""
        material = {"v": CACHE_VERSION, "base_url": base_url.rstrip("/"), "body": body}
        return hashlib.sha256(canonical(material).encode()).hexdigest()

    def path(self, key: str) -> Path:
        """Where a record lives."""
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached record, or None (a missing or unreadable file is a miss)."""
        p = self.path(key)
        try:
            record = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return record if isinstance(record, dict) and "reply" in record else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store a record: temp file in the same dir, fsync, atomic rename."""
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, ensure_ascii=False, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def stored_keys(self) -> set[str]:
        """Keys of every stored record."""
        return {p.stem for p in self.directory.glob("??/*.json")}


@dataclass
class Usage:
    """Token counts and request counts of one generation run."""

    requests_sent: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    transport_retries: int = 0
    content_retries: int = 0
    failed_requests: int = 0

    def add_reply(self, usage: dict[str, int], cached: bool) -> None:
        """Count one reply's tokens."""
        p, c = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if cached:
            self.cache_hits += 1
            self.cached_prompt_tokens += p
            self.cached_completion_tokens += c
        else:
            self.requests_sent += 1
            self.prompt_tokens += p
            self.completion_tokens += c

    def cost(self, cfg: OpenAIGenerator, include_cached: bool = False) -> float:
        """USD at the configured prices (this run's requests, or all replies used)."""
        p, c = self.prompt_tokens, self.completion_tokens
        if include_cached:
            p += self.cached_prompt_tokens
            c += self.cached_completion_tokens
        return p / 1000 * cfg.price_per_1k_input + c / 1000 * cfg.price_per_1k_output

    def metrics(self, cfg: OpenAIGenerator) -> dict[str, float]:
        """Flat metrics for the stage result."""
        return {
            "requests_sent": float(self.requests_sent),
            "cache_hits": float(self.cache_hits),
            "prompt_tokens": float(self.prompt_tokens),
            "completion_tokens": float(self.completion_tokens),
            "cached_prompt_tokens": float(self.cached_prompt_tokens),
            "cached_completion_tokens": float(self.cached_completion_tokens),
            "transport_retries": float(self.transport_retries),
            "content_retries": float(self.content_retries),
            "failed_requests": float(self.failed_requests),
            "cost_usd": self.cost(cfg),
            "cost_usd_with_cache": self.cost(cfg, include_cached=True),
        }


@dataclass
class Outcome:
    """The result of one logical request (all its attempts).

    Attributes:
        parsed: The caller's parse of the accepted reply (None when none was accepted).
        content: The last reply text received (None when no reply arrived).
        error: Why nothing was accepted: ``request_failed: ...`` or ``malformed_content: ...``.
        attempts: Content attempts made (1 + re-asks).
        keys: Cache keys of the attempts.
    """

    parsed: Any = None
    content: str | None = None
    error: str | None = None
    attempts: int = 0
    keys: list[str] = field(default_factory=list)


Parser = Callable[[str], Any]


def api_key(cfg: OpenAIGenerator) -> str:
    """The key from the environment variable ``cfg.api_key_env``.

    A local endpoint (``base_url`` set) without a key gets a placeholder, since
    OpenAI-compatible servers such as vLLM accept any.

    Raises:
        GenerationError: No key for the OpenAI API.
    """
    key = os.environ.get(cfg.api_key_env, "")
    if key:
        return key
    if cfg.base_url:
        return "no-key"
    raise GenerationError(
        f"`data.synthesis.openai.api_key_env`: environment variable {cfg.api_key_env} is not "
        "set (the OpenAI API needs a key)"
    )


class Generator:
    """Sends chat requests with bounded concurrency, through the cache."""

    def __init__(self, cfg: OpenAIGenerator, cache: RequestCache, seed: int = 0) -> None:
        self.cfg, self.cache, self.seed = cfg, cache, seed
        self.base_url = (cfg.base_url or OPENAI_DEFAULT_BASE_URL).rstrip("/")
        self.usage = Usage()
        self._done = 0
        self._total = 0
        self._t0 = time.monotonic()

    def body(self, messages: list[dict[str, str]], attempt: int) -> dict[str, Any]:
        """The exact request body of an attempt."""
        return {
            "model": self.cfg.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
            "seed": self.seed + attempt,
        }

    async def _send(self, client: Any, body: dict[str, Any]) -> dict[str, Any]:
        """One request, with retries for transport-level malformed replies."""
        import openai

        for retry in range(self.cfg.max_retries + 1):
            try:
                resp = await client.chat.completions.create(**body)
                choice = resp.choices[0]
                usage = resp.usage.model_dump() if resp.usage else {}
                return {
                    "content": choice.message.content or "",
                    "finish_reason": choice.finish_reason,
                    "usage": {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens")},
                }
            except (json.JSONDecodeError, openai.APIResponseValidationError, IndexError) as e:
                if retry == self.cfg.max_retries:
                    raise _Failed(f"malformed response body: {e}") from None
                self.usage.transport_retries += 1
                await asyncio.sleep(min(0.5 * 2**retry, 8.0))
        raise AssertionError("unreachable")

    async def one(
        self, client: Any, sem: asyncio.Semaphore, messages: list[dict[str, str]], parse: Parser
    ) -> Outcome:
        """All attempts of one logical request."""
        import openai

        out = Outcome()
        for attempt in range(self.cfg.content_retries + 1):
            body = self.body(messages, attempt)
            key = self.cache.key(self.base_url, body)
            out.keys.append(key)
            out.attempts = attempt + 1
            record = self.cache.get(key)
            if record is not None:
                reply = record["reply"]
                self.usage.add_reply(reply.get("usage") or {}, cached=True)
            else:
                async with sem:
                    try:
                        reply = await self._send(client, body)
                    except openai.AuthenticationError as e:
                        raise GenerationError(f"the endpoint refused the API key: {e}") from None
                    except (_Failed, openai.APIError) as e:
                        self.usage.failed_requests += 1
                        out.error = f"request_failed: {type(e).__name__}: {str(e)[:300]}"
                        return out
                # Off the event loop: the fsync must not stall the other requests.
                record = {"request": body, "base_url": self.base_url, "reply": reply}
                await asyncio.to_thread(self.cache.put, key, record)
                self.usage.add_reply(reply.get("usage") or {}, cached=False)
            out.content = reply["content"]
            try:
                out.parsed = parse(reply["content"])
                out.error = None
                return out
            except ValueError as e:
                out.error = f"malformed_content: {e}"
                if attempt < self.cfg.content_retries:
                    self.usage.content_retries += 1
        return out

    async def _tracked(
        self, client: Any, sem: asyncio.Semaphore, messages: list[dict[str, str]], parse: Parser
    ) -> Outcome:
        out = await self.one(client, sem, messages, parse)
        self._done += 1
        if self._done % 25 == 0 or self._done == self._total:
            rate = self._done / max(time.monotonic() - self._t0, 1e-9)
            print(
                f"generated {self._done}/{self._total} requests ({rate:.1f}/s, "
                f"{self.usage.requests_sent} sent, {self.usage.cache_hits} from cache)",
                file=sys.stderr,
                flush=True,
            )
        return out

    async def run_async(self, requests: list[list[dict[str, str]]], parse: Parser) -> list[Outcome]:
        """Run every request; outcomes in request order."""
        import openai

        client = openai.AsyncOpenAI(
            api_key=api_key(self.cfg),
            base_url=self.cfg.base_url,
            max_retries=self.cfg.max_retries,
            timeout=self.cfg.timeout_s,
        )
        sem = asyncio.Semaphore(self.cfg.concurrency)
        self._total, self._done, self._t0 = len(requests), 0, time.monotonic()
        try:
            return list(
                await asyncio.gather(*(self._tracked(client, sem, m, parse) for m in requests))
            )
        finally:
            await client.close()

    def run(self, requests: list[list[dict[str, str]]], parse: Parser) -> list[Outcome]:
        """Synchronous :meth:`run_async`."""
        return asyncio.run(self.run_async(requests, parse))


class _Failed(Exception):
    """A request that got no usable HTTP reply after all retries."""


def default_cache_dir(stage_out: Path) -> Path:
    """The cache directory of a run: ``$HARNESS_SYNTH_CACHE``, else ``<runs root>/cache/openai``.

    The runs root is ``$HARNESS_RUNS_ROOT`` or the root above the stage's temp dir
    (``<root>/stages/synthesize/.tmp-...``), so the cache outlives any one stage attempt.
    """
    env = os.environ.get("HARNESS_SYNTH_CACHE")
    if env:
        return Path(env)
    root = os.environ.get("HARNESS_RUNS_ROOT")
    if root:
        return Path(root).resolve() / "cache" / "openai"
    stages = stage_out.resolve().parent.parent
    if stages.name == "stages":
        return stages.parent / "cache" / "openai"
    return stage_out.resolve().parent / "cache" / "openai"
