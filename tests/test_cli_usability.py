"""The command line as a user meets it: every user error is one ``error:`` line with exit
status 2 and no traceback; help, docs and messages tell the truth."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

TINY = REPO / "experiments" / "tiny_cpu.yaml"
EVAL_TINY = REPO / "experiments" / "data" / "eval_tiny.jsonl"


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``harness ARGS`` from the project root, output captured (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The error line of a command that failed as a user error, checked: exit 2, no
    traceback, one ``error:`` line holding every fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    return errors[0]


def test_score_output_option_naming_a_directory(tmp_path: Path) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"prediction": "0"}\n')
    for option in ("--out", "--rows"):
        proc = harness(
            "score", "--data", str(EVAL_TINY), "--predictions", str(preds), option, str(tmp_path)
        )
        user_error(proc, f"{option} {tmp_path}: is a directory")


def test_docs_readme_missing_file(tmp_path: Path) -> None:
    user_error(harness("docs", "--readme", str(tmp_path / "missing.md")), "file not found")
