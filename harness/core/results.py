"""Reading finished stages' results.

Readers of another stage's outputs (the report, sweeps, ``harness compare``) go through these
functions, which know the stage dirs' layout (:mod:`harness.core.artifacts`), so that library
code takes plain files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.artifacts import SCORES

if TYPE_CHECKING:
    from harness.shopbench.units import Units


def score_units(score_dir: Path, mode: str) -> Units:
    """The per-row scoring units of a ``score`` stage dir under a parser mode.

    Args:
        score_dir: The stage dir.
        mode: ``official`` or ``robust``.

    Raises:
        HarnessError: The files are missing or lack per-row units.
    """
    from harness.shopbench.units import units_from_files

    return units_from_files(SCORES.file(score_dir, mode), SCORES.rows(score_dir, mode))
