"""Generation through any OpenAI-compatible chat-completions endpoint, through the shared
client and request cache of :mod:`harness.openai_client`.

* A reply whose *content* the caller cannot parse is re-asked up to ``content_retries``
  times; each re-ask is a different request (``seed`` = base seed + attempt).
* Token and cost accounting: tokens of requests sent now and of replies taken from the cache.

The API key is read from the environment variable the config names and is never written.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.data.errors import GenerationError
from harness.openai_client import (
    OPENAI_DEFAULT_BASE_URL,
    AuthFailed,
    Client,
    RequestCache,
    RequestFailed,
    default_cache_dir,
    resolve_api_key,
)
from harness.spec.schema import OpenAIGenerator

__all__ = ["Generator", "Outcome", "RequestCache", "Usage", "api_key", "default_cache_dir"]


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
    """The key from the environment variable ``cfg.api_key_env`` (a placeholder for an
    endpoint other than the OpenAI API).

    Raises:
        GenerationError: No key for the OpenAI API.
    """
    try:
        return resolve_api_key(cfg.api_key_env, cfg.base_url, "data.synthesis.openai.api_key_env")
    except Exception as e:
        raise GenerationError(str(e)) from None


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

    async def one(self, client: Client, messages: list[dict[str, str]], parse: Parser) -> Outcome:
        """All attempts of one logical request."""
        out = Outcome()
        for attempt in range(self.cfg.content_retries + 1):
            body = self.body(messages, attempt)
            out.keys.append(client.key(body))
            out.attempts = attempt + 1
            try:
                reply, cached = await client.send(body)
            except AuthFailed as e:
                raise GenerationError(str(e)) from None
            except RequestFailed as e:
                self.usage.failed_requests += 1
                out.error = f"request_failed: {e}"
                return out
            self.usage.add_reply(reply.get("usage") or {}, cached=cached)
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
        self, client: Client, messages: list[dict[str, str]], parse: Parser
    ) -> Outcome:
        out = await self.one(client, messages, parse)
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
        client = Client(
            base_url=self.cfg.base_url,
            api_key=api_key(self.cfg),
            timeout_s=self.cfg.timeout_s,
            max_retries=self.cfg.max_retries,
            concurrency=self.cfg.concurrency,
            cache=self.cache,
        )
        self._total, self._done, self._t0 = len(requests), 0, time.monotonic()
        try:
            return list(await asyncio.gather(*(self._tracked(client, m, parse) for m in requests)))
        finally:
            self.usage.transport_retries += client.stats.transport_retries
            await client.close()

    def run(self, requests: list[list[dict[str, str]]], parse: Parser) -> list[Outcome]:
        """Synchronous :meth:`run_async`."""
        return asyncio.run(self.run_async(requests, parse))
