"""Reference evaluator for the Shopping MMLU parity tests: an independent, deliberately plain
re-expression of the benchmark's official evaluation logic (KL4805/ShoppingMMLU,
``skill_wise_eval/metrics.py`` + ``skill_evaluation.py`` and ``task_wise_eval/hf_*.py`` +
``utils.py``), statement by statement, written without looking at ``harness.shopbench.mmlu``.

It keeps the official way of doing things on purpose: pandas ``read_csv`` / ``read_json(
lines=True)`` and positional ``iloc`` access, a new ROUGE scorer per row, one ``encode`` call
per text, NumPy float32 cosines, in-place sorting of the ranking weights, running totals in
the task-wise scripts and ``np.mean`` in the skill-wise one, no guards where the official code
has none. Two substitutions: the ``evaluate`` sacrebleu wrapper is replaced by the
``sacrebleu.corpus_bleu`` call it makes (after its string-type check), and the choices column
is read with ``ast.literal_eval`` instead of ``eval``. Model outputs are passed as a list
instead of being read back from a JSON file. Where the official code raises, these functions
raise too.

This is a test helper, not part of the package.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------- fake embeddings


class FakeSentenceModel:
    """A deterministic stand-in for a SentenceTransformer: a signed, hashed bag of words,
    float32. The empty text maps to the zero vector."""

    def __init__(self, salt: str, dim: int = 48) -> None:
        self.salt = salt
        self.dim = dim

    def vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for token in re.findall(r"\w+", text.lower()):
            h = hashlib.sha256((self.salt + token).encode("utf-8")).digest()
            sign = 1.0 if h[4] % 2 == 0 else -1.0
            v[int.from_bytes(h[:4], "little") % self.dim] += sign * (1 + h[5] % 3)
        return v

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        return np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, self.dim))


# --------------------------------------------------------------------------- skill-wise metrics


def sw_accuracy(generation: str, truth: str) -> int:
    generation = generation.lstrip(" ").rstrip(" ")
    if generation == "":
        return 0
    if generation[0] == truth:
        return 1
    return 0


def sw_hit_rate(generation: str, truth: Any) -> float:
    generation = generation.lstrip().rstrip()
    if "\n" not in generation:
        pieces = generation.split(",")
    else:
        first_line = generation.split("\n")[0]  # computed, then not used
        del first_line
        pieces = generation.split(",")
    numbers = []
    for piece in pieces:
        try:
            numbers.append(int(piece))
        except Exception:
            continue
    if len(numbers) > 3:
        numbers = numbers[:3]
    hit = len(set(truth).intersection(set(numbers)))
    hit /= len(truth)
    return hit


def sw_rougel(generation: str, truth: Any) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return scorer.score(generation, truth)["rougeL"].fmeasure


def _cos(model: Any, a: str, b: str) -> Any:
    ea = model.encode([a])[0]
    eb = model.encode([b])[0]
    s = (ea * eb).sum()
    s /= np.linalg.norm(ea, ord=2) * np.linalg.norm(eb, ord=2)
    return s


def sw_sent_transformer(generation: str, truth: Any, model: Any) -> Any:
    if isinstance(truth, str):
        score = _cos(model, generation, truth)
        if score > 0:
            return score
        return 0
    scores = [_cos(model, generation, item) for item in truth]
    if np.mean(scores) > 0:
        return np.mean(scores)
    return 0


def sw_tp_fp_fn(generation: str, truth: Any) -> tuple[int, int, int]:
    generation = generation.lstrip("\n")
    generation = generation.split("\n")[0].lstrip(" ").rstrip(" ")
    pieces = generation.split(",")
    answer = [a for a in pieces if a != ""]
    answer_lower = [a.lower().lstrip(" ").rstrip(" ") for a in answer]
    truth_lower = [t.lower() for t in truth]
    tp = len(set(answer_lower).intersection(set(truth_lower)))
    return tp, len(answer_lower) - tp, len(truth_lower) - tp


def sw_f1(counts: list[tuple[int, int, int]]) -> Any:
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


def ref_ndcg(ranked: list[int], weight: Any) -> Any:
    """The official NDCG, in-place sort of ``weight`` included."""
    idcg = 0
    dcg = 0
    for i in range(len(ranked)):
        if ranked[i] - 1 < len(weight):  # noqa: SIM108 (kept as the official branches)
            rel = weight[ranked[i] - 1]
        else:
            rel = 0
        dcg += (np.power(2, rel) - 1) / np.log2(i + 2)
    weight.sort(reverse=True)
    for i in range(len(weight)):
        idcg += (np.power(2, weight[i]) - 1) / np.log2(i + 2)
    return dcg / idcg


def _ranking_numbers(generation: str) -> tuple[list[str], list[int]]:
    if "\n" in generation:
        generation = generation.lstrip("\n").rstrip("\n")
        generation = generation.split("\n")[0]
    pieces = generation.lstrip().rstrip().split(",")
    ranked = []
    for x in pieces:
        try:
            ranked.append(int(x))
        except Exception:
            continue
    return pieces, ranked


def sw_ndcg(generation: str, truth: Any) -> Any:
    _, ranked = _ranking_numbers(generation)
    if len(ranked) > len(truth):
        ranked = ranked[: len(truth)]
    return ref_ndcg(ranked, truth)


def ref_bleu(generation: str, truth: Any, jp: bool = False) -> float:
    import sacrebleu

    if not isinstance(truth, str):
        raise TypeError("the evaluate wrapper only takes string references")
    generation = generation.lstrip("\n").rstrip("\n").split("\n")[0]
    result = sacrebleu.corpus_bleu(
        [generation],
        [[truth]],
        smooth_method="exp",
        smooth_value=None,
        force=False,
        lowercase=True,
        tokenize="ja-mecab" if jp else "13a",
        use_effective_order=False,
    )
    return result.score / 100


# --------------------------------------------------------------------------- skill evaluation


def skill_evaluation(
    data_path: str | Path, outputs: list[str], models: dict[str, Any]
) -> dict[str, Any]:
    """The skill-wise evaluation of one skill file.

    Args:
        data_path: ``skills/<skill>.json``.
        outputs: Model outputs, one per row.
        models: ``{"sent-transformer": model, "multilingual-sent-transformer": model}``.

    Returns:
        ``{"tasks": {task: score}, "rows": [row value or None], "track_wise": score}``.

    Raises:
        Whatever the official script raises.
    """
    data_df = pd.read_json(data_path, lines=True)
    assert data_df.shape[0] == len(outputs)
    per_task: dict[str, dict[str, Any]] = {}
    rows: list[Any] = []
    for i in range(data_df.shape[0]):
        task_name = data_df.iloc[i]["task_name"]
        generation = outputs[i]
        truth = data_df.iloc[i]["output_field"]
        metric = data_df.iloc[i]["metric"]
        if task_name not in per_task:
            per_task[task_name] = {"metric": metric, "sample_score": []}
        value: Any = None
        if metric == "accuracy":
            value = sw_accuracy(generation, str(truth))
        elif metric == "hit rate@3":
            value = sw_hit_rate(generation, truth)
        elif metric == "rougel":
            value = sw_rougel(generation, truth)
        elif metric == "sent-transformer":
            value = sw_sent_transformer(generation, truth, models["sent-transformer"])
        elif metric == "multilingual-sent-transformer":
            value = sw_sent_transformer(generation, truth, models["multilingual-sent-transformer"])
        elif metric == "micro f1":
            value = sw_tp_fp_fn(generation, truth)
        elif metric == "ndcg":
            value = sw_ndcg(generation, truth)
        elif metric == "bleu":
            value = ref_bleu(generation, truth)
        elif metric == "jp-bleu":
            value = ref_bleu(generation, truth, jp=True)
        if value is not None:
            per_task[task_name]["sample_score"].append(value)
        rows.append(value)
    tasks: dict[str, Any] = {}
    for name, info in per_task.items():
        if info["metric"] != "micro f1":
            tasks[name] = np.mean(info["sample_score"])
        else:
            tasks[name] = sw_f1(info["sample_score"])
    track_wise = np.mean(list(tasks.values()))
    return {"tasks": tasks, "rows": rows, "track_wise": track_wise}


# --------------------------------------------------------------------------- task-wise scripts


def _is_permutation(arr: list[int]) -> bool:
    return set(arr) == set(range(1, len(arr) + 1))


def tw_multiple_choice(
    path: str | Path, subject: str, outputs: list[str], letters: bool = False
) -> tuple[float, list[int], int]:
    """(accuracy, per-row correct, ill-format count) of ``hf_multi_choice.py``."""
    if letters:
        choices = ["A", "B", "C", "D"]
    elif "review_rating_prediction" not in subject:
        choices = ["0", "1", "2", "3"]
    else:
        choices = ["1", "2", "3", "4", "5"]
    df = pd.read_csv(path)
    correct = 0
    ill = 0
    rows = []
    n = df.shape[0]
    for i in range(n):
        label = df.iloc[i, -1]
        if "review_rating_prediction" not in subject:
            label = choices[int(label)]
        answer = outputs[i]
        for k in answer:
            if k.isalnum() if letters else k.isnumeric():
                answer = k
                break
        if answer == str(label):
            correct += 1
            rows.append(1)
        else:
            rows.append(0)
            if answer not in choices:
                ill += 1
    return correct / n, rows, ill


def tw_retrieval(path: str | Path, outputs: list[str]) -> tuple[float, list[float]]:
    """(average hit rate, per-row hits) of ``hf_retrieval.py``."""
    df = pd.read_json(path, lines=True)
    n = df.shape[0]
    total = 0
    rows = []
    for i in range(n):
        truth = df.iloc[i, -1]
        text = outputs[i].lstrip().rstrip()
        if "\n" not in text:  # noqa: SIM108 (kept as the official branches)
            pieces = text.split(",")
        else:
            pieces = text.split("\n")[0].split(",")
        numbers = []
        for piece in pieces:
            try:
                numbers.append(int(piece))
            except Exception:
                continue
        if len(numbers) > 3:
            numbers = numbers[:3]
        hit = len(set(truth).intersection(set(numbers)))
        hit /= len(truth)
        total += hit
        rows.append(hit)
    return total / n, rows


def tw_ranking(path: str | Path, outputs: list[str]) -> tuple[Any, list[Any], int]:
    """(average NDCG, per-row NDCG, ill-format count) of ``hf_ranking.py``."""
    df = pd.read_json(path, lines=True)
    n = df.shape[0]
    total = 0
    ill = 0
    rows = []
    for i in range(n):
        weight = df.iloc[i, -1]
        pieces, ranked = _ranking_numbers(outputs[i])
        ill += len(pieces) - len(ranked)
        if len(ranked) != len(weight):
            ill += 1
        if not _is_permutation(ranked):
            ill += 1
        value = ref_ndcg(ranked, weight)
        total += value
        rows.append(value)
    return total / n, rows, ill


def tw_ner(path: str | Path, outputs: list[str]) -> tuple[Any, list[tuple[int, int, int]]]:
    """(micro F1, per-row counts) of ``hf_ner.py``."""
    df = pd.read_json(path, lines=True)
    tp = fp = fn = 0
    rows = []
    for i in range(df.shape[0]):
        label = df.iloc[i, -1]
        label_lower = [x.lower() for x in label]
        answer = outputs[i].lstrip("\n")
        answer = answer.split("\n")[0].lstrip(" ").rstrip(" ")
        parts = [a for a in answer.split(",") if a != ""]
        lowered = [a.lower().lstrip(" ").rstrip(" ") for a in parts]
        common = len(set(lowered).intersection(set(label_lower)))
        tp += common
        fp += len(lowered) - common
        fn += len(label_lower) - common
        rows.append((common, len(lowered) - common, len(label_lower) - common))
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall != 0 else 0
    return f1, rows


def tw_generation(
    path: str | Path, subject: str, outputs: list[str], models: dict[str, Any]
) -> tuple[Any, list[Any]]:
    """(average score, per-row scores) of ``hf_generation.py``."""
    if "extraction" in subject:
        metric = "rougel"
    elif "translation" in subject:
        metric = "bleu"
    elif "multilingual" in subject:
        metric = "multilingual-sent-transformer"
    else:
        metric = "sent-transformer"
    df = pd.read_json(path, lines=True)
    n = df.shape[0]
    total = 0
    rows = []
    for i in range(n):
        label = df.iloc[i, -1]
        generation = outputs[i]
        if metric == "rougel":
            current = sw_rougel(generation, label)
        elif metric == "bleu":
            current = ref_bleu(generation, label, jp="JP" in subject)
        else:
            model = models[metric]
            if isinstance(label, str):
                current = _cos(model, generation, label)
            else:
                current = np.mean([_cos(model, generation, item) for item in label])
        total += current
        rows.append(current)
    return total / n, rows


# --------------------------------------------------------------------------- prompts

SYSTEM = (
    "You are a helpful online shopping assistant. Please answer the following question about "
    "online shopping and follow the given instructions.\n\n"
)


def _subject(subject: str) -> str:
    s = ""
    for entry in subject.split("_"):
        if entry == "pt":
            entry = "product type"
        s += " " + entry
    return s


def tw_prompt(
    path: str | Path,
    folder: str,
    subject: str,
    i: int,
    task_specific: bool = False,
    letters: bool = False,
) -> str:
    """The prompt of row ``i`` as the task-wise scripts build it."""
    if folder != "multiple_choice":
        df = pd.read_json(path, lines=True)
        if task_specific:
            head = (
                f"You are required to perform the task of {_subject(subject)}. "
                "Please follow the given instructions.\n\n"
            )
        else:
            head = SYSTEM
        return head + df.iloc[i, 0]
    df = pd.read_csv(path)
    if task_specific:
        if subject != "review_rating_prediction":
            head = f"The following is a multiple choice question about {_subject(subject)}.\n\n"
        else:
            head = "The following is a review rating prediction question.\n\n"
    else:
        head = SYSTEM
    prompt = df.iloc[i, 0]
    if "review_rating_prediction" not in subject:
        candidates = ast.literal_eval(df.iloc[i, 1])
        for j in range(4):
            if letters:
                prompt += "\n({}) {}".format("ABCD"[j], candidates[j])
            else:
                prompt += f"\n{j}. {candidates[j]}"
    if letters:
        prompt += "\n\nPlease answer the question with a single letter indicating the choice. "
    prompt += "\nAnswer: "
    return head + prompt
