"""Errors of the named-dataset registry and cache (all :class:`~harness.errors.HarnessError`)."""

from __future__ import annotations

from harness.errors import HarnessError


class DatasetError(HarnessError):
    """An unknown dataset, a bad ``data://`` reference or a fetch that cannot proceed."""


class DatasetNotCachedError(DatasetError):
    """A ``data://`` reference to a dataset that is not (or not wholly) in the local cache; the
    message gives the ``harness data fetch`` command that gets it."""


class ChecksumError(DatasetError):
    """Downloaded bytes that do not match the registry's (or the user's) checksum or size."""
