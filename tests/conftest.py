"""Shared fixtures: the golden-file switch, the shared-data location, tiny models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# Two light plugin stages (tests/plugins/toy_stages.py) for executor and planner tests.
os.environ["HARNESS_STAGE_PLUGINS"] = "tests.plugins.toy_stages"


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
def shared_data() -> Path:
    """The public ShopBench/EC-Guide data beside the repo; skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_cpu_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One runs root for every test that runs the real tiny_cpu pipeline: the whole-pipeline
    test fills the stage cache, and the sweep over it reuses the upstream stages."""
    return tmp_path_factory.mktemp("tiny-cpu-runs")


@pytest.fixture(scope="session")
def vllm_openai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One vLLM OpenAI-compatible server per session, serving the tiny inference model as
    ``tiny``: ``(base_url, server_log)``."""
    pytest.importorskip("vllm")
    from test_infer_common import build_tiny

    from tests.vllm_server import serve

    model = build_tiny(tmp_path_factory.getbasetemp())
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    try:
        with serve(model, log) as url:
            yield url, log
    except RuntimeError as e:
        pytest.fail(str(e))
