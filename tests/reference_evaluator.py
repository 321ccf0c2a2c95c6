"""Reference evaluator for the parity test: an independent transcription of the official
Amazon KDD Cup 2024 starter kit's evaluation logic (``parsers.py`` version 0.1.1,
``metrics.py`` and ``local_evaluation.py``), written from its documented behaviour.

It shares no code with ``harness.shopbench`` and keeps the kit's way of doing things on
purpose: pandas ``read_json(lines=True)`` loading, one ``encode`` call per text, NumPy
float32 cosines, a new ROUGE scorer per row, ``np.mean`` per task and per-row metrics chosen
from each row's ``metric``. The kit's ``evaluate.load("sacrebleu")`` wrapper is replaced by
the sacrebleu call the wrapper makes (``corpus_bleu`` with exp smoothing, lowercase, no
effective order, tokenizer 13a or ja-mecab).

This is a test helper, not part of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MAX_CHARS = 5000


# --------------------------------------------------------------------------- parsers 0.1.1


def _digits_commas_spaces(text: str) -> str:
    return "".join(ch for ch in text if ch.isnumeric() or ch in (",", " "))


def parse_multichoice(text: str) -> int:
    try:
        return int(text.strip()[0])
    except Exception:
        return -1


def parse_ranking(text: str) -> list[int]:
    out = []
    for piece in _digits_commas_spaces(text).split(","):
        try:
            number = int(piece)
        except ValueError:
            continue
        if number <= 5:
            out.append(number)
    out = out[:5]
    return [] if len(out) != len(set(out)) else out


def parse_retrieval(text: str) -> list[int]:
    out = []
    for piece in _digits_commas_spaces(text).split(","):
        try:
            out.append(int(piece))
        except ValueError:
            continue
    return out[:3]


def parse_ner(text: str) -> list[str]:
    try:
        value = ast.literal_eval(text)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise SyntaxError("fall back")
    except Exception:
        return [piece.strip() for piece in text.split(",") if piece.strip() != ""]


def parse_generation(text: str) -> str:
    return text.strip()


PARSERS = {
    "multiple-choice": parse_multichoice,
    "ranking": parse_ranking,
    "retrieval": parse_retrieval,
    "named_entity_recognition": parse_ner,
    "generation": parse_generation,
}


def ref_parse(task_type: str, response: str) -> Any:
    """The kit's parse of one response."""
    assert isinstance(response, str)
    return PARSERS[task_type](response[:MAX_CHARS])


# --------------------------------------------------------------------------- metrics


def m_accuracy(pred: Any, truth: Any) -> bool:
    return pred == truth


def m_hit_rate_3(pred: list[int], truth: list[int]) -> float:
    return len(set(truth).intersection(set(pred[:3]))) / len(truth)


def m_rougel(pred: str, truth: str) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return scorer.score(pred, truth)["rougeL"].fmeasure


def m_cosine(pred: str, truth: str | list[str], model: Any) -> float:
    g = model.encode([pred])[0]
    if isinstance(truth, str):
        r = model.encode([truth])[0]
        s = np.dot(g, r) / (np.linalg.norm(g) * np.linalg.norm(r))
        return max(s, 0)
    sims = []
    for ref in truth:
        r = model.encode([ref])[0]
        sims.append(np.dot(g, r) / (np.linalg.norm(g) * np.linalg.norm(r)))
    return max(np.mean(sims), 0)


def m_tp_fp_fn(pred: list[str], truth: list[str]) -> tuple[int, int, int]:
    answers = [p.lower().strip() for p in pred]
    refs = [t.lower() for t in truth]
    tp = len(set(answers).intersection(set(refs)))
    return tp, len(answers) - tp, len(refs) - tp


def m_f1(counts: list[tuple[int, int, int]]) -> float:
    tp = sum(c[0] for c in counts)
    fp = sum(c[1] for c in counts)
    fn = sum(c[2] for c in counts)
    precision = tp / (tp + fp) if (tp + fp) > 0 else 0
    recall = tp / (tp + fn) if (tp + fn) > 0 else 0
    if precision + recall == 0:
        return 0
    return 2 * precision * recall / (precision + recall)


def m_ndcg(pred: list[int], truth: list[float]) -> float:
    if len(pred) > len(truth):
        pred = pred[: len(truth)]
    dcg, idcg = 0.0, 0.0
    for i, idx in enumerate(pred, start=1):
        rel = truth[idx - 1] if idx - 1 < len(truth) else 0
        dcg += (np.power(2, rel) - 1) / np.log2(i + 1)
    for i, w in enumerate(sorted(truth, reverse=True), start=1):
        idcg += (np.power(2, w) - 1) / np.log2(i + 1)
    return 0 if idcg == 0 else dcg / idcg


def m_bleu(pred: str, truth: str, japanese: bool = False) -> float:
    import sacrebleu

    line = pred.lstrip("\n").rstrip("\n").split("\n")[0]
    result = sacrebleu.corpus_bleu(
        [line],
        [[truth]],
        smooth_method="exp",
        smooth_value=None,
        force=False,
        lowercase=True,
        tokenize="ja-mecab" if japanese else "13a",
        use_effective_order=False,
    )
    return result.score / 100


# --------------------------------------------------------------------------- local_evaluation

_MODEL_CACHE: dict[str, Any] = {}


def ref_evaluate(
    data_path: str | Path, outputs: list[str], sentence_model_paths: dict[str, str]
) -> tuple[dict[str, float], list[Any]]:
    """Task scores and per-row metric values, computed the kit's way.

    Args:
        data_path: Development-format JSONL.
        outputs: Raw responses, one per row.
        sentence_model_paths: Model name -> local directory (the kit downloads by name).

    Returns:
        (task name -> score, per-row metric values).
    """
    from sentence_transformers import SentenceTransformer

    df = pd.read_json(data_path, lines=True)

    def model(name: str) -> Any:
        # Loaded once per process, like the kit's model cache.
        path = sentence_model_paths[name]
        if path not in _MODEL_CACHE:
            _MODEL_CACHE[path] = SentenceTransformer(path, device="cpu")
        return _MODEL_CACHE[path]

    methods = {
        "accuracy": m_accuracy,
        "hit rate@3": m_hit_rate_3,
        "rougel": m_rougel,
        "sent-transformer": lambda g, t: m_cosine(g, t, model("all-MiniLM-L6-v2")),
        "multilingual-sent-transformer": lambda g, t: m_cosine(
            g, t, model("paraphrase-multilingual-MiniLM-L12-v2")
        ),
        "micro f1": m_tp_fp_fn,
        "ndcg": m_ndcg,
        "bleu": m_bleu,
        "jp-bleu": lambda g, t: m_bleu(g, t, japanese=True),
    }
    per_task: dict[str, dict[str, Any]] = {}
    row_values: list[Any] = []
    for i, row in df.iterrows():
        metric = row["metric"]
        if metric not in methods:
            raise NotImplementedError(metric)
        parsed = ref_parse(row["task_type"], outputs[i])
        value = methods[metric](parsed, row["output_field"])
        row_values.append(value)
        per_task.setdefault(row["task_name"], {"metric": metric, "scores": []})
        per_task[row["task_name"]]["scores"].append(value)
    out = {}
    for name, info in per_task.items():
        if info["metric"] != "micro f1":
            out[name] = float(np.mean(info["scores"]))
        else:
            out[name] = float(m_f1(info["scores"]))
    return out, row_values
