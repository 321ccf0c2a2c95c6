"""Any OpenAI-compatible endpoint: a vLLM server you run, or a hosted model.

With ``prompts.chat_template`` the chat completions API receives the system and user
messages (the server applies its model's chat template); otherwise the completions API
receives the raw prompt. Constraints are sent as vLLM's ``structured_outputs`` request
extension, so ``infer.constrained`` needs a vLLM server. The key is read from the
environment variable ``infer.openai.api_key_env`` only, never from the spec; a local
endpoint (127.0.0.1 / localhost) without that variable gets a placeholder key. Retries
(429, 5xx, timeouts) are the openai client's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from harness.inference.engines.base import EngineSpec, GenRequest, GenResult, strip_stop
from harness.inference.errors import InferenceError

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_RETRIES = 5


def api_key(base_url: str, env_name: str) -> str:
    """The endpoint's key from the environment.

    Args:
        base_url: The endpoint.
        env_name: The environment variable holding the key.

    Returns:
        The key (a placeholder for a local endpoint without one).

    Raises:
        InferenceError: A remote endpoint and the variable is unset.
    """
    key = os.environ.get(env_name)
    if key:
        return key
    if urlparse(base_url).hostname in _LOCAL_HOSTS:
        return "EMPTY"
    raise InferenceError(
        f"`infer.openai.api_key_env`: environment variable {env_name} is not set "
        f"(needed for {base_url})"
    )


class OpenAIEngine:
    """An OpenAI-compatible endpoint behind the engine interface."""

    name = "openai"

    def __init__(self, spec: EngineSpec) -> None:
        """Create the client.

        Args:
            spec: Engine spec with ``infer.openai`` set.
        """
        from openai import OpenAI

        cfg = spec.infer.openai
        if cfg is None:
            raise InferenceError("`infer.engine: openai` needs an `infer.openai` section")
        self.cfg = cfg
        self.chat = spec.chat
        self.client = OpenAI(
            base_url=cfg.base_url,
            api_key=api_key(cfg.base_url, cfg.api_key_env),
            timeout=cfg.timeout_s,
            max_retries=MAX_RETRIES,
        )

    def _one(self, req: GenRequest) -> GenResult:
        p = req.params
        common: dict[str, Any] = {
            "model": self.cfg.model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": req.seed,
        }
        if p.stop:
            common["stop"] = list(p.stop)
        extra: dict[str, Any] = {}
        if p.top_k > 0:
            extra["top_k"] = p.top_k
        if p.repetition_penalty != 1.0:
            extra["repetition_penalty"] = p.repetition_penalty
        if req.constraint is not None:
            extra.update(req.constraint.openai_body())
        if extra:
            common["extra_body"] = extra
        start = time.perf_counter()
        if self.chat:
            resp = self.client.chat.completions.create(
                messages=[dict(m) for m in req.messages],  # type: ignore[misc]
                **common,
            )
            choice = resp.choices[0]
            text = choice.message.content or ""
        else:
            resp = self.client.completions.create(prompt=req.text, **common)
            choice = resp.choices[0]
            text = choice.text or ""
        latency = time.perf_counter() - start
        text, _ = strip_stop(text, p.stop)
        usage = resp.usage
        return GenResult(
            index=req.index,
            text=text,
            token_ids=(),
            prompt_tokens=int(usage.prompt_tokens) if usage else 0,
            output_tokens=int(usage.completion_tokens) if usage else 0,
            finish_reason=str(choice.finish_reason or "stop"),
            latency_s=latency,
        )

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Send the requests, ``infer.openai.concurrency`` at a time; results in order."""
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            return list(pool.map(self._one, requests))

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()
