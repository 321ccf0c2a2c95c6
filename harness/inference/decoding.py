"""Decoding options beyond sampling: logit edits by token text, and the sentence cut.

Per task type, ``decoding.<type>`` may edit the next-token logits:

* ``logit_bias`` — ``{token text: bias}``; a text names every token of the model's vocabulary
  that decodes, alone, to exactly that text (``"0"`` and ``" 0"`` are different tokens);
* ``allowed_tokens`` — only those tokens (by text) and the end-of-sequence token(s) may be
  generated;
* ``prompt_token_bias`` — added to every token that occurs in the row's prompt as the model
  sees it (chat template included);
* ``eos_bias`` — added to the end-of-sequence token(s): the ``eos_token_id`` of the model's
  ``generation_config.json`` and the tokenizer's.

:func:`resolve_token_edits` resolves the texts with the model's tokenizer when the infer stage
starts (every text no token decodes to is reported at once, naming
``decoding.<type>.logit_bias`` or ``.allowed_tokens``). A request then carries one
``{token id: bias}`` map — the biases a token gets from the three options add up, the sum
clamped to [-100, 100] as vLLM and the OpenAI API accept — and the allowed ids.

Engines apply them in vLLM V1's order: logits in float32, disallowed tokens set to -inf, the
biases added, then repetition penalty, temperature and top-p/top-k. ``vllm`` passes them as
``SamplingParams(logit_bias=..., allowed_token_ids=...)`` (per request, so the prompt-token
bias is per row); ``transformers`` through :class:`TokenEditsProcessor`; ``openai`` sends
``logit_bias`` (ids as strings) and has no allowed tokens (a spec error). With
``infer.constrained`` the grammar masks tokens as well: a token must pass both, and biases
reorder only what the grammar admits.

``sentence_cut_words`` post-processes an output (:func:`sentence_cut`): once past that many
words, it is cut after the sentence that crossed the limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.inference.errors import InferenceError
from harness.shopbench.types import TASK_TYPES
from harness.spec.schema import DecodingConfig, DecodingParams

BIAS_LIMIT = 100.0
"""Largest absolute bias: what vLLM clamps to and the OpenAI API accepts."""

# A sentence ends at `.`, `!` or `?` (closing quotes/brackets may follow) before whitespace or
# the end of the text ("3.5 inch" does not end one), or at a CJK full stop / mark.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s|\Z)|[。！？][\"'”’)\]」』）]*")


def has_token_edits(params: DecodingParams) -> bool:
    """Whether a task type's decoding edits logits."""
    return bool(
        params.logit_bias
        or params.allowed_tokens is not None
        or params.prompt_token_bias
        or params.eos_bias
    )


def _clamp(bias: float) -> float:
    return max(-BIAS_LIMIT, min(BIAS_LIMIT, bias))


@dataclass(frozen=True)
class TokenEdits:
    """The logit edits of one task type, resolved to token ids.

    Attributes:
        task_type: The task type.
        bias: ``logit_bias`` and ``eos_bias`` by token id, summed (not clamped).
        allowed: The allowed ids, end-of-sequence included (None: every token).
        prompt_bias: ``prompt_token_bias``.
        resolved: What was resolved, JSON-able (the stage summary's ``token_edits.<type>``):
            ``logit_bias`` (text -> ``{"bias", "ids"}``), ``allowed_tokens`` (text -> ids,
            or None), ``allowed_ids``, ``eos_ids``, ``eos_bias``, ``prompt_token_bias``.
    """

    task_type: str
    bias: dict[int, float]
    allowed: tuple[int, ...] | None
    prompt_bias: float
    resolved: dict[str, Any] = field(default_factory=dict)

    def logit_bias_for(self, prompt_ids: Sequence[int] | None) -> dict[int, float] | None:
        """The ``{token id: bias}`` map of one request.

        Args:
            prompt_ids: The row's prompt token ids (needed with a prompt-token bias).

        Returns:
            Summed biases clamped to [-100, 100], ids ascending, zeros dropped; None when
            empty.

        Raises:
            InferenceError: A prompt-token bias without prompt token ids.
        """
        bias = dict(self.bias)
        if self.prompt_bias:
            if prompt_ids is None:
                raise InferenceError(
                    f"`decoding.{self.task_type}.prompt_token_bias` needs the prompt's token "
                    "ids, and no tokenizer of the model could be loaded"
                )
            for t in set(prompt_ids):
                bias[t] = bias.get(t, 0.0) + self.prompt_bias
        out = {t: _clamp(b) for t, b in sorted(bias.items()) if b}
        return out or None


