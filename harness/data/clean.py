"""Cleaning of generated examples: structure per task type, locale, duplicates.

A row is a ShopBench dev-format object (``input_field, output_field, task_name, task_type,
metric, is_multiple_choice, track``; optional ``meta`` with ``locale``). Checks, in order,
each with its rejection reason:

* ``schema`` — missing or ill-typed dev-format fields;
* ``output_shape`` — the answer has the wrong shape for the task type (the loader's check);
* ``prompt_suffix`` — a multiple-choice prompt that does not end with ``Answer:``, or
  another that does not end with ``Output:`` (how the hidden test set tells them apart);
* ``route_mismatch`` — the prompt would be routed to another task type;
* ``invalid_answer`` — the answer is not a valid answer to its prompt, by the same
  validators the parsers use (an MC answer is one of the options, a ranking is a
  permutation of the listed candidates, retrieval indices are listed candidates...);
* ``ungrounded_entity`` — an NER entity that does not occur in the prompt;
* ``locale_mismatch`` — the text is not in the record's locale language (or the output not in
  the target language a translation prompt names);
* ``duplicate`` — the same prompt (whitespace-normalised) was already kept.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.data.lang import guess_language, has_japanese
from harness.data.sources import LANGUAGE_NAME, LOCALE_LANGUAGE
from harness.shopbench.data import check_output_field
from harness.shopbench.router import route
from harness.shopbench.types import METRIC_TASK_TYPE, TASK_TYPES
from harness.shopbench.validators import valid_answer

REASONS = (
    "schema",
    "output_shape",
    "prompt_suffix",
    "route_mismatch",
    "invalid_answer",
    "ungrounded_entity",
    "locale_mismatch",
    "duplicate",
)
MULTILINGUAL_TRACK = "amazon-kdd-cup-24-multi-lingual-abilities"
_TARGET = re.compile(r"appears on an? (?:\(n\) )?(\w+) online shopping website", re.I)
_TARGET_ALT = re.compile(r"a\(n\) (\w+) online shopping website", re.I)
_NAME_TO_LANG = {v.lower(): k for k, v in LANGUAGE_NAME.items()}
_WS = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """Whitespace-collapsed, stripped prompt (the key of duplicate and contamination checks)."""
    return _WS.sub(" ", text).strip()


def ranking_permutation(weights: list[float]) -> list[int]:
    """The ideal 1-based ranking of candidates given their relevance weights (ties by index)."""
    return [i + 1 for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i))]


def answer_value(task_type: str, output: Any) -> Any:
    """The dev-format answer in the form a parser returns it (what the validators check).

    multiple-choice -> int, retrieval -> list[int], ranking -> the permutation its relevance
    weights imply, NER -> list[str], generation -> str (the first of several references).
    """
    if task_type == "ranking":
        return ranking_permutation(output)
    if task_type == "generation" and isinstance(output, list):
        return output[0]
    return output


def _schema(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "not a JSON object"
    for key in ("input_field", "task_name", "task_type", "metric", "track"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            return f"missing or empty string field `{key}`"
    if row.get("output_field") is None:
        return "missing field `output_field`"
    if row["task_type"] not in TASK_TYPES:
        return f"unknown task_type {row['task_type']!r}"
    if METRIC_TASK_TYPE.get(row["metric"]) != row["task_type"]:
        return f"metric {row['metric']!r} does not score {row['task_type']!r}"
    if row.get("is_multiple_choice") is not (row["task_type"] == "multiple-choice"):
        return "is_multiple_choice disagrees with task_type"
    return None


def target_language(prompt: str) -> str | None:
    """The language a translation-style prompt asks for ("... a(n) German online shopping website")."""
    m = _TARGET.search(prompt) or _TARGET_ALT.search(prompt)
    return _NAME_TO_LANG.get(m.group(1).lower()) if m else None


def locale_problem(row: dict[str, Any]) -> str | None:
    """Why the row's language does not fit its locale, or None."""
    prompt, output = row["input_field"], row["output_field"]
    target = target_language(prompt)
    if target and isinstance(output, str):
        if target == "ja" and not has_japanese(output):
            return "output is not Japanese but the prompt asks for Japanese"
        if target != "ja":
            if has_japanese(output):
                return f"output is Japanese but the prompt asks for {LANGUAGE_NAME[target]}"
            guessed = guess_language(output)
            if guessed not in (None, target):
                return f"output reads as {guessed!r} but the prompt asks for {target!r}"
        return None
    meta = row.get("meta") or {}
    language = LOCALE_LANGUAGE.get(str(meta.get("locale") or "").upper())
    if language is None:
        return None
    if language == "ja" and not has_japanese(prompt):
        return "locale JP but the prompt has no Japanese text"
    if language != "ja" and row["track"] != MULTILINGUAL_TRACK and has_japanese(prompt):
        return f"locale {meta.get('locale')} but the prompt has Japanese text"
    return None


def check_row(row: Any) -> tuple[str, str] | None:
    """The first problem of one row as ``(reason, detail)``, or None (duplicates aside)."""
    problem = _schema(row)
    if problem:
        return "schema", problem
    task_type, prompt, output = row["task_type"], row["input_field"], row["output_field"]
    problem = check_output_field(task_type, row["metric"], output)
    if problem:
        return "output_shape", problem
    want = "Answer:" if task_type == "multiple-choice" else "Output:"
    if not prompt.rstrip().endswith(want):
        return "prompt_suffix", f"a {task_type} prompt must end with {want!r}"
    routed = route(prompt, row["is_multiple_choice"])
    if routed != task_type:
        return "route_mismatch", f"the prompt routes to {routed!r}, not {task_type!r}"
    problem = valid_answer(task_type, answer_value(task_type, output), prompt)
    if problem:
        return "invalid_answer", problem
    if task_type == "ranking":
        from harness.shopbench.prompt_info import candidate_count

        n = candidate_count(prompt)
        if n is not None and n != len(output):
            return "invalid_answer", f"{len(output)} relevance weights for {n} candidates"
    if task_type == "named_entity_recognition":
        lowered = prompt.lower()
        missing = [e for e in output if e.strip().lower() not in lowered]
        if missing:
            return "ungrounded_entity", f"entity {missing[0]!r} does not occur in the prompt"
    problem = locale_problem(row)
    if problem:
        return "locale_mismatch", problem
    return None


@dataclass
class CleanResult:
    """Kept rows, rejected rows (each ``{"reason", "detail", "example"}``) and counts."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reasons(self) -> dict[str, int]:
        """Rejections per reason."""
        return dict(Counter(r["reason"] for r in self.rejected))


def clean(rows: list[Any], seen: set[str] | None = None) -> CleanResult:
    """Validate and dedupe rows, keeping the first of each prompt.

    Args:
        rows: Candidate dev-format rows.
        seen: Normalised prompts already kept elsewhere (updated in place).

    Returns:
        The kept and rejected rows.
    """
    seen = set() if seen is None else seen
    out = CleanResult()
    for row in rows:
        problem = check_row(row)
        if problem is None:
            key = normalize_prompt(row["input_field"])
            if key in seen:
                problem = ("duplicate", "the same prompt was already kept")
            else:
                seen.add(key)
        if problem:
            out.rejected.append({"reason": problem[0], "detail": problem[1], "example": row})
        else:
            out.kept.append(row)
    return out
