"""nox sessions: run, tests, pipeline, lint, validate, golden, bench, sweep, gpu, gpu-pipeline.

All sessions share one project virtualenv, ``.venv``, built with pip from the pinned
``harness/envs/cpu.txt`` (every transitive dependency pinned, installed ``--no-deps``) plus
the project itself in editable mode. It is rebuilt only when the pins or pyproject change.
pip, not uv: uv ignores pip's local configuration and resolves torch to a CUDA build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
ROOT = Path(__file__).parent
VENV = ROOT / ".venv"
PINS = ROOT / "harness" / "envs" / "cpu.txt"
DEV_PINS = ["ruff==0.17.6"]
STAMP = VENV / ".pins-sha256"
PYTEST_BASE = ["-p", "no:cacheprovider"]


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _venv(session: nox.Session) -> Path:
    """Create or refresh ``.venv`` from the pins; return its bin dir.

    A change of the pins rebuilds the environment; a change of pyproject.toml alone (entry
    points, metadata) only reinstalls the project in editable mode.
    """
    pins = _digest(PINS.read_bytes(), " ".join(DEV_PINS).encode())
    project = _digest((ROOT / "pyproject.toml").read_bytes())
    stamp = f"{pins} {project}"
    if STAMP.is_file() and STAMP.read_text().strip() == stamp:
        return VENV / "bin"
    py = str(VENV / "bin" / "python")
    old = STAMP.read_text().split() if STAMP.is_file() else []
    if not old or old[0] != pins:
        session.log(f"building {VENV} from {PINS.relative_to(ROOT)}")
        if VENV.exists():
            shutil.rmtree(VENV)
        session.run(sys.executable, "-m", "venv", str(VENV), external=True)
        session.run(py, "-m", "pip", "install", "-q", "--upgrade", "pip", external=True)
        session.run(
            py,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "-r",
            str(PINS),
            *DEV_PINS,
            external=True,
        )
    session.run(py, "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT), external=True)
    session.run(py, "-c", "import vllm, awq, trl, peft, harness", external=True)
    STAMP.write_text(stamp)
    return VENV / "bin"


BROWSER_PACKAGES = ["chromium", "chromium-driver"]


def _browser(session: nox.Session) -> None:
    """The page tests' browser: the distribution's Chromium and its driver. Installed with
    apt-get when missing and this runs as root on Debian; elsewhere the page tests skip,
    saying what to install."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if not Path("/etc/debian_version").is_file() or os.geteuid() != 0:
        session.log(
            "chromium/chromedriver missing and not root on Debian: the browser tests skip "
            f"(install: apt-get install -y {' '.join(BROWSER_PACKAGES)})"
        )
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        session.run("apt-get", "update", "-q", external=True, env=env)
        session.run("apt-get", "install", "-y", "-q", *BROWSER_PACKAGES, external=True, env=env)
    except nox.command.CommandFailed:
        session.log("could not install chromium: the browser tests skip")


def _env() -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "TOKENIZERS_PARALLELISM": "false",
    }


def _pytest(session: nox.Session, *args: str) -> None:
    """pytest in ``.venv`` with the offline test environment."""
    bin_ = _venv(session)
    session.run(
        str(bin_ / "python"), "-m", "pytest", *PYTEST_BASE, *args, env=_env(), external=True
    )