def token_table(tokenizer: Any) -> dict[str, list[int]]:
    """Every token's text decoded alone -> the ids that decode to it.

    Args:
        tokenizer: A transformers tokenizer.

    Returns:
        The table over ids ``0 .. len(tokenizer) - 1`` (special tokens included).
    """
    n = len(tokenizer)
    texts = tokenizer.batch_decode(
        [[i] for i in range(n)], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    table: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        table.setdefault(text, []).append(i)
    return table


def load_tokenizer(
    model_dir: Path,
    trust_remote_code: bool,
    *,
    required: bool = True,
    class_cache: Path | None = None,
) -> Any:
    """The model's tokenizer (transformers ``AutoTokenizer``).

    ``AutoTokenizer`` imports every model's configuration to pick the class (seconds in each
    stage process). With ``class_cache`` (a sweep's engine pool dir), the class it picked for
    this model dir and interpreter is recorded there, and later loads instantiate that class
    directly, as ``AutoTokenizer`` itself does (never for remote code).

    Args:
        model_dir: The model dir.
        trust_remote_code: Passed to transformers.
        required: Raise when it cannot be loaded (False: return None).
        class_cache: Where resolved tokenizer classes are recorded (None: nowhere).

    Raises:
        InferenceError: It cannot be loaded and is required.
    """
    import hashlib
    import importlib
    import sys

    record = None
    if class_cache is not None and not trust_remote_code:
        material = f"{Path(model_dir).resolve()}\0{sys.executable}".encode()
        record = class_cache / f"tokenizer-{hashlib.sha256(material).hexdigest()[:16]}.json"
    try:
        if record is not None and record.is_file():
            found = json.loads(record.read_text(encoding="utf-8"))
            cls = getattr(importlib.import_module(found["module"]), found["name"])
            return cls.from_pretrained(model_dir, _from_auto=True)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        if record is not None:
            from harness.atomic import write_json

            write_json(record, {"module": type(tok).__module__, "name": type(tok).__name__})
        return tok
    except (OSError, ValueError) as e:
        if required:
            raise InferenceError(f"{model_dir}: cannot load the tokenizer: {e}") from None
        return None


def eos_token_ids(tokenizer: Any, model_dir: Path | None = None) -> tuple[int, ...]:
    """The end-of-sequence ids: ``generation_config.json``'s ``eos_token_id`` (when the model
    dir has one) and the tokenizer's, ascending."""
    ids: set[int] = set()
    gen = model_dir / "generation_config.json" if model_dir is not None else None
    if gen is not None and gen.is_file():
        eos = json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id")
        ids |= {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return tuple(sorted(ids))


def _suggest(text: str, table: Mapping[str, list[int]]) -> str:
    options = [" " + text, text.strip(), text.lower(), text.capitalize(), " " + text.lower()]
    found = [o for o in dict.fromkeys(options) if o != text and o in table]
    return f" (tokens that exist: {', '.join(map(repr, found))})" if found else ""


def _resolve(
    texts: Iterable[str], table: Mapping[str, list[int]], where: str, problems: list[str]
) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for text in texts:
        ids = table.get(text)
        if ids:
            out[text] = list(ids)
        else:
            problems.append(
                f"`{where}`: no token of the model's vocabulary decodes to {text!r} (a text "
                f"names one whole token){_suggest(text, table)}"
            )
    return out


def resolve_token_edits(
    decoding: DecodingConfig, tokenizer: Any, eos_ids: Sequence[int]
) -> dict[str, TokenEdits]:
    """Resolve every task type's logit edits with the model's tokenizer.

    Args:
        decoding: The ``decoding`` section.
        tokenizer: The model's tokenizer (None: only allowed when no task type edits).
        eos_ids: The end-of-sequence ids (:func:`eos_token_ids`).

    Returns:
        Task type -> edits, for the task types that edit logits.

    Raises:
        InferenceError: A text no token decodes to (all are listed), or edits without a
            tokenizer.
    """
    wanted = [t for t in TASK_TYPES if has_token_edits(decoding.for_task(t))]
    if not wanted:
        return {}
    if tokenizer is None:
        raise InferenceError(
            f"`decoding.{wanted[0]}` edits logits by token, which needs the model's tokenizer, "
            "and none could be loaded from the model dir"
        )
    table = token_table(tokenizer)
    problems: list[str] = []
    out: dict[str, TokenEdits] = {}
    for task_type in wanted:
        p = decoding.for_task(task_type)
        where = f"decoding.{task_type}"
        bias_ids = _resolve(p.logit_bias, table, f"{where}.logit_bias", problems)
        allowed_ids = _resolve(p.allowed_tokens or [], table, f"{where}.allowed_tokens", problems)
        if (p.eos_bias or p.allowed_tokens is not None) and not eos_ids:
            problems.append(f"`{where}`: the model has no end-of-sequence token")
        bias: dict[int, float] = {}
        for text, ids in bias_ids.items():
            for t in ids:
                bias[t] = bias.get(t, 0.0) + p.logit_bias[text]
        if p.eos_bias:
            for t in eos_ids:
                bias[t] = bias.get(t, 0.0) + p.eos_bias
        allowed = None
        if p.allowed_tokens is not None:
            allowed = tuple(sorted({*(t for ids in allowed_ids.values() for t in ids), *eos_ids}))
        resolved = {
            "logit_bias": {
                text: {"bias": p.logit_bias[text], "ids": ids} for text, ids in bias_ids.items()
            },
            "allowed_tokens": allowed_ids if p.allowed_tokens is not None else None,
            "allowed_ids": list(allowed) if allowed is not None else None,
            "eos_ids": list(eos_ids),
            "eos_bias": p.eos_bias,
            "prompt_token_bias": p.prompt_token_bias,
        }
        out[task_type] = TokenEdits(task_type, bias, allowed, p.prompt_token_bias, resolved)
    if problems:
        raise InferenceError(
            "token texts that do not resolve:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return out


class TokenEditsProcessor:
    """A transformers logits processor applying per-row logit edits, as vLLM V1 does:
    disallowed tokens to -inf, then the biases added (float32 scores). Rows without edits are
    left alone. One instance serves one ``generate`` call."""

    def __init__(
        self,
        biases: Sequence[Mapping[int, float] | None],
        allowed: Sequence[Sequence[int] | None],
    ) -> None:
        """Keep the edits.

        Args:
            biases: Per batch row, ``{token id: bias}`` or None.
            allowed: Per batch row, the allowed ids or None.
        """
        if len(biases) != len(allowed):
            raise ValueError("TokenEditsProcessor: one bias map and one allowed list per row")
        self.biases = list(biases)
        self.allowed = list(allowed)
        self._bias: Any = None
        self._mask: Any = None

    def _build(self, scores: Any) -> None:
        import torch

        rows, width = scores.shape
        if rows != len(self.biases):
            raise RuntimeError("TokenEditsProcessor: batch size changed during generate")
        bias = torch.zeros((rows, width), dtype=torch.float32)
        mask = torch.zeros((rows, width), dtype=torch.bool)
        for i, (b, a) in enumerate(zip(self.biases, self.allowed, strict=True)):
            if b:
                ids = torch.tensor(list(b), dtype=torch.long)
                bias[i, ids] = torch.tensor(list(b.values()), dtype=torch.float32)
            if a is not None:
                mask[i] = True
                mask[i, torch.tensor(list(a), dtype=torch.long)] = False
        self._bias = bias.to(scores.device)
        self._mask = mask.to(scores.device) if bool(mask.any()) else None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Edit the next-token scores of every row."""
        import torch

        if self._bias is None:
            self._build(scores)
        out = scores if scores.dtype == torch.float32 else scores.float()
        if self._mask is not None:
            out = out.masked_fill(self._mask, float("-inf"))
        out = out + self._bias
        return out if out.dtype == scores.dtype else out.to(scores.dtype)


def sentence_cut(text: str, max_words: int) -> str:
    """Cut an output back to whole sentences once it is past ``max_words`` words.

    Sentences are kept from the start up to and including the first one that takes the
    word count (split on whitespace) past ``max_words``; what follows is dropped. This is the
    1st-place KDD Cup 2024 team's generation post-processing (theirs splits on ``". "``; a
    sentence end here is ``.``, ``!`` or ``?``, closing quotes or brackets included, followed
    by whitespace or the end, or ``。！？``). A text that never gets past ``max_words`` at a
    sentence end (short, without sentence ends, or crossing the limit in its unfinished last
    piece) is returned unchanged.

    Args:
        text: The generated text.
        max_words: ``decoding.<type>.sentence_cut_words``.

    Returns:
        The text, possibly cut.
    """
    for m in _SENTENCE_END.finditer(text):
        if len(text[: m.end()].split()) > max_words:
            return text[: m.end()]
    return text
