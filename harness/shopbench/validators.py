"""Structural validity of an answer for its task type (optionally against its prompt).

Used by the synthetic-data cleaner (is a generated answer well-formed?) and by the parser
tests (is a parse a valid answer?).
"""

from __future__ import annotations

from typing import Any

from harness.shopbench import prompt_info
from harness.shopbench.errors import UnknownNameError
from harness.shopbench.types import TASK_TYPES


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_list(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "expected a non-empty list of integers"
    if not all(_is_int(v) for v in value):
        return "expected a non-empty list of integers"
    return None


def valid_answer(task_type: str, value: Any, prompt: str | None = None) -> str | None:
    """Why ``value`` is not a structurally valid answer, or None when it is.

    * multiple-choice: an int; with a prompt, one of its options.
    * ranking: a permutation of ``1..N`` (N from the prompt's candidate list, else
      ``len(value)``).
    * retrieval: distinct ints; with a prompt, indices of its candidate list and at most
      the number it asks for.
    * named_entity_recognition: a non-empty list of non-empty strings.
    * generation: a non-empty string.

    Args:
        task_type: One of :data:`~harness.shopbench.types.TASK_TYPES`.
        value: The parsed answer.
        prompt: The prompt, for option/candidate checks.

    Returns:
        None when valid, else the reason.

    Raises:
        UnknownNameError: Unknown task type.
    """
    if task_type == "multiple-choice":
        if not _is_int(value):
            return "expected an integer option"
        options = prompt_info.mc_options(prompt) if prompt else []
        if options and value not in options:
            return f"{value} is not one of the options {options}"
        if not options and value < 0:
            return "negative option"
        return None
    if task_type == "ranking":
        reason = _int_list(value)
        if reason:
            return reason
        n = (prompt_info.candidate_count(prompt) if prompt else None) or len(value)
        if sorted(value) != list(range(1, n + 1)):
            return f"not a permutation of 1..{n}"
        return None
    if task_type == "retrieval":
        reason = _int_list(value)
        if reason:
            return reason
        if len(set(value)) != len(value):
            return "duplicate indices"
        if prompt:
            candidates = prompt_info.candidate_indices(prompt)
            if candidates and any(v not in candidates for v in value):
                return f"indices outside the candidate list {candidates[0]}..{candidates[-1]}"
            k = prompt_info.retrieval_k(prompt)
            if k is not None and len(value) > k:
                return f"{len(value)} indices but the prompt asks for {k}"
        return None
    if task_type == "named_entity_recognition":
        if not isinstance(value, list) or not value:
            return "expected a non-empty list of strings"
        if not all(isinstance(v, str) and v.strip() for v in value):
            return "expected a non-empty list of non-empty strings"
        return None
    if task_type == "generation":
        if not isinstance(value, str) or not value.strip():
            return "expected a non-empty string"
        return None
    raise UnknownNameError(
        f"unknown task type {task_type!r} (expected one of {', '.join(TASK_TYPES)})"
    )
