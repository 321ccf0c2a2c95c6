"""The engine interface: requests in, raw completions out, in request order.

Every engine receives the same :class:`GenRequest` objects (prompt text, its token ids, chat
messages, decoding parameters, per-request seed and optional constraint) and returns one
:class:`GenResult` per request. Engines never reorder, drop or parse outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.inference.constraints import Constraint
from harness.registry import Registry
from harness.spec.schema import DecodingParams, InferConfig


@dataclass(frozen=True)
class GenRequest:
    """One prompt to complete.

    Attributes:
        index: The row's position in the evaluation data.
        task_type: The (routed) task type; requests are grouped by it.
        text: The prompt text the model sees (chat template applied when configured).
        token_ids: ``text`` tokenized with the model's tokenizer (None without a local one).
        messages: The chat messages (system, user) for chat endpoints.
        params: Decoding parameters of the task type.
        seed: The request's sampling seed (base seed + row index).
        constraint: The output constraint, or None.
        logit_bias: ``{token id: bias}`` added to the logits (``decoding.<type>.logit_bias``,
            ``eos_bias`` and ``prompt_token_bias`` resolved and summed), or None.
        allowed_token_ids: The only ids that may be generated (``allowed_tokens`` and
            end-of-sequence), or None.
    """

    index: int
    task_type: str
    text: str
    token_ids: tuple[int, ...] | None
    messages: tuple[dict[str, str], ...]
    params: DecodingParams
    seed: int
    constraint: Constraint | None = None
    logit_bias: dict[int, float] | None = None
    allowed_token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class GenResult:
    """One completion.

    Attributes:
        index: The request's row index.
        text: The raw output text (stop strings and the end-of-sequence token removed).
        token_ids: The generated token ids without end-of-sequence/padding tokens.
        prompt_tokens: Tokens in the prompt.
        output_tokens: Tokens generated (as the engine counts them).
        finish_reason: ``stop`` (end of sequence or a stop string) or ``length``.
        latency_s: Seconds from submitting the request to its completion.
    """

    index: int
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    latency_s: float


@dataclass(frozen=True)
class EngineSpec:
    """Everything needed to start an engine; picklable, so Ray replicas can start their own.

    Attributes:
        infer: The ``infer`` section.
        model_dir: The local Hugging Face model dir (None for a hosted ``openai`` model).
        trust_remote_code: ``model.trust_remote_code``.
        chat: Whether prompts go through the chat template (``prompts.chat_template``).
        env: Environment variables to set before the engine starts.
        request_cache: The request cache dir of the ``openai`` engine (None: no cache).
    """

    infer: InferConfig
    model_dir: str | None
    trust_remote_code: bool = False
    chat: bool = True
    env: dict[str, str] = field(default_factory=dict)
    request_cache: str | None = None


class Engine(Protocol):
    """An inference engine."""

    name: str

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Complete the requests (same order).

        Args:
            requests: Requests of one task type.

        Returns:
            One result per request, in request order.
        """
        ...

    def close(self) -> None:
        """Release the engine's processes and memory."""
        ...


def strip_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string, as vLLM does (the stop string is dropped).

    Args:
        text: Generated text.
        stops: Stop strings.

    Returns:
        The text and whether a stop string was found.
    """
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


ENGINES: Registry[Callable[[EngineSpec], Any]] = Registry("engine")
ENGINES.add("vllm", "harness.inference.engines.vllm_engine:VLLMEngine")
ENGINES.add("transformers", "harness.inference.engines.hf_engine:TransformersEngine")
ENGINES.add("openai", "harness.inference.engines.openai_engine:OpenAIEngine")


ENGINE_PACKAGES = {"vllm": "vllm", "transformers": "transformers"}
"""The package an engine imports (an engine not listed needs none beyond the harness)."""


def engine_available(name: str) -> bool:
    """Whether this interpreter can import the package of engine ``name`` (without
    importing it)."""
    import importlib.util

    package = ENGINE_PACKAGES.get(name)
    return package is None or importlib.util.find_spec(package) is not None


def resolve_engine(infer: InferConfig) -> str:
    """The engine that runs: ``infer.engine``, or ``infer.fallback_engine`` when the
    former's package cannot be imported here.

    Args:
        infer: The ``infer`` section.

    Returns:
        An engine name.
    """
    if infer.fallback_engine is None or engine_available(infer.engine):
        return infer.engine
    return infer.fallback_engine


def make_engine(spec: EngineSpec) -> Any:
    """Start the engine a spec names (``infer.engine``, from :data:`ENGINES`; its
    ``infer.fallback_engine`` when the former cannot be imported).

    Args:
        spec: The engine spec.

    Returns:
        An :class:`Engine`.
    """
    import os

    name = resolve_engine(spec.infer)
    factory = ENGINES.get(
        name, where="infer.fallback_engine" if name != spec.infer.engine else "infer.engine"
    )
    os.environ.update(spec.env)
    return factory(spec)
