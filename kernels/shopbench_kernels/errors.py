"""Errors raised by the model-surgery kernels. The kernels import nothing of the harness;
the harness reports every :class:`KernelError` as a user error (a message, no traceback)."""

from __future__ import annotations


class KernelError(ValueError):
    """Base of every kernel error."""


class PaddingError(KernelError):
    """An impossible or inconsistent padding request (target too small, TP sizes not met)."""


class CheckpointError(KernelError):
    """A checkpoint directory that cannot be read as expected (missing, truncated, mis-shaped)."""


class UnsupportedModelError(CheckpointError):
    """A model whose MLP is not a Llama/Qwen2-style gate/up/down MLP, or is already quantised."""


class AwqLayoutError(KernelError):
    """Packed AWQ tensors whose shapes do not fit together."""