@nox.session(python=False)
def run(session: nox.Session) -> None:
    """Run a spec: ``nox -s run -- SPEC [key=value ...]`` (default experiments/tiny_cpu.yaml)."""
    bin_ = _venv(session)
    args = session.posargs or ["experiments/tiny_cpu.yaml"]
    session.run(str(bin_ / "harness"), "run", *args, env=_env(), external=True)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The test suite (unit, property, golden, integration with real engines, pages in a
    headless Chromium); no benchmarks."""
    _browser(session)
    _pytest(
        session, *(session.posargs or ["tests", "-m", "not bench and not gpu", "--durations=25"])
    )


@nox.session(python=False)
def pipeline(session: nox.Session) -> None:
    """End-to-end tests of the whole tiny_cpu pipeline (and the sweep over it, its pages)."""
    _browser(session)
    _pytest(session, "tests", "-m", "pipeline")


@nox.session(python=False)
def gpu(session: nox.Session) -> None:
    """Tests that need a CUDA GPU (skipped cleanly without one)."""
    _pytest(session, "tests", "-m", "gpu")


@nox.session(name="gpu-pipeline", python=False)
def gpu_pipeline(session: nox.Session) -> None:
    """The prepared GPU check (``harness/gpu_check.py``): carried wheels, ``pytest -m gpu``,
    experiments/gpu_small.yaml in the current-interpreter mode, and gpu-results/summary.json,
    within 8 minutes, with the interpreter running nox (install nox into the GPU machine's
    Python). It builds no ``.venv`` there: the machine brings its own CUDA stack (and wheels in
    ``wheels/`` for what it lacks), which the pinned CPU environment would replace.
    ``-- --dry-run`` rehearses it on CPU in ``.venv``.
    """
    args = session.posargs
    python = str(_venv(session) / "python") if "--dry-run" in args else sys.executable
    session.run(python, "-m", "harness.gpu_check", *args, env=_env(), external=True)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    bin_ = _venv(session)
    targets = ["harness", "kernels", "tests", "noxfile.py"]
    session.run(str(bin_ / "ruff"), "check", *targets, external=True)
    session.run(str(bin_ / "ruff"), "format", "--check", *targets, external=True)


@nox.session(python=False)
def validate(session: nox.Session) -> None:
    """Validate every spec (and sweep file) under experiments/, recursively."""
    bin_ = _venv(session)
    session.run(
        str(bin_ / "harness"), "validate", *(session.posargs or ["experiments"]), external=True
    )


OFFICIAL_CHECKOUTS = {"SHOPBENCH_KIT_DIR": "--kit", "SHOPPING_MMLU_DIR": "--mmlu"}


def _official_goldens(session: nox.Session) -> None:
    """Rewrite the prediction corpora and, for each official checkout named in the
    environment, ``golden/official`` (``tests/support/official_goldens.py``)."""
    py = str(_venv(session) / "python")
    session.run(py, "-m", "tests.support.official_corpus", env=_env(), external=True)
    given = [(env, opt) for env, opt in OFFICIAL_CHECKOUTS.items() if os.environ.get(env)]
    missing = [env for env in OFFICIAL_CHECKOUTS if not os.environ.get(env)]
    if missing:
        session.warn(
            f"golden/official not regenerated for {', '.join(missing)}: set "
            "SHOPBENCH_KIT_DIR to a checkout of the Amazon KDD Cup 2024 starter kit and "
            "SHOPPING_MMLU_DIR to one of Shopping MMLU, each at the commit "
            "tests/support/official_goldens.py pins (its docstring and the README's "
            "'Official goldens' section say where to get them)"
        )
    if given:
        cmd = [py, "-m", "tests.support.official_goldens"]
        for env, opt in given:
            cmd += [opt, os.environ[env]]
        session.run(*cmd, env=_env(), external=True)


@nox.session(python=False)
def golden(session: nox.Session) -> None:
    """Compare golden files; ``-- --update "reason"`` rewrites them and logs the reason. With
    ``SHOPBENCH_KIT_DIR`` / ``SHOPPING_MMLU_DIR`` (official checkouts), ``--update`` also
    recomputes ``golden/official`` by running the official evaluators."""
    args = list(session.posargs)
    extra = []
    if args and args[0] == "--update":
        if len(args) < 2 or not args[1].strip():
            session.error('give a reason: nox -s golden -- --update "why the goldens change"')
        extra = ["--update-golden"]
        with (ROOT / "golden" / "CHANGES.md").open("a", encoding="utf-8") as f:
            f.write(f"- {datetime.now(UTC).date().isoformat()}: {args[1].strip()}\n")
        _official_goldens(session)
    _pytest(session, "tests", "-m", "not bench and not gpu and not engine and not slow", *extra)
    if extra:
        out = subprocess.run(["git", "status", "--short", "golden"], capture_output=True, text=True)
        session.log("golden files changed:\n" + (out.stdout or "(none)"))


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Benchmarks; each writes bench-results/<name>.json with ratios against a baseline."""
    (ROOT / "bench-results").mkdir(exist_ok=True)
    _browser(session)
    _pytest(session, *(session.posargs or ["tests/benchmarks"]), "-m", "bench", "-s")


@nox.session(python=False)
def sweep(session: nox.Session) -> None:
    """Run a sweep file: ``nox -s sweep -- experiments/sweeps/decoding.yaml``."""
    bin_ = _venv(session)
    if not session.posargs:
        session.error("usage: nox -s sweep -- SWEEP.yaml")
    session.run(str(bin_ / "harness"), "sweep", *session.posargs, env=_env(), external=True)
