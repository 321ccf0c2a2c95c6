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
    """A sentence-transformer model that cannot be found offline."""
