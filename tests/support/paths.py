"""Where the tests' files are: the repository, the project's test data, and the real public
datasets (which only a few tests need).

:data:`REPO` is the repository root for every test (no test file derives its own);
:data:`TINY_CPU` is the embedded default spec, the one most stage tests plan from.

The project's fixtures live under ``tests/data`` and are always there:

* :data:`DEV_FIXTURE` — a 44-row file in the ShopBench development format (all 18 tasks, the
  four tracks), written by ``tests/data/shopbench_dev/build.py``;
* :data:`EC_GUIDE_FIXTURE` — a directory laid out like the ``ec-guide`` dataset (it holds
  ``EC-Guide/<Type>/<Subtask>.json``), written by ``tests/data/ec_guide/build.py``;
* :data:`FIXTURE_CORPUS` / :data:`DEV_CORPUS` — varied-format predictions, one per row of the
  fixture / of the real development set.

The real datasets are looked up, in this order, in the harness's data cache (``data://NAME``,
as ``harness data fetch NAME`` leaves it; see :mod:`harness.public_data`) and in the shared copy
beside the repository (``../shared/data``). Either may be hidden from the tests:

* ``HARNESS_TEST_SHARED_DATA`` — the shared copy's directory instead of ``../shared/data``
  (``HARNESS_TEST_SHARED_DATA=/nonexistent`` hides it);
* ``HARNESS_DATA_DIR`` — the harness's data cache (the harness reads it too;
  ``HARNESS_DATA_DIR=/nonexistent`` hides a cached copy).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
DATA = TESTS / "data"
GOLDEN = REPO / "golden"
TINY_CPU = REPO / "experiments" / "tiny_cpu.yaml"

INFER_DATA = DATA / "infer"
EVAL = INFER_DATA / "eval.jsonl"
EVAL_TEST_FORMAT = INFER_DATA / "eval_test_format.jsonl"

DEV_FIXTURE = DATA / "shopbench_dev" / "development.jsonl"
EC_GUIDE_FIXTURE = DATA / "ec_guide"
FIXTURE_CORPUS = DATA / "predictions_corpus" / "fixture_varied.jsonl"
DEV_CORPUS = DATA / "predictions_corpus" / "dev_varied.jsonl"

SHARED_DATA_ENV = "HARNESS_TEST_SHARED_DATA"
DEV_SET = "shopbench-dev"
EC_GUIDE = "ec-guide"
# Where each dataset sits inside the shared copy.
_SHARED_LAYOUT = {DEV_SET: "shopbench_dev", EC_GUIDE: "ec_guide"}


def shared_data_dir() -> Path:
    """The shared public data beside the repository (``$HARNESS_TEST_SHARED_DATA`` if set)."""
    env = os.environ.get(SHARED_DATA_ENV, "").strip()
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


def real_dataset_dir(name: str) -> Path | None:
    """The directory of a real public dataset (``shopbench-dev`` or ``ec-guide``), laid out as
    the registry's files (``development.json``; ``EC-Guide/...`` and ``LICENSE``): the data
    cache's copy if ``data://NAME`` resolves, else the shared copy; None when neither has it."""
    from harness.public_data import DatasetError, get_dataset, resolve

    default = get_dataset(name).default or ""
    try:
        found = resolve(f"data://{name}")
    except DatasetError:
        shared = shared_data_dir() / _SHARED_LAYOUT[name]
        return shared if (shared / default).exists() else None
    return found.parent if default else found


def real_dev_set() -> Path | None:
    """The real 96-row ShopBench ``development.json``, or None when it is not available."""
    root = real_dataset_dir(DEV_SET)
    return None if root is None else root / "development.json"


def real_ec_guide() -> Path | None:
    """The real EC-Guide dataset directory (holding ``EC-Guide/`` and ``LICENSE``), or None."""
    return real_dataset_dir(EC_GUIDE)


def missing_reason(name: str) -> str:
    """Why a test that needs the real dataset ``name`` skips, with the command that gets it."""
    from harness.public_data import fetch_command, get_dataset
    from harness.public_data.cache import data_dir

    return (
        f"needs the real {name!r} dataset: not in the data cache ({data_dir()}) nor in "
        f"{shared_data_dir()}; get it with: {fetch_command(get_dataset(name))}"
    )
