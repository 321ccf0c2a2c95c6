"""Constrained outputs: per-row grammars that only admit answers the official parsers accept.

* multiple-choice: one of the option indices present in the prompt (a vLLM ``choice``);
* ranking: a permutation of the candidate numbers of the prompt's list, comma-separated;
* retrieval: ``k`` distinct candidate numbers, comma-separated, ``k`` being the count the
  prompt asks for (``retrieval_k``; 3, the official hit-rate cut-off, when it states none).

Every constraint is an EBNF grammar (root rule ``root``) compiled by xgrammar: vLLM receives
it as ``StructuredOutputsParams(choice=...)`` / ``(grammar=...)`` (its default ``auto``
backend picks xgrammar, on CPU and GPU alike), the transformers engine applies the same
compiled grammar through :class:`GrammarLogitsProcessor`, and an OpenAI-compatible vLLM
server gets it as ``structured_outputs`` in the request body.

Distinctness is encoded by one rule per set of already-used numbers, so the grammar grows
with ``sum_{j<k} C(n, j)``; above :data:`MAX_RULES` rules (e.g. a ranking of more than 12
items) it falls back to ``k`` numbers from the list without the distinctness guarantee
(``Constraint.exact`` is False then).

Separators are a bare comma (no space): it parses in official mode and keeps the answer
within the winning team's token caps (ranking of 5 in 9 tokens, retrieval of 3 in 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Any

MAX_RULES = 5000
DEFAULT_RETRIEVAL_K = 3
DEFAULT_RANKING_N = 5
SEPARATOR = ","


def _lit(s: str) -> str:
    escapes = {"\\": r"\\", '"': r"\"", "\n": r"\n", "\r": r"\r", "\t": r"\t"}
    return '"' + "".join(escapes.get(c, c) for c in s) + '"'


def choice_grammar(choices: list[str]) -> str:
    """The EBNF vLLM builds for a ``choice`` list (``choice_as_grammar``), for other engines."""
    return "root ::= " + " | ".join(_lit(c) for c in choices)


@dataclass(frozen=True)
class Constraint:
    """The answers one row may produce.

    Attributes:
        task_type: The task type it constrains.
        grammar: xgrammar EBNF with root rule ``root``.
        items: The admissible answers (MC) or the admissible numbers (ranking/retrieval).
        length: Numbers in a ranking/retrieval answer (1 for MC).
        exact: Whether distinctness is enforced (False after the :data:`MAX_RULES` fallback).
        choice: True for a plain choice among ``items`` (MC).
    """

    task_type: str
    grammar: str
    items: tuple[str, ...]
    length: int
    exact: bool = True
    choice: bool = False

    def accepts(self, text: str) -> bool:
        """Whether a complete output is one of the answers this constraint admits.

        Args:
            text: The raw output.

        Returns:
            True when ``text`` matches exactly.
        """
        if self.choice:
            return text in self.items
        parts = text.split(SEPARATOR)
        if len(parts) != self.length or any(p not in self.items for p in parts):
            return False
        return not self.exact or len(set(parts)) == len(parts)

    def vllm_params(self) -> Any:
        """``vllm.sampling_params.StructuredOutputsParams`` for this constraint."""
        from vllm.sampling_params import StructuredOutputsParams

        if self.choice:
            return StructuredOutputsParams(choice=list(self.items))
        return StructuredOutputsParams(grammar=self.grammar)

    def openai_body(self) -> dict[str, Any]:
        """The request-body extension a vLLM OpenAI-compatible server understands."""
        if self.choice:
            return {"structured_outputs": {"choice": list(self.items)}}
        return {"structured_outputs": {"grammar": self.grammar}}


def distinct_sequence_grammar(items: list[str], k: int) -> tuple[str, bool]:
    """EBNF for ``k`` distinct items joined by commas (a permutation when ``k == len(items)``).

    Args:
        items: The admissible items (distinct strings).
        k: How many to emit (1 <= k <= len(items)).

    Returns:
        ``(grammar, exact)``; ``exact`` is False when the distinct-set grammar would exceed
        :data:`MAX_RULES` rules and repeated items are allowed instead.
    """
    n = len(items)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the number of items {n}")
    if sum(comb(n, j) for j in range(k)) > MAX_RULES:
        item = "item ::= " + " | ".join(_lit(x) for x in items)
        body = f" {_lit(SEPARATOR)} ".join(["item"] * k)
        return f"root ::= {body}\n{item}", False
    rules: list[str] = []
    seen: set[int] = set()
    stack = [0]
    while stack:
        mask = stack.pop()
        if mask in seen:
            continue
        seen.add(mask)
        alts = []
        last = bin(mask).count("1") == k - 1
        for i, x in enumerate(items):
            if mask >> i & 1:
                continue
            if last:
                alts.append(_lit(x))
            else:
                nxt = mask | 1 << i
                alts.append(f"{_lit(x)} {_lit(SEPARATOR)} s{nxt:x}")
                stack.append(nxt)
        rules.append(f"s{mask:x} ::= " + " | ".join(alts))
    return "root ::= s0\n" + "\n".join(sorted(rules)), True


def _candidates(prompt: str, default_n: int | None) -> list[str]:
    from harness.shopbench.prompt_info import candidate_count, candidate_indices

    indices = candidate_indices(prompt)
    if len(indices) >= 2:
        return [str(i) for i in indices]
    n = candidate_count(prompt) or default_n
    return [str(i) for i in range(1, n + 1)] if n else []


def constraint_for(prompt: str, task_type: str) -> Constraint | None:
    """The constraint of a row, or None for task types that are not constrained.

    Args:
        prompt: The ShopBench prompt (as in the data, before templating).
        task_type: The (routed) task type.

    Returns:
        The constraint (multiple-choice, ranking, retrieval), else None.
    """
    from harness.shopbench.prompt_info import mc_options, retrieval_k

    if task_type == "multiple-choice":
        options = [str(i) for i in mc_options(prompt)] or [str(i) for i in range(10)]
        return Constraint(task_type, choice_grammar(options), tuple(options), 1, choice=True)
    if task_type == "ranking":
        items = _candidates(prompt, DEFAULT_RANKING_N)
        grammar, exact = distinct_sequence_grammar(items, len(items))
        return Constraint(task_type, grammar, tuple(items), len(items), exact)
    if task_type == "retrieval":
        items = _candidates(prompt, None) or [str(i) for i in range(1, 16)]
        k = min(retrieval_k(prompt) or DEFAULT_RETRIEVAL_K, len(items))
        grammar, exact = distinct_sequence_grammar(items, k)
        return Constraint(task_type, grammar, tuple(items), k, exact)
    return None


class GrammarLogitsProcessor:
    """A transformers logits processor applying one compiled xgrammar grammar per batch row.

    Rows whose grammar is None are left free. Like vLLM, a row whose grammar is complete may
    only emit a stop token. One instance serves one ``generate`` call.
    """

    def __init__(self, compiled: list[Any | None], vocab_size: int) -> None:
        """Set up matchers.

        Args:
            compiled: Per batch row, an ``xgrammar.CompiledGrammar`` or None.
            vocab_size: The model's logits width.
        """
        import torch
        import xgrammar as xgr

        self._xgr = xgr
        self._torch = torch
        self.matchers = [xgr.GrammarMatcher(c) if c is not None else None for c in compiled]
        self.vocab_size = vocab_size
        self.bitmask = xgr.allocate_token_bitmask(len(compiled), vocab_size)
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Advance each row's matcher by its last token and mask the next-token logits."""
        if len(self.matchers) != input_ids.shape[0]:
            raise RuntimeError("GrammarLogitsProcessor: batch size changed during generate")
        rows = []
        for i, m in enumerate(self.matchers):
            if m is None:
                continue
            if self._started and not m.is_terminated():
                m.accept_token(int(input_ids[i, -1]))
            if not m.is_terminated():
                m.fill_next_token_bitmask(self.bitmask, i)
                rows.append(i)
        self._started = True
        if rows:
            out = scores if scores.dtype == self._torch.float32 else scores.float()
            self._xgr.apply_token_bitmask_inplace(
                out,
                self.bitmask.to(out.device),
                vocab_size=min(self.vocab_size, out.shape[-1]),
                indices=rows,
            )
            scores = out if out.dtype == scores.dtype else out.to(scores.dtype)
        return scores


class GrammarCompiler:
    """Compiles constraint grammars for a tokenizer, as vLLM's xgrammar backend does."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        """Build the tokenizer info.

        Args:
            tokenizer: The model's transformers tokenizer.
            vocab_size: The model config's ``vocab_size`` (logits width).
        """
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.vocab_size = vocab_size
        self._compiler = xgr.GrammarCompiler(info, max_threads=2, cache_enabled=True)

    def compile(self, constraint: Constraint | None) -> Any | None:
        """The compiled grammar of a constraint (None stays None)."""
        if constraint is None:
            return None
        return self._compiler.compile_grammar(constraint.grammar)

    def processor(self, constraints: list[Constraint | None]) -> GrammarLogitsProcessor | None:
        """A logits processor for one batch (None when no row is constrained)."""
        if all(c is None for c in constraints):
            return None
        return GrammarLogitsProcessor([self.compile(c) for c in constraints], self.vocab_size)
