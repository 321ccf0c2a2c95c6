"""Per-row scoring of Shopping MMLU with the semantics of its two official evaluators.

``skill_*`` functions follow the skill-wise evaluator (``skill_wise_eval/metrics.py``, used by
``skill_evaluation.py``); ``task_*`` functions follow the task-wise scripts
(``task_wise_eval/hf_*.py``); the rest is shared by both. Each function returns the value the
official code computes, with the same Python/NumPy types (they decide how the task means
are accumulated), and raises where the official code raises; the caller turns a raise into a
NaN task score with a warning.

Where the two evaluators differ from each other (and from the KDD Cup starter kit that
:mod:`harness.shopbench.metrics` follows):

* Multiple choice. Skill-wise: the first character after stripping *spaces only* must equal
  ``str(answer)`` (``"\\n1"`` scores 0). Task-wise: the first numeric character anywhere in
  the output (the first alphanumeric one with letter choices), else the whole output, must
  equal the label.
* Retrieval. Both strip the output, split on commas, keep what ``int()`` accepts, take the
  first three and score ``|truth & found| / len(truth)``. Task-wise splits the first line
  only; skill-wise computes the first line but then splits the whole text.
* Ranking. Neither de-duplicates (``"1,1,1"`` can score NDCG > 1). Skill-wise truncates the
  list to the number of candidates; task-wise does not. Index ``k`` reads weight ``k - 1``
  with Python indexing (0 reads the last weight; a negative index past the start raises),
  an index past the end has relevance 0. An all-zero truth gives 0/0: NaN.
* Entities: the first line after leading newlines, comma-split, empty pieces dropped before
  lower-casing and stripping spaces; micro F1 over the task's summed counts with no guard
  on precision or recall (a task that predicts no entity raises ZeroDivisionError).
* Embedding similarity: float32 cosine (of the embeddings the model returns), the mean over
  several references; skill-wise returns 0 unless the score is > 0 (NaN included),
  task-wise returns it as is (negative or NaN).
* ROUGE-L and BLEU are the same in both (BLEU: the first line of the output, lowercase,
  sacrebleu ``13a`` or ``ja-mecab``); the official code builds a new scorer per row, which
  changes no value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from harness.shopbench import metrics

Encode = Callable[[str], Any]
Counts = tuple[int, int, int]


def _ints(pieces: Iterable[str]) -> list[int]:
    """The pieces ``int()`` accepts (surrounding whitespace, signs, ``_``, any Unicode digit)."""
    out = []
    for piece in pieces:
        try:
            out.append(int(piece))
        except ValueError:
            continue
    return out


# --------------------------------------------------------------------------- multiple choice


def skill_choice(generation: str, truth: str) -> tuple[str, int]:
    """Skill-wise accuracy: (first character after stripping spaces, 1 if it is ``truth``)."""
    text = generation.strip(" ")
    if text == "":
        return "", 0
    return text[0], int(text[0] == truth)


def task_choice(generation: str, label: str, letters: bool = False) -> tuple[str, int]:
    """Task-wise accuracy: (the answer read, 1 if it equals ``label``).

    The answer is the first numeric character (``str.isnumeric``; alphanumeric with letter
    choices) of the output, or the whole output when there is none.
    """
    wanted = str.isalnum if letters else str.isnumeric
    answer = next((c for c in generation if wanted(c)), generation)
    return answer, int(answer == label)


# --------------------------------------------------------------------------- retrieval


def _hit(found: list[int], truth: Any) -> float:
    return len(set(truth) & set(found[:3])) / len(truth)


def skill_hit_rate(generation: str, truth: Any) -> tuple[list[int], float]:
    """Skill-wise hit rate@3: the whole stripped output is comma-split, even across lines."""
    found = _ints(generation.strip().split(","))
    return found[:3], _hit(found, truth)


def task_hit_rate(generation: str, truth: Any) -> tuple[list[int], float]:
    """Task-wise hit rate@3: the first line of the stripped output is comma-split."""
    text = generation.strip()
    if "\n" in text:
        text = text.split("\n")[0]
    found = _ints(text.split(","))
    return found[:3], _hit(found, truth)


# --------------------------------------------------------------------------- ranking


def ranking_pieces(generation: str) -> list[str]:
    """The comma-separated pieces of a ranking: the first line (after trimming newlines) of a
    multi-line output, stripped."""
    text = generation
    if "\n" in text:
        text = text.strip("\n").split("\n")[0]
    return text.strip().split(",")


def ndcg(ranked: Sequence[int], weights: Any) -> Any:
    """NDCG of 1-based candidate indices against per-candidate relevance weights.

    Gain ``2 ** rel - 1`` (``np.power``), discount ``log2(position + 1)``, IDCG from the
    weights sorted in decreasing order. The official code sorts the caller's list in place
    after the DCG; a copy is sorted here, which gives the same value and keeps data that is
    scored twice unchanged.

    Raises:
        TypeError: ``weights`` is not a list (the official in-place sort fails).
        IndexError: An index below ``1 - len(weights)``.
        ZeroDivisionError: No ranked item and no weight (0 / 0 in Python ints).
    """
    if not isinstance(weights, list):
        raise TypeError(f"relevance weights must be a list, got {type(weights).__name__}")
    dcg: Any = 0
    for position, item in enumerate(ranked, start=1):
        relevance = weights[item - 1] if item - 1 < len(weights) else 0
        dcg += (np.power(2, relevance) - 1) / np.log2(position + 1)
    ideal = sorted(weights, reverse=True)
    idcg: Any = 0
    for position, relevance in enumerate(ideal, start=1):
        idcg += (np.power(2, relevance) - 1) / np.log2(position + 1)
    return dcg / idcg


def skill_ndcg(generation: str, weights: Any) -> tuple[list[int], Any]:
    """Skill-wise NDCG: the parsed list truncated to the number of candidates."""
    ranked = _ints(ranking_pieces(generation))
    if len(ranked) > len(weights):
        ranked = ranked[: len(weights)]
    return ranked, ndcg(ranked, weights)


def task_ndcg(generation: str, weights: Any) -> tuple[list[int], Any, int]:
    """Task-wise NDCG: the parsed list as is, plus the script's ill-format count (pieces
    that are not ints, a length other than the number of candidates, not a permutation)."""
    pieces = ranking_pieces(generation)
    ranked = _ints(pieces)
    ill = len(pieces) - len(ranked)
    ill += int(len(ranked) != len(weights)) if isinstance(weights, list) else 0
    ill += int(set(ranked) != set(range(1, len(ranked) + 1)))
    return ranked, ndcg(ranked, weights), ill


# --------------------------------------------------------------------------- entities


def entity_counts(generation: str, truth: Any) -> tuple[list[str], Counts]:
    """(entities read, (tp, fp, fn)) of one output.

    tp counts distinct matches; fp and fn count the remaining list items, duplicates
    included. ``truth`` items are lower-cased (a string truth is read per character, as the
    official loop over it does).
    """
    line = generation.lstrip("\n").split("\n")[0].strip(" ")
    entities = [p.lower().strip(" ") for p in line.split(",") if p != ""]
    reference = [t.lower() for t in truth]
    tp = len(set(entities) & set(reference))
    return entities, (tp, len(entities) - tp, len(reference) - tp)


def micro_f1(counts: Iterable[Counts]) -> Any:
    """F1 of the summed counts; 0 when precision + recall is 0.

    Raises:
        ZeroDivisionError: No predicted entity (precision 0/0) or no reference entity
            (recall 0/0) in the whole task; the official code has no guard.
    """
    tp = fp = fn = 0
    for a, b, c in counts:
        tp += a
        fp += b
        fn += c
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    if precision + recall == 0:
        return 0
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- generation


def _cosine(a: Any, b: Any) -> Any:
    score = (a * b).sum()
    return score / (np.linalg.norm(a, ord=2) * np.linalg.norm(b, ord=2))


def similarity(generation: str, truth: Any, encode: Encode, *, clamp: bool) -> Any:
    """Embedding cosine of the output with the reference, or the mean over a list of them.

    Args:
        generation: The output, as is.
        truth: A string, or an iterable of strings.
        encode: Text -> embedding vector.
        clamp: Skill-wise: return 0 unless the score is > 0.

    Returns:
        The score (NumPy scalar of the embedding dtype, or int 0 when clamped).
    """
    g = np.asarray(encode(generation))
    if isinstance(truth, str):
        score = _cosine(g, np.asarray(encode(truth)))
    else:
        score = np.mean([_cosine(g, np.asarray(encode(item))) for item in truth])
    if clamp:
        return score if score > 0 else 0
    return score


def rougel(generation: str, truth: Any) -> float:
    """ROUGE-L F-measure with stemming (rouge-score)."""
    return metrics.rougel(generation, truth)


def bleu(generation: str, truth: Any, japanese: bool = False) -> float:
    """sacrebleu BLEU / 100 of the output's first line, lowercase, 13a or ja-mecab.

    Raises:
        TypeError: A reference that is not a string (the official ``evaluate`` wrapper
            rejects it).
    """
    if not isinstance(truth, str):
        raise TypeError(f"a BLEU reference must be a string, got {type(truth).__name__}")
    return metrics.bleu(generation, truth, japanese=japanese)


def bleu_line(generation: str) -> str:
    """The part of the output BLEU reads."""
    return generation.lstrip("\n").rstrip("\n").split("\n")[0]
