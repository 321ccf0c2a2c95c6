"""Errors of the evaluation core (all :class:`harness.errors.HarnessError` subclasses)."""

from __future__ import annotations

from harness.errors import HarnessError


class DataError(HarnessError):
    """Malformed evaluation data or predictions; the message names file:line and the reason."""


class ScoringError(HarnessError):
    """Records and predictions that cannot be scored (count mismatch, unlabelled rows...)."""


class UnknownNameError(HarnessError):
    """An unknown task type, metric or parser mode."""


class SentenceModelNotFoundError(HarnessError):
    """A sentence-transformer model that cannot be found offline.

    Attributes:
        model: The model's short name, where the model itself is missing (None for a
            configured path that is not a model, or missing libraries).
    """

    def __init__(self, message: str, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model
