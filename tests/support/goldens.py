"""The official evaluators' golden facts (``golden/official/*.json``, written by
:mod:`tests.support.official_goldens`) as the parity tests read them.

A golden file that is missing, or whose recorded corpus or data file no longer has the
recorded sha256, fails the test that needs it (goldens are committed; regenerate them with
the official checkouts, see :func:`regenerate`).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

OFFICIAL = REPO / "golden" / "official"


def regenerate() -> str:
    """How to regenerate the official goldens."""
    return (
        'nox -s golden -- --update "reason" with SHOPBENCH_KIT_DIR / SHOPPING_MMLU_DIR set to '
        "checkouts of the official repositories (see tests/support/official_goldens.py)"
    )


def official_golden(name: str) -> dict[str, Any]:
    """``golden/official/NAME.json``; fails the test when it is missing."""
    path = OFFICIAL / f"{name}.json"
    if not path.is_file():
        pytest.fail(f"golden file {path.relative_to(REPO)} is missing: {regenerate()}")
    return json.loads(path.read_text("utf-8"))


def sha256_text(text: str) -> str:
    """The sha256 of ``text`` encoded as UTF-8 (hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_file(name: str, entry: dict[str, str], path: Path) -> None:
    """Fail unless ``path`` is the file golden ``name`` was computed from (``entry``:
    ``{"path", "sha256"}``)."""
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != entry["sha256"]:
        pytest.fail(
            f"{path} (sha256 {got}) is not the {entry['path']} golden/official/{name}.json was "
            f"computed from (sha256 {entry['sha256']}): {regenerate()}"
        )


def same(a: Any, b: Any, tol: float) -> bool:
    """Equal within ``tol``; NaN equals NaN, infinities must be equal."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= tol
