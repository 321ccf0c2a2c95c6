"""Where this project's import packages live, for child processes and code digests."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS: dict[str, Path] = {"harness": REPO, "shopbench_kernels": REPO / "kernels"}
"""Each import package of the project and the directory it is imported from (the model-surgery
kernels live in ``kernels/shopbench_kernels``: ``kernels`` is Hugging Face's import name)."""
PROJECT_PACKAGES = tuple(PACKAGE_ROOTS)


def project_pythonpath(existing: str | None = None) -> str:
    """A ``PYTHONPATH`` putting this checkout's package roots first, then ``existing``: for
    child processes of an interpreter that does not have the project installed (or has an
    older copy)."""
    roots = [str(p) for p in dict.fromkeys(PACKAGE_ROOTS.values())]
    return os.pathsep.join([*roots, *filter(None, [existing])])
