"""Typed records and the fixed vocabularies of ShopBench (task types, metrics, tracks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

TaskType = Literal[
    "multiple-choice", "retrieval", "ranking", "named_entity_recognition", "generation"
]
TASK_TYPES: tuple[str, ...] = get_args(TaskType)
"""The task types: the one vocabulary (spec decoding sections, prompts, routing, scoring)."""
CONSTRAINED_TYPES = ("multiple-choice", "ranking", "retrieval")
"""Task types whose outputs have a closed format (an index, a list of indices)."""

MetricName = Literal[
    "accuracy",
    "hit rate@3",
    "rougel",
    "sent-transformer",
    "multilingual-sent-transformer",
    "micro f1",
    "ndcg",
    "bleu",
    "jp-bleu",
]
METRICS: tuple[str, ...] = get_args(MetricName)

# The task type each metric scores; a record pairing a metric with another type is an error.
METRIC_TASK_TYPE: dict[str, str] = {
    "accuracy": "multiple-choice",
    "hit rate@3": "retrieval",
    "ndcg": "ranking",
    "micro f1": "named_entity_recognition",
    "rougel": "generation",
    "sent-transformer": "generation",
    "multilingual-sent-transformer": "generation",
    "bleu": "generation",
    "jp-bleu": "generation",
}

TRACKS = (
    "amazon-kdd-cup-24-understanding-shopping-concepts",
    "amazon-kdd-cup-24-shopping-knowledge-reasoning",
    "amazon-kdd-cup-24-user-behavior-alignment",
    "amazon-kdd-cup-24-multi-lingual-abilities",
)

# Key of the all-tracks score (mean of the track scores) inside ``scores["tracks"]``.
ALL_TRACKS = "all-tracks"


@dataclass(frozen=True)
class Record:
    """One evaluation (or training) row.

    Attributes:
        input_field: The prompt.
        output_field: The reference answer; None in the hidden-test format.
        task_name: e.g. ``task11``; None in the hidden-test format.
        task_type: One of :data:`TASK_TYPES`; None in the hidden-test format.
        metric: One of :data:`METRICS` (EC-Guide also has ``bool``); None when unlabelled.
        is_multiple_choice: Whether the prompt is a multiple-choice question.
        track: The KDD Cup track; None when unknown.
        source: ``file:line`` the row came from (for error messages; not compared).
    """

    input_field: str
    output_field: Any | None
    task_name: str | None
    task_type: TaskType | None
    metric: str | None
    is_multiple_choice: bool
    track: str | None
    source: str | None = field(default=None, compare=False)

    @property
    def labelled(self) -> bool:
        """True when the row carries what scoring needs (answer, task, type, metric)."""
        return (
            self.output_field is not None
            and self.task_name is not None
            and self.task_type is not None
            and self.metric is not None
        )
