"""One client for OpenAI-compatible endpoints, shared by synthesis and the ``openai``
inference engine, with a crash-safe on-disk cache of every answered request.

* Async with bounded concurrency (``asyncio.Semaphore``); the ``openai`` client's own retries
  and timeouts handle 429, 5xx, connection errors and timeouts.
* A reply that is not a well-formed completion — a body that is not JSON, an HTML page sent
  with status 200 by a proxy or gateway, a completion without choices — is retried here
  within the same budget, then reported as a failed request (:class:`RequestFailed`); it
  never crashes the caller nor loses the replies that arrived beside it.
* Every answered request is written to ``<cache>/<h[:2]>/<h>.json`` (temp file, fsync,
  ``os.replace``) as soon as it arrives, ``h`` being the sha256 of the endpoint and the exact
  request body. A later run — after a crash, a SIGKILL or a finished run — takes answers
  from the cache and never re-sends a request that already has one.

API keys are read from the environment variable a spec names and are never written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from harness import config
from harness.atomic import write_json
from harness.errors import HarnessError

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
CACHE_VERSION = 1
Endpoint = Literal["chat", "completions"]


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
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return record if isinstance(record, dict) and "reply" in record else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store a record atomically (temp file in the same dir, fsync, rename)."""
        write_json(self.path(key), record, sort_keys=True, indent=None)

    def stored_keys(self) -> set[str]:
        """Keys of every stored record."""
        return {p.stem for p in self.directory.glob("??/*.json")}


def default_cache_dir(stage_out: Path) -> Path:
    """The request cache: ``$HARNESS_REQUEST_CACHE``, else ``<runs root>/cache/openai``.

    The runs root is ``$HARNESS_RUNS_ROOT`` or the root above the stage's temp dir
    (``<root>/stages/<stage>/.tmp-...``), so the cache outlives any one stage attempt.
    """
    env = config.get("HARNESS_REQUEST_CACHE")
    if env:
        return Path(env)
    root = config.get("HARNESS_RUNS_ROOT")
    if root:
        return Path(root).resolve() / "cache" / "openai"
    stages = stage_out.resolve().parent.parent
    if stages.name == "stages":
        return stages.parent / "cache" / "openai"
    return stage_out.resolve().parent / "cache" / "openai"


def resolve_api_key(env_name: str, base_url: str | None, where: str) -> str:
    """The endpoint's key from the environment variable ``env_name``.

    An endpoint other than the OpenAI API without a key gets a placeholder: OpenAI-compatible
    servers such as vLLM accept any.

    Args:
        env_name: The variable holding the key.
        base_url: The endpoint (None: the OpenAI API).
        where: The spec key naming the variable, for the message.

    Raises:
        HarnessError: No key for the OpenAI API.
    """
    key = os.environ.get(env_name, "")
    if key:
        return key
    host = urlparse(base_url or OPENAI_DEFAULT_BASE_URL).hostname or ""
    if not host.endswith("openai.com"):
        return "EMPTY"
    raise HarnessError(
        f"`{where}`: environment variable {env_name} is not set (the OpenAI API needs a key)"
    )


class RequestFailed(Exception):
    """A request that got no well-formed reply within the retry budget."""


class AuthFailed(HarnessError):
    """The endpoint refused the API key (no retry can help)."""


@dataclass
class Stats:
    """Counts of one client's requests."""

    requests_sent: int = 0
    cache_hits: int = 0
    transport_retries: int = 0
    failed_requests: int = 0


def _reply(resp: Any, endpoint: Endpoint) -> dict[str, Any]:
    """The reply record of a response, or ValueError when it is not a well-formed completion.

    The openai client returns the raw text when a 200 reply is not JSON (an HTML page from a
    proxy), and a model without choices when the JSON is not a completion.
    """
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        shown = resp[:80] if isinstance(resp, str) else type(resp).__name__
        raise ValueError(f"not a {endpoint} completion: {shown!r}")
    choice = choices[0]
    if endpoint == "chat":
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None) if message is not None else None
    else:
        content = getattr(choice, "text", None)
    if content is not None and not isinstance(content, str):
        raise ValueError(f"completion content is a {type(content).__name__}, not text")
    usage = getattr(resp, "usage", None)
    counts = usage.model_dump() if hasattr(usage, "model_dump") else {}
    return {
        "content": content or "",
        "finish_reason": getattr(choice, "finish_reason", None),
        "usage": {k: counts.get(k) for k in ("prompt_tokens", "completion_tokens")},
    }


class Client:
    """Requests to one OpenAI-compatible endpoint, through the request cache.

    Args:
        base_url: The endpoint (None: the OpenAI API).
        api_key: The key (see :func:`resolve_api_key`).
        timeout_s: Per-request timeout.
        max_retries: Retries per request (the openai client's, and ours for malformed replies).
        concurrency: Requests in flight at once.
        cache: The request cache, or None to send every request.
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str,
        timeout_s: float,
        max_retries: int,
        concurrency: int,
        cache: RequestCache | None,
    ) -> None:
        import openai

        self.base_url = (base_url or OPENAI_DEFAULT_BASE_URL).rstrip("/")
        self.max_retries = max_retries
        self.cache = cache
        self.stats = Stats()
        self._openai = openai.AsyncOpenAI(
            api_key=api_key, base_url=self.base_url, max_retries=max_retries, timeout=timeout_s
        )
        self._sem = asyncio.Semaphore(concurrency)

    def key(self, body: dict[str, Any]) -> str:
        """The cache key of a request body."""
        return RequestCache.key(self.base_url, body)

    async def _post(self, body: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
        import openai

        api = self._openai.chat.completions if endpoint == "chat" else self._openai.completions
        for retry in range(self.max_retries + 1):
            try:
                return _reply(await api.create(**body), endpoint)
            except openai.AuthenticationError as e:
                raise AuthFailed(f"{self.base_url} refused the API key: {e}") from None
            except (ValueError, openai.APIResponseValidationError) as e:
                # ValueError covers json.JSONDecodeError and _reply's checks.
                if retry == self.max_retries:
                    raise RequestFailed(f"malformed reply: {str(e)[:300]}") from None
                self.stats.transport_retries += 1
                await asyncio.sleep(min(0.5 * 2**retry, 8.0))
            except openai.APIError as e:
                raise RequestFailed(f"{type(e).__name__}: {str(e)[:300]}") from None
        raise AssertionError("unreachable")

    async def send(
        self, body: dict[str, Any], endpoint: Endpoint = "chat"
    ) -> tuple[dict[str, Any], bool]:
        """The reply to one request: from the cache, or sent and then cached.

        Args:
            body: The exact request body (model, messages or prompt, decoding, extra_body).
            endpoint: ``chat`` (chat completions) or ``completions``.

        Returns:
            The reply record (``content``, ``finish_reason``, ``usage``) and whether it came
            from the cache.

        Raises:
            RequestFailed: No well-formed reply within the budget (nothing is cached).
            AuthFailed: The endpoint refused the key.
        """
        key = self.key({"endpoint": endpoint, **body}) if endpoint != "chat" else self.key(body)
        if self.cache is not None and (record := self.cache.get(key)) is not None:
            self.stats.cache_hits += 1
            return record["reply"], True
        async with self._sem:
            try:
                reply = await self._post(body, endpoint)
            except RequestFailed:
                self.stats.failed_requests += 1
                raise
        self.stats.requests_sent += 1
        if self.cache is not None:
            record = {"request": body, "base_url": self.base_url, "reply": reply}
            # Off the event loop: the fsync must not stall the other requests.
            await asyncio.to_thread(self.cache.put, key, record)
        return reply, False

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._openai.close()
