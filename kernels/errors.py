"""Errors raised by the model-surgery kernels. All are :class:`harness.errors.HarnessError`s,
so the CLI prints them without a traceback."""

from __future__ import annotations

from harness.errors import HarnessError


class KernelError(HarnessError):
    """Base of every kernel error."""


class PaddingError(KernelError):
    """An impossible or inconsistent padding request (target too small, TP sizes not met)."""


class CheckpointError(KernelError):
    """A checkpoint directory that cannot be read as expected (missing, truncated, mis-shaped)."""


class UnsupportedModelError(CheckpointError):
    """A model whose MLP is not a Llama/Qwen2-style gate/up/down MLP, or is already quantised."""


class AwqLayoutError(KernelError):
    """Packed AWQ tensors whose shapes do not fit together."""
