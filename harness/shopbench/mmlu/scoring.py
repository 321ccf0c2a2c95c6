"""Scoring profiles for Shopping MMLU: per-row scores, task scores, skill scores, leaderboard.

Two profiles reproduce the two official evaluators:

``shopping-mmlu-skill`` (``skill_evaluation.py``)
    Rows use the skill-wise semantics of :mod:`harness.shopbench.mmlu.official`, each with its
    own ``metric``. A task's score is ``np.mean`` of its row values (micro F1: F1 of the summed
    counts), with the aggregation chosen by the task's first row; rows whose metric the
    evaluator does not know get no value (a task with none has mean NaN). A skill's score
    is ``np.mean`` of its task scores in order of first appearance.

``shopping-mmlu-task`` (``task_wise_eval/hf_*.py``)
    Rows use the task-wise semantics; a task's score is the running total of its row values
    divided by the number of rows (micro F1 from the summed counts). The official scripts
    score one task at a time; a skill's score here is the mean of its tasks' scores, as in
    the skill-wise evaluator.

Either profile scores a task file (metric from its folder and name, see
:attr:`TaskData.metric`) or a skill file (metric per row). Multiple-choice references: the
skill-wise evaluator compares with ``str(answer)``; the task-wise script with the answer's
choice label (``"0"``-``"3"``, or ``"A"``-``"D"`` with letter choices) except for review
rating, whose answer is the rating itself. A skill file's answer is compared as
``str(answer)`` in both profiles.

Where the official code raises, or computes NaN, the task's score is NaN and a warning names
the rows and the cause; scoring itself never raises on any prediction text. Embedding
metrics call ``embed`` (texts -> vectors); by default the model the official code names
(``all-MiniLM-L6-v2``, ``paraphrase-multilingual-MiniLM-L12-v2``) is loaded offline with
sentence-transformers and encodes one text per call, as the official code does.

The leaderboard has the four skill columns of the Shopping MMLU leaderboard; a skill file
``skill<N>_...`` fills column N. ``Overall`` is their plain mean (the official code
computes no cross-skill score).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.jsonl import json_type
from harness.shopbench import metrics
from harness.shopbench.errors import ScoringError, UnknownNameError
from harness.shopbench.mmlu import official
from harness.shopbench.mmlu.data import (
    LETTER_CHOICES,
    NUMBER_CHOICES,
    RATING_CHOICES,
    Benchmark,
    TaskData,
    TaskRow,
)

SKILL_PROFILE = "shopping-mmlu-skill"
TASK_PROFILE = "shopping-mmlu-task"
PROFILES = (SKILL_PROFILE, TASK_PROFILE)

SENTENCE_MODEL_FOR_METRIC = dict(metrics.SENTENCE_MODEL_FOR_METRIC)

LEADERBOARD_COLUMNS = (
    "Shopping Concept Understanding",
    "Shopping Knowledge Reasoning",
    "User Behavior Alignment",
    "Multi-lingual Abilities",
)
OVERALL_COLUMN = "Overall"
_SKILL_KEYWORDS = (
    ("concept",),
    ("knowledge", "reasoning"),
    ("behavior", "behaviour"),
    ("lingual",),
)

Embedder = Callable[[Sequence[str]], Sequence[Any]]
EmbedArg = Embedder | Mapping[str, Embedder] | None

# How many rows a warning names before it only counts them.
_NAMED_ROWS = 3


# --------------------------------------------------------------------------- embeddings


def sentence_embedder(
    model: str, sentence_models: Mapping[str, str] | None = None, *, per_text: bool = True
) -> Embedder:
    """An embedding function backed by a local sentence-transformers model.

    Args:
        model: Model name (``all-MiniLM-L6-v2``...), resolved offline by
            :func:`harness.shopbench.metrics.resolve_sentence_model`.
        sentence_models: Local model paths (name -> directory).
        per_text: Encode one text per call, as the official code does (padding in a batch
            moves float32 results in the last bits); False encodes in batches.

    Returns:
        texts -> float32 vectors.

    Raises:
        SentenceModelNotFoundError: The model is not available offline.
    """
    loaded = metrics.load_sentence_model(model, sentence_models)

    def embed(texts: Sequence[str]) -> Sequence[Any]:
        if not per_text:
            return list(loaded.encode(list(texts), show_progress_bar=False))
        return [loaded.encode([t], show_progress_bar=False)[0] for t in texts]

    return embed


class _Encoders:
    """Resolves an embedder per metric and memoises each text's vector per model."""

    def __init__(self, embed: EmbedArg, sentence_models: Mapping[str, str] | None) -> None:
        self.embed = embed
        self.sentence_models = sentence_models
        self.resolved: dict[str, Embedder] = {}
        self.vectors: dict[str, dict[str, Any]] = {}

    def _embedder(self, metric: str) -> Embedder:
        model = SENTENCE_MODEL_FOR_METRIC[metric]
        if model not in self.resolved:
            if callable(self.embed):
                self.resolved[model] = self.embed
            elif self.embed is not None and (metric in self.embed or model in self.embed):
                self.resolved[model] = self.embed.get(metric) or self.embed[model]
            else:
                self.resolved[model] = sentence_embedder(model, self.sentence_models)
        return self.resolved[model]

    def prepare(self, metric: str, texts: Iterable[str]) -> None:
        model = SENTENCE_MODEL_FOR_METRIC[metric]
        cache = self.vectors.setdefault(model, {})
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if not todo:
            return
        vectors = list(self._embedder(metric)(todo))
        if len(vectors) != len(todo):
            raise ScoringError(
                f"the {model} embedder returned {len(vectors)} vectors for {len(todo)} texts"
            )
        cache.update(zip(todo, vectors, strict=True))

    def encoder(self, metric: str) -> official.Encode:
        cache = self.vectors.get(SENTENCE_MODEL_FOR_METRIC[metric], {})

        def encode(text: Any) -> Any:
            if not isinstance(text, str):
                raise TypeError(f"cannot embed a {type(text).__name__} reference")
            return cache[text]

        return encode


