"""Alias of :mod:`tests.support.openai_server` (``python -m tests.fakes.openai_server`` serves
in the foreground, as ``python -m tests.support.openai_server`` does)."""

from __future__ import annotations

from tests.support.openai_server import (
    FakeOpenAIServer,
    FakeState,
    body_hash,
    echo_responder,
    main,
    no_faults,
)

__all__ = ["FakeOpenAIServer", "FakeState", "body_hash", "echo_responder", "main", "no_faults"]

if __name__ == "__main__":
    main()
