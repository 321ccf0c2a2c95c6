"""Error types. Every user-facing failure is a :class:`HarnessError` (or, from the
model-surgery kernels, which know nothing of the harness, a :class:`shopbench_kernels.errors.KernelError`)
with a message that names the file, line or config key at fault; the CLI prints it without a
traceback and exits 2."""

from __future__ import annotations

from shopbench_kernels.errors import KernelError


class HarnessError(Exception):
    """A user error: bad spec, bad input data, an impossible configuration."""


class SpecError(HarnessError):
    """One or more problems in an experiment spec; the message lists all of them."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        head = f"invalid spec {source}" if source else "invalid spec"
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{head}: {len(problems)} problem(s)\n{body}")


class StageError(HarnessError):
    """A stage failed; carries the stage name and where its log is."""


USER_ERRORS: tuple[type[Exception], ...] = (HarnessError, KernelError)
"""Everything the CLI and the stage runner report as a message, not a traceback."""