def _texts(truth: Any) -> list[str]:
    if isinstance(truth, str):
        return [truth]
    try:
        return [t for t in truth if isinstance(t, str)]
    except TypeError:
        return []


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class _Item:
    """A row to score: its task key, metric, and whether it comes from a task file (whose
    multiple-choice answers the task-wise script maps to choice labels)."""

    row: TaskRow
    task: str
    metric: str
    task_file: bool


@dataclass
class _Outcome:
    parsed: Any = None
    value: Any = None
    ill: int = 0
    error: str | None = None
    scored: bool = True


class _RowScorer:
    def __init__(self, profile: str, encoders: _Encoders, letters: bool, review: bool) -> None:
        self.skill = profile == SKILL_PROFILE
        self.encoders = encoders
        self.letters = letters
        self.review = review

    def _choice(self, item: _Item, generation: str) -> _Outcome:
        if self.skill:
            answer, ok = official.skill_choice(generation, str(item.row.target))
            return _Outcome(answer, ok)
        letters = self.letters and item.task_file
        if letters:
            labels = LETTER_CHOICES
        elif self.review:
            labels = RATING_CHOICES
        else:
            labels = NUMBER_CHOICES
        if item.task_file and not self.review:
            label = labels[int(item.row.target)]
        else:
            label = str(item.row.target)
        answer, ok = official.task_choice(generation, label, letters)
        return _Outcome(answer, ok, ill=int(not ok and answer not in labels))

    def score(self, item: _Item, generation: str) -> _Outcome:
        m, truth = item.metric, item.row.target
        if m == "accuracy":
            return self._choice(item, generation)
        if m == "hit rate@3":
            fn = official.skill_hit_rate if self.skill else official.task_hit_rate
            return _Outcome(*fn(generation, truth))
        if m == "ndcg":
            if self.skill:
                return _Outcome(*official.skill_ndcg(generation, truth))
            return _Outcome(*official.task_ndcg(generation, truth))
        if m == "micro f1":
            return _Outcome(*official.entity_counts(generation, truth))
        if m == "rougel":
            return _Outcome(None, official.rougel(generation, truth))
        if m in ("bleu", "jp-bleu"):
            value = official.bleu(generation, truth, japanese=m == "jp-bleu")
            return _Outcome(official.bleu_line(generation), value)
        if m in SENTENCE_MODEL_FOR_METRIC:
            encode = self.encoders.encoder(m)
            return _Outcome(None, official.similarity(generation, truth, encode, clamp=self.skill))
        return _Outcome(scored=False)


