"""Errors of the data package (all :class:`harness.errors.HarnessError` subclasses)."""

from __future__ import annotations

from harness.errors import HarnessError


class SourceError(HarnessError):
    """A malformed source record file; the message names ``file:line`` and the field."""


class CatalogueError(HarnessError):
    """A malformed or missing task in the synthesis catalogue."""


class GenerationError(HarnessError):
    """Generation cannot run (no API key, unreachable endpoint, nothing to generate from)."""


class MixError(HarnessError):
    """A mix that cannot be built (missing source, unknown format, empty result)."""


class ContaminationError(MixError):
    """An evaluation prompt appears in the training mix."""
