"""Errors of the inference package; all are :class:`~harness.errors.HarnessError` (user errors)."""

from __future__ import annotations

from harness.errors import HarnessError


class InferenceError(HarnessError):
    """Inference cannot run as configured (bad engine settings, unusable model dir, ...)."""


class PromptSetError(HarnessError):
    """A prompt set (``experiments/prompts/<variant>.yaml``) is missing or malformed."""


class TensorParallelError(InferenceError):
    """The model cannot be sharded at the requested tensor parallel size."""

    def __init__(self, problems: list[str], where: str) -> None:
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{where}: cannot serve at this tensor parallel size:\n{body}")
