"""Task-type routing from the prompt alone.

The hidden ShopBench test set gives only ``input_field`` and ``is_multiple_choice``, so the
task type (which picks the parser and the decoding settings) is read off the prompt. The
rules are ordered; the first that fires wins:

1. ``is_multiple_choice`` true -> multiple-choice.
2. Ranking wording ("permutation", "rank the products") -> ranking.
3. ``is_multiple_choice`` unknown and the prompt ends with options (or asks for a rating on
   a scale) -> multiple-choice.
4. Entity-extraction wording ("entity type", "select the appropriate 'BRAND'") -> NER.
5. A numbered candidate list plus a request for indices -> retrieval.
6. Everything else -> generation.

:func:`is_keyphrase_extraction` recognises the review keyphrase-extraction task (a generation
task), which the 1st-place KDD Cup 2024 team prompted and decoded as named entity recognition
(``infer.keyphrase_as_ner``).
"""

from __future__ import annotations

import re

from harness.shopbench import prompt_info
from harness.shopbench.types import TaskType

_RANKING = re.compile(
    r"\bpermutation\b|\b(?:re-?)?rank\s+(?:the|these|all|each)\b|\branking\s+(?:of|the)\b"
    r"|\border\s+the\s+(?:products|items)\b",
    re.I,
)
_NER = re.compile(
    r"\bentity\s+type\b|\bnamed\s+entit|\bextract\s+(?:the\s+)?(?:phrases|entities)\b"
    r"|\blocate\s+the\s+'|\bdetermine\s+the\s+'[^'\n]+'\s+mentioned"
    r"|\bselect\s+the\s+appropriate\s+'|\bidentified\s+as\s+'"
    r"|\bcorresponding\s+to\s+'[^'\n]+'\s+mentioned"
    r"|\b(?:identify|find|locate|determine|extract|select|choose|pick|pinpoint|highlight)\b"
    r"[^\n]{0,40}'[^'\n]{1,40}'\s+(?:in|from|of)\s+(?:the\s+)?(?:product\s+)?(?:title|query)\b",
    re.I,
)
_RETRIEVAL_ASK = re.compile(
    r"\b(?:select|choose|pick|indices|indexes|numbers|identify)\b",
    re.I,
)
_ENDS_OUTPUT = re.compile(r"(?:output|response|result)\s*(?:\([^)\n]*\))?\s*:\s*$", re.I)
_ENDS_ANSWER = re.compile(r"answer\s*:\s*$", re.I)
# "Please extract the keyphrase from the review that mentions the given aspect."
_KEYPHRASE = re.compile(r"\bextract\s+(?:the\s+|a\s+|one\s+)?key\s*-?\s*phrases?\b", re.I)
# "...\nAnswer: Let's think step by step." — the answer is already under way (free text).
_ANSWER_STARTED = re.compile(r"\banswer\s*:[ \t]*\S[^\n]*$", re.I)


def _tail(prompt: str) -> str:
    """The end of the prompt, where the end-anchored patterns look."""
    return prompt.rstrip()[-200:]


def _looks_multiple_choice(prompt: str) -> bool:
    tail = _tail(prompt)
    if _ANSWER_STARTED.search(tail):
        return False
    if _ENDS_ANSWER.search(tail) and prompt_info.mc_options(prompt):
        return True
    if prompt_info.mc_option_texts(prompt) and not _ENDS_OUTPUT.search(tail):
        return True
    return bool(prompt_info.mc_options(prompt)) and not prompt_info.mc_option_texts(prompt)


def route(prompt: str, is_multiple_choice: bool | None = None) -> TaskType:
    """The task type of a prompt.

    Args:
        prompt: The ``input_field``.
        is_multiple_choice: The test set's flag when known; None to infer it as well.

    Returns:
        One of :data:`~harness.shopbench.types.TASK_TYPES`.
    """
    if is_multiple_choice:
        return "multiple-choice"
    if _RANKING.search(prompt):
        return "ranking"
    if is_multiple_choice is None and _looks_multiple_choice(prompt):
        return "multiple-choice"
    if _NER.search(prompt):
        return "named_entity_recognition"
    if (
        len(prompt_info.candidate_indices(prompt)) >= 2
        and not _ANSWER_STARTED.search(_tail(prompt))
        and (prompt_info.retrieval_k(prompt) is not None or _RETRIEVAL_ASK.search(prompt))
    ):
        return "retrieval"
    return "generation"


def is_keyphrase_extraction(prompt: str) -> bool:
    """Whether a prompt asks to extract a keyphrase (the review keyphrase-extraction task).

    Args:
        prompt: The ``input_field``.

    Returns:
        True when the prompt asks to "extract the keyphrase".
    """
    return bool(_KEYPHRASE.search(prompt))
