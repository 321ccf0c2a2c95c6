"""Any OpenAI-compatible endpoint: a vLLM server you run, or a hosted model.

With ``prompts.chat_template`` the chat completions API receives the system and user
messages (the server applies its model's chat template); otherwise the completions API
receives the raw prompt. Constraints are sent as vLLM's ``structured_outputs`` request
extension, so ``infer.constrained`` needs a vLLM server. Logit edits go as ``logit_bias``
(token ids of the local model dir's tokenizer, as strings: the server must serve that
model, and accept the parameter); ``allowed_tokens`` has no OpenAI parameter and is refused.
The key is read from the environment variable ``infer.openai.api_key_env`` only, never from
the spec; an endpoint other than the OpenAI API without that variable gets a placeholder key.

Requests go through the shared client and request cache (:mod:`harness.openai_client`):
retries (429, 5xx, timeouts, malformed replies) are bounded, and every answered request is
cached as it arrives, so scoring a hosted model resumes after a crash or a partial failure
without re-sending what was answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.inference.engines.base import EngineSpec, GenRequest, GenResult, strip_stop
from harness.inference.errors import InferenceError
from harness.openai_client import AuthFailed, Client, RequestCache, RequestFailed, resolve_api_key


class OpenAIEngine:
    """An OpenAI-compatible endpoint behind the engine interface."""

    name = "openai"

    def __init__(self, spec: EngineSpec) -> None:
        """Check the section and the key.

        Args:
            spec: Engine spec with ``infer.openai`` set.
        """
        cfg = spec.infer.openai
        if cfg is None:
            raise InferenceError("`infer.engine: openai` needs an `infer.openai` section")
        self.cfg = cfg
        self.chat = spec.chat
        self.cache = RequestCache(Path(spec.request_cache)) if spec.request_cache else None
        try:
            self.key = resolve_api_key(cfg.api_key_env, cfg.base_url, "infer.openai.api_key_env")
        except Exception as e:
            raise InferenceError(str(e)) from None
        self.stats: dict[str, int] = {}

    def body(self, req: GenRequest) -> dict[str, Any]:
        """The exact request body of a request.

        Raises:
            InferenceError: The request has allowed tokens (no OpenAI parameter).
        """
        p = req.params
        if req.allowed_token_ids is not None:
            raise InferenceError(
                f"`decoding.{req.task_type}.allowed_tokens` is not available with "
                "`infer.engine: openai`; use `logit_bias` or `engine: vllm`"
            )
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": req.seed,
        }
        if p.stop:
            body["stop"] = list(p.stop)
        if req.logit_bias:
            body["logit_bias"] = {str(t): b for t, b in req.logit_bias.items()}
        extra: dict[str, Any] = {}
        if p.top_k > 0:
            extra["top_k"] = p.top_k
        if p.repetition_penalty != 1.0:
            extra["repetition_penalty"] = p.repetition_penalty
        if req.constraint is not None:
            extra.update(req.constraint.openai_body())
        if extra:
            body["extra_body"] = extra
        if self.chat:
            body["messages"] = [dict(m) for m in req.messages]
        else:
            body["prompt"] = req.text
        return body

    async def _one(self, client: Client, req: GenRequest) -> GenResult | str:
        start = time.perf_counter()
        try:
            reply, _ = await client.send(self.body(req), "chat" if self.chat else "completions")
        except RequestFailed as e:
            return f"row {req.index}: {e}"
        text, _ = strip_stop(reply["content"], req.params.stop)
        usage = reply.get("usage") or {}
        return GenResult(
            index=req.index,
            text=text,
            token_ids=(),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=str(reply.get("finish_reason") or "stop"),
            latency_s=time.perf_counter() - start,
        )

    async def _all(self, requests: Sequence[GenRequest]) -> list[GenResult | str]:
        client = Client(
            base_url=self.cfg.base_url,
            api_key=self.key,
            timeout_s=self.cfg.timeout_s,
            max_retries=self.cfg.max_retries,
            concurrency=self.cfg.concurrency,
            cache=self.cache,
        )
        try:
            return list(await asyncio.gather(*(self._one(client, r) for r in requests)))
        finally:
            for k, v in vars(client.stats).items():
                self.stats[k] = self.stats.get(k, 0) + v
            await client.close()

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Send the requests, ``infer.openai.concurrency`` at a time; results in order.

        Raises:
            InferenceError: Some requests got no well-formed reply within the retry budget
                (every answered one is cached first, so a rerun sends only the failed ones),
                or the endpoint refused the key.
        """
        try:
            results = asyncio.run(self._all(requests))
        except AuthFailed as e:
            raise InferenceError(str(e)) from None
        failed = [r for r in results if isinstance(r, str)]
        if failed:
            cached = (
                f"; the {len(results) - len(failed)} answered are in the request cache "
                f"{self.cache.directory} and a rerun sends only the failed ones"
                if self.cache
                else ""
            )
            raise InferenceError(
                f"{len(failed)} of {len(results)} requests to {self.cfg.base_url} failed "
                f"(first: {failed[0]}){cached}"
            )
        return [r for r in results if not isinstance(r, str)]

    def close(self) -> None:
        """Nothing to release: each batch closes its own HTTP client."""