def _call(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """fn() with NumPy's floating-point warnings silenced; (value, None) or (None, error)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return fn(), None
        except Exception as e:
            return None, e


def _describe(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _where(item: _Item) -> str:
    return f"row {item.row.index} (line {item.row.line})"


def _nan_cause(item: _Item) -> str:
    truth = item.row.target
    if item.metric == "ndcg":
        if isinstance(truth, list) and truth and all(w == 0 for w in truth):
            return "NDCG is 0/0: every relevance weight is zero"
        return "NDCG is not finite (IDCG is zero)"
    if item.metric in SENTENCE_MODEL_FOR_METRIC:
        if not isinstance(truth, str) and not _texts(truth):
            return "the mean similarity over an empty reference list is NaN"
        return "the cosine is 0/0 (a zero-norm embedding)"
    return "the row value is not finite"


def _row_json(item: _Item, out: _Outcome, skill_rows: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"index": item.row.index, "line": item.row.line}
    if skill_rows:
        row["task_name"] = item.task
    row["metric"] = item.metric
    if item.metric == "micro f1" and out.error is None and out.scored:
        row["score"] = None
        row["tp"], row["fp"], row["fn"] = (int(c) for c in out.value)
    elif out.error is not None:
        row["score"] = math.nan
    elif not out.scored:
        row["score"] = None
    else:
        row["score"] = float(out.value)
    row["parsed"] = out.parsed
    row["error"] = out.error
    return row


# --------------------------------------------------------------------------- tasks


def _aggregate(profile: str, metric: str, values: list[Any]) -> Any:
    if metric == "micro f1":
        return official.micro_f1(values)
    if profile == SKILL_PROFILE:
        return np.mean(values)
    total: Any = 0
    for v in values:
        total += v
    return total / len(values)


def _summarise(task: str, where: list[str], what: str) -> str:
    named = ", ".join(where[:_NAMED_ROWS])
    more = f" and {len(where) - _NAMED_ROWS} more" if len(where) > _NAMED_ROWS else ""
    return f"{task}: {len(where)} row(s) {what} ({named}{more})"


def _aggregate_cause(metric: str, e: BaseException) -> str:
    if metric == "micro f1" and isinstance(e, ZeroDivisionError):
        return "micro F1 divides by zero: the task has no predicted entity or no reference entity"
    if isinstance(e, ZeroDivisionError):
        return "the task has no scored row (a mean over zero rows)"
    return _describe(e)


def _score_items(
    name: str,
    items: list[_Item],
    predictions: Sequence[str],
    profile: str,
    scorer: _RowScorer,
    skill_rows: bool,
    metric: str | None = None,
) -> tuple[dict[str, Any], Any]:
    """Score one task's rows: (result dict, raw official task value or None when NaN).

    The task's metric (which picks the aggregation) is its first row's unless given.
    """
    metric = metric or (items[0].metric if items else "")
    outcomes = []
    for item in items:
        generation = predictions[item.row.index]
        value, err = _call(lambda item=item, g=generation: scorer.score(item, g))
        outcomes.append(_Outcome(error=_describe(err)) if err is not None else value)
    warns: list[str] = []
    raised = [f"{_where(i)}: {o.error}" for i, o in zip(items, outcomes, strict=True) if o.error]
    unscored = [_where(i) for i, o in zip(items, outcomes, strict=True) if not o.scored]
    nonfinite = [
        f"{_where(i)}: {_nan_cause(i)}"
        for i, o in zip(items, outcomes, strict=True)
        if o.error is None and o.scored and i.metric != "micro f1" and not np.isfinite(o.value)
    ]
    if raised:
        warns.append(
            _summarise(name, raised, "raise in the official scorer; the task score is NaN")
        )
    if unscored:
        kinds = sorted({i.metric for i, o in zip(items, outcomes, strict=True) if not o.scored})
        what = "have a metric the official evaluator does not score"
        warns.append(_summarise(name, unscored, f"{what} ({', '.join(map(repr, kinds))})"))
    if nonfinite:
        warns.append(
            _summarise(name, nonfinite, "have a non-finite value; the task score follows it")
        )
    raw: Any = None
    score = math.nan
    if not raised:
        values = [o.value for o in outcomes if o.scored]
        raw, err = _call(lambda: _aggregate(profile, metric, values))
        if err is not None:
            raw = None
            warns.append(f"{name}: {_aggregate_cause(metric, err)}; the task score is NaN")
        else:
            score = float(raw)
            if not values:
                warns.append(f"{name}: no row has a value; the task score is NaN")
            elif not math.isfinite(score) and not nonfinite:
                warns.append(f"{name}: the task score is {score}")
    result: dict[str, Any] = {
        "task": name,
        "metric": metric,
        "profile": profile,
        "n": len(items),
        "score": score,
        "ill_format": sum(o.ill for o in outcomes) if profile == TASK_PROFILE else None,
        "rows": [_row_json(i, o, skill_rows) for i, o in zip(items, outcomes, strict=True)],
        "warnings": warns,
    }
    return result, raw


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise UnknownNameError(
            f"unknown profile {profile!r} (expected one of {', '.join(PROFILES)})"
        )


def _check_predictions(data: TaskData, predictions: Sequence[str]) -> None:
    if isinstance(predictions, str) or not isinstance(predictions, Sequence):
        raise ScoringError(f"{data.source}: predictions must be a list of strings")
    if len(predictions) != len(data.rows):
        raise ScoringError(
            f"{data.source}: {len(predictions)} predictions for {len(data.rows)} rows"
        )
    for i, p in enumerate(predictions):
        if not isinstance(p, str):
            raise ScoringError(f"{data.source}: prediction {i} is {json_type(p)}, not a string")


def _prepare_embeddings(
    items: list[_Item], predictions: Sequence[str], encoders: _Encoders
) -> None:
    by_metric: dict[str, list[str]] = {}
    for item in items:
        if item.metric in SENTENCE_MODEL_FOR_METRIC:
            texts = by_metric.setdefault(item.metric, [])
            texts.append(predictions[item.row.index])
            texts.extend(_texts(item.row.target))
    for metric, texts in by_metric.items():
        encoders.prepare(metric, texts)


def _skipped_warning(data: TaskData) -> list[str]:
    if not data.skipped:
        return []
    lines = ", ".join(str(s.line) for s in data.skipped[:_NAMED_ROWS])
    more = f" and {len(data.skipped) - _NAMED_ROWS} more" if len(data.skipped) > _NAMED_ROWS else ""
    return [
        f"{data.name}: {len(data.skipped)} malformed row(s) were skipped at load (line {lines}{more})"
    ]


def score_task(
    task: TaskData,
    predictions: Sequence[str],
    profile: str = TASK_PROFILE,
    *,
    embed: EmbedArg = None,
    sentence_models: Mapping[str, str] | None = None,
    letter_choices: bool = False,
    _encoders: _Encoders | None = None,
) -> dict[str, Any]:
    """Score one task file.

    Args:
        task: A task file (not a skill file; see :func:`score_skill`).
        predictions: Raw model outputs, one per row, in row order.
        profile: ``shopping-mmlu-task`` or ``shopping-mmlu-skill``.
        embed: Embedding function (texts -> vectors) for the similarity metrics, or a
            mapping from metric or model name to one; None loads the official models.
        sentence_models: Local model paths for the default embedders.
        letter_choices: Task-wise multiple choice answered with letters A-D.

    Returns:
        ``{"task", "task_type", "metric", "profile", "n", "score", "ill_format", "rows",
        "warnings", "skipped"}``: ``score`` is a float (NaN where the official code raises
        or gives NaN); ``ill_format`` is the task-wise scripts' count (None for the skill
        profile); each row is ``{"index", "line", "metric", "score", "parsed", "error"}``
        (micro F1 rows: ``score`` None and ``tp``, ``fp``, ``fn``).

    Raises:
        UnknownNameError: Unknown profile.
        ScoringError: A skill file, or predictions that are not one string per row.
        SentenceModelNotFoundError: A default embedding model is not available offline.
    """
    _check_profile(profile)
    if task.is_skill:
        raise ScoringError(f"{task.source}: a skill file; score it with score_skill")
    _check_predictions(task, predictions)
    metric = task.metric or ""
    items = [_Item(r, task.name, metric, True) for r in task.rows]
    encoders = _encoders or _Encoders(embed, sentence_models)
    _prepare_embeddings(items, predictions, encoders)
    scorer = _RowScorer(profile, encoders, letter_choices, task.is_review_rating)
    result, _ = _score_items(task.name, items, predictions, profile, scorer, False, metric)
    result["warnings"] = _skipped_warning(task) + result["warnings"]
    if not items:
        result["warnings"].append(f"{task.name}: the file has no rows; the task score is NaN")
    return {"task": task.name, "task_type": task.folder, **result, "skipped": len(task.skipped)}


def score_skill(
    skill: TaskData,
    predictions: Sequence[str],
    profile: str = SKILL_PROFILE,
    *,
    embed: EmbedArg = None,
    sentence_models: Mapping[str, str] | None = None,
    _encoders: _Encoders | None = None,
) -> dict[str, Any]:
    """Score one skill file: its tasks (grouped by ``task_name``) and the skill.

    Args:
        skill: A ``skills/`` file.
        predictions: Raw model outputs, one per row, in row order.
        profile: ``shopping-mmlu-skill`` (the official skill evaluator) or
            ``shopping-mmlu-task``.
        embed: As for :func:`score_task`.
        sentence_models: As for :func:`score_task`.

    Returns:
        ``{"skill", "profile", "n", "score", "tasks", "warnings", "skipped"}``: ``tasks``
        maps each task name (in order of first appearance) to a :func:`score_task`-like
        dict whose rows carry ``task_name``; ``score`` is the mean of the task scores.

    Raises:
        UnknownNameError: Unknown profile.
        ScoringError: Not a skill file, or predictions that are not one string per row.
        SentenceModelNotFoundError: A default embedding model is not available offline.
    """
    _check_profile(profile)
    if not skill.is_skill:
        raise ScoringError(f"{skill.source}: a task file; score it with score_task")
    _check_predictions(skill, predictions)
    groups: dict[str, list[_Item]] = {}
    for r in skill.rows:
        assert r.task_name is not None and r.metric is not None
        groups.setdefault(r.task_name, []).append(_Item(r, r.task_name, r.metric, False))
    encoders = _encoders or _Encoders(embed, sentence_models)
    _prepare_embeddings([i for g in groups.values() for i in g], predictions, encoders)
    scorer = _RowScorer(profile, encoders, False, False)
    tasks: dict[str, dict[str, Any]] = {}
    raws: list[Any] = []
    for name, items in groups.items():
        result, raw = _score_items(name, items, predictions, profile, scorer, skill_rows=True)
        types = sorted({i.row.task_type or "" for i in items})
        tasks[name] = {"task": name, "task_type": "+".join(types), **result}
        raws.append(raw)
    warns = _skipped_warning(skill)
    score = math.nan
    if not raws:
        warns.append(f"{skill.name}: the file has no rows; the skill score is NaN")
    elif any(r is None for r in raws):
        failed = [n for n, r in zip(tasks, raws, strict=True) if r is None]
        warns.append(
            f"{skill.name}: the official evaluator stops at task(s) {', '.join(failed)}; "
            "the skill score is NaN"
        )
    else:
        mean, err = _call(lambda: np.mean(raws))
        score = math.nan if err is not None else float(mean)
        if math.isnan(score):
            nan_tasks = [n for n, t in tasks.items() if math.isnan(t["score"])]
            warns.append(
                f"{skill.name}: the skill score is NaN (NaN task(s): {', '.join(nan_tasks)})"
            )
    for t in tasks.values():
        warns.extend(t["warnings"])
    return {
        "skill": skill.name,
        "profile": profile,
        "n": len(skill.rows),
        "score": score,
        "tasks": tasks,
        "warnings": warns,
        "skipped": len(skill.skipped),
    }


# --------------------------------------------------------------------------- benchmark


def skill_column(skill: str) -> str | None:
    """The leaderboard column of a skill file: ``skill<N>...`` is column N (1-4); otherwise a
    keyword of the column's name (``concept``, ``knowledge``, ``behavior``, ``lingual``)."""
    m = re.match(r"skill([1-4])(?![0-9])", skill)
    if m:
        return LEADERBOARD_COLUMNS[int(m.group(1)) - 1]
    low = skill.lower()
    hits = [
        c
        for c, words in zip(LEADERBOARD_COLUMNS, _SKILL_KEYWORDS, strict=True)
        if any(w in low for w in words)
    ]
    return hits[0] if len(hits) == 1 else None


