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


def cached_dataset(cache: Path, name: str, content: bytes) -> Path:
    """A data cache holding dataset ``name`` (one-file layout) with ``content`` as its file,
    recorded in a manifest as the fetcher writes it."""
    from harness.atomic import write_json
    from harness.datasets import get_dataset
    from harness.datasets.cache import MANIFEST

    entry = get_dataset(name)
    (f,) = entry.files
    ddir = cache / name
    ddir.mkdir(parents=True)
    (ddir / f.path).write_bytes(content)
    record = {"path": f.path, "sha256": f.sha256, "git_blob": f.git_blob}
    write_json(ddir / MANIFEST, {"name": name, "files": [record]})
    return ddir / f.path


def test_score_resolves_named_datasets(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rows = EVAL_TINY.read_bytes()
    cached_dataset(cache, "shopbench-dev", rows)
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"prediction": "0"}\n' * len(rows.splitlines()))
    out = tmp_path / "scores.json"
    args = ("score", "--data", "data://shopbench-dev", "--predictions", str(preds))
    proc = harness(*args, "--out", str(out), env={"HARNESS_DATA_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    proc = harness(*args, env={"HARNESS_DATA_DIR": str(tmp_path / "empty")})
    user_error(proc, "data://shopbench-dev", "fetch it with: harness data fetch shopbench-dev")


def test_data_path_takes_a_bare_name_and_refuses_anything_else(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = cached_dataset(cache, "shopbench-dev", b"{}\n")
    env = {"HARNESS_DATA_DIR": str(cache)}
    for ref in ("shopbench-dev", "data://shopbench-dev"):
        proc = harness("data", "path", ref, env=env)
        assert proc.returncode == 0 and proc.stdout.strip() == str(path), proc.stderr
    user_error(harness("data", "path", "/no/such/file", env=env), "not a dataset name")
    user_error(harness("data", "path", "shopbench-dv", env=env), "did you mean `shopbench-dev`")