def _nanmean_free(values: list[float]) -> float:
    if not values:
        return math.nan
    return float(np.mean(values))


def _leaderboard(skills: Mapping[str, float], warns: list[str]) -> dict[str, float]:
    board = dict.fromkeys(LEADERBOARD_COLUMNS, math.nan)
    filled: dict[str, str] = {}
    for name, score in skills.items():
        column = skill_column(name)
        if column is None:
            warns.append(f"skill {name!r} has no leaderboard column")
            continue
        if column in filled:
            warns.append(
                f"skills {filled[column]!r} and {name!r} both fill {column!r}; keeping the first"
            )
            continue
        filled[column] = name
        board[column] = score
    for column in LEADERBOARD_COLUMNS:
        if column not in filled:
            warns.append(f"no skill fills the leaderboard column {column!r}")
    board[OVERALL_COLUMN] = _nanmean_free([board[c] for c in LEADERBOARD_COLUMNS])
    return board


def leaderboard(skills: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    """The leaderboard columns and ``Overall`` of skill scores (skill name -> score), as
    :func:`score_benchmark` computes them, with warnings for unfilled or doubled columns."""
    warns: list[str] = []
    return _leaderboard(skills, warns), warns


def _lookup(predictions: Mapping[str, Sequence[str]], data: TaskData) -> Sequence[str] | None:
    for key in (f"{data.folder}/{data.name}", data.name):
        if key in predictions:
            return predictions[key]
    return None


def _task_skill_map(benchmark: Benchmark) -> dict[str, str]:
    out: dict[str, str] = {}
    for s in benchmark.skills:
        for r in s.rows:
            if r.task_name is not None:
                out.setdefault(r.task_name, s.name)
    return out


def score_benchmark(
    benchmark: Benchmark,
    predictions: Mapping[str, Sequence[str]],
    profile: str,
    *,
    embed: EmbedArg = None,
    sentence_models: Mapping[str, str] | None = None,
    letter_choices: bool = False,
    task_skills: Mapping[str, str] | None = None,
    files: str | None = None,
) -> dict[str, Any]:
    """Score a whole release with one profile.

    ``shopping-mmlu-skill`` scores the skill files (predictions keyed by skill name);
    ``shopping-mmlu-task`` scores the task files (keyed by task name, or
    ``<folder>/<task>``) and groups the task scores into skills with ``task_skills`` (task
    name -> skill name; by default each skill file's ``task_name`` values that name a task
    file). A file without predictions scores NaN with a warning.

    Args:
        benchmark: From :func:`harness.shopbench.mmlu.load_benchmark`.
        predictions: Raw outputs per file.
        profile: ``shopping-mmlu-skill`` or ``shopping-mmlu-task``.
        embed: As for :func:`score_task`.
        sentence_models: As for :func:`score_task`.
        letter_choices: As for :func:`score_task` (task profile).
        task_skills: Task profile: task -> skill.
        files: ``skills`` or ``tasks``: which files to score (default: the skill files
            under ``shopping-mmlu-skill``, the task files under ``shopping-mmlu-task``);
            answers to the skill files scored with the task profile show how the scorer
            alone moves a number.

    Returns:
        ``{"profile", "source", "tasks", "skills", "leaderboard", "overall", "warnings"}``:
        ``tasks`` (task profile) maps task names to :func:`score_task` results; ``skills``
        maps skill names to :func:`score_skill` results (skill profile) or to
        ``{"skill", "score", "tasks"}`` (task profile); ``leaderboard`` maps the four
        columns and ``Overall`` to scores.

    Raises:
        UnknownNameError: Unknown profile.
        ScoringError: A prediction key that names no file, or a prediction list of the
            wrong length.
    """
    _check_profile(profile)
    if files is None:
        files = "skills" if profile == SKILL_PROFILE else "tasks"
    if files not in ("skills", "tasks"):
        raise ValueError(f"files must be 'skills' or 'tasks', not {files!r}")
    scored = benchmark.skills if files == "skills" else benchmark.tasks
    known = {k for d in scored for k in (d.name, f"{d.folder}/{d.name}")}
    unknown = sorted(set(predictions) - known)
    if unknown:
        kind = "skill" if files == "skills" else "task"
        raise ScoringError(
            f"{benchmark.source}: predictions for unknown {kind}(s): {', '.join(unknown)}"
        )
    encoders = _Encoders(embed, sentence_models)
    warns: list[str] = []
    tasks: dict[str, dict[str, Any]] = {}
    skills: dict[str, dict[str, Any]] = {}
    if files == "skills":
        for s in benchmark.skills:
            preds = _lookup(predictions, s)
            if preds is None:
                skills[s.name] = {
                    "skill": s.name,
                    "profile": profile,
                    "n": len(s.rows),
                    "score": math.nan,
                    "tasks": {},
                    "warnings": [f"{s.name}: no predictions"],
                    "skipped": len(s.skipped),
                }
            else:
                skills[s.name] = score_skill(s, preds, profile, _encoders=encoders)
            warns.extend(skills[s.name]["warnings"])
    else:
        for t in benchmark.tasks:
            preds = _lookup(predictions, t)
            if preds is None:
                tasks[t.name] = {
                    "task": t.name,
                    "task_type": t.folder,
                    "metric": t.metric,
                    "profile": profile,
                    "n": len(t.rows),
                    "score": math.nan,
                    "ill_format": None,
                    "rows": [],
                    "warnings": [f"{t.name}: no predictions"],
                    "skipped": len(t.skipped),
                }
            else:
                tasks[t.name] = score_task(
                    t, preds, profile, letter_choices=letter_choices, _encoders=encoders
                )
            warns.extend(tasks[t.name]["warnings"])
        mapping = dict(task_skills) if task_skills is not None else _task_skill_map(benchmark)
        grouped: dict[str, list[str]] = {}
        for name in tasks:
            if name in mapping:
                grouped.setdefault(mapping[name], []).append(name)
        unassigned = [n for n in tasks if n not in mapping]
        if unassigned:
            warns.append(f"task(s) in no skill: {', '.join(unassigned)}")
        for skill_name, names in grouped.items():
            scores = [tasks[n]["score"] for n in names]
            skills[skill_name] = {
                "skill": skill_name,
                "score": _nanmean_free(scores),
                "tasks": names,
            }
    board = _leaderboard({k: v["score"] for k, v in skills.items()}, warns)
    return {
        "profile": profile,
        "source": benchmark.source,
        "tasks": tasks,
        "skills": skills,
        "leaderboard": board,
        "overall": board[OVERALL_COLUMN],
        "warnings": warns,
    }


def task_results(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task's result of a :func:`score_benchmark` result, whichever profile made it: the
    task files' (task profile) or the tasks inside each skill file (skill profile)."""
    if result["tasks"]:
        return dict(result["tasks"])
    return {t: d for s in result["skills"].values() for t, d in s.get("tasks", {}).items()}


def leaderboard_row(result: Mapping[str, Any]) -> dict[str, float]:
    """The leaderboard columns (four skills and ``Overall``) of a :func:`score_benchmark`
    result."""
    board = result["leaderboard"]
    return {c: float(board[c]) for c in (*LEADERBOARD_COLUMNS, OVERALL_COLUMN)}


def _cell(v: float, ci: Sequence[float | None] | None, scale: float, digits: int) -> str:
    if math.isnan(v):
        return "nan"
    text = f"{v * scale:.{digits}f}"
    if ci and ci[0] is not None and ci[1] is not None and not math.isnan(ci[0]):
        text += f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"
    return text


def leaderboard_table(
    results: Mapping[str, Mapping[str, Any]],
    *,
    scale: float = 100.0,
    digits: int = 2,
    intervals: Mapping[str, Any] | None = None,
) -> str:
    """A Markdown table in the leaderboard's format, one line per model.

    Args:
        results: Model name -> :func:`score_benchmark` result.
        scale: Multiplier of the scores (100: percentages).
        digits: Decimals shown.
        intervals: Bootstrap intervals of the results
            (:func:`harness.shopbench.uncertainty.intervals` of their units, or the same
            for every model), or a mapping of model name -> them: each cell shows
            ``score [lo, hi]``.

    Returns:
        The table; a NaN score shows as ``nan``.
    """
    columns = ("Model", *LEADERBOARD_COLUMNS, OVERALL_COLUMN)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|",
    ]
    for model, result in results.items():
        row = leaderboard_row(result)
        ci: Mapping[str, Any] | None = intervals
        if ci is not None and "overall" not in ci:
            ci = ci.get(model)
        cells = []
        for column, v in row.items():
            bounds = None
            if ci is not None:
                entry = ci["overall"] if column == OVERALL_COLUMN else ci["groups"].get(column)
                bounds = entry["ci"] if entry else None
            cells.append(_cell(v, bounds, scale, digits))
        lines.append("| " + " | ".join([model, *cells]) + " |")
    return "\n".join(lines) + "\n"
