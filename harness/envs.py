"""Stage environments.

Heavy stages pin conflicting versions (vLLM pins torch and a narrow transformers range;
unsloth pins transformers and trl and needs a GPU; AutoAWQ breaks on some transformers). Each
stage names a role (``serve``, ``train``, ``quant``); the platform picks the pinned file
``harness/envs/<file>.txt``. On CPU the three roles share ``cpu.txt``.

An environment is the current interpreter when that already satisfies every pin (the usual
case on CPU: the project's own virtualenv is built from ``cpu.txt``); otherwise a virtualenv
is created on first use under ``$HARNESS_ENV_ROOT`` (default ``~/.cache/shopbench-harness/envs``)
with ``venv`` + ``pip install --no-deps -r`` (pip, not uv: uv ignores pip's local
configuration and resolves torch to a CUDA build), completed atomically and reused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from harness.errors import HarnessError

ENV_DIR = Path(__file__).parent / "envs"
ENV_FILES: dict[tuple[str, str], str] = {
    ("serve", "cpu"): "cpu",
    ("train", "cpu"): "cpu",
    ("quant", "cpu"): "cpu",
    ("serve", "gpu"): "serve-gpu",
    ("train", "gpu"): "train-gpu",
    ("quant", "gpu"): "quant-gpu",
}
_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;#]+)")


def detect_platform(setting: str = "auto") -> str:
    """``cpu`` or ``gpu``: the spec's ``run.platform``, or ``gpu`` when nvidia-smi exists."""
    if setting != "auto":
        return setting
    return "gpu" if shutil.which("nvidia-smi") else "cpu"


def env_file(role: str, platform: str) -> Path:
    """The pinned requirements file of a stage role on a platform."""
    try:
        name = ENV_FILES[(role, platform)]
    except KeyError:
        raise HarnessError(f"no environment for role {role!r} on {platform!r}") from None
    return ENV_DIR / f"{name}.txt"


def read_pins(path: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line (names normalised)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _PIN.match(line)
        if m:
            name = re.sub(r"\[.*\]", "", m.group(1))
            pins[_norm(name)] = m.group(2)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_matches(installed: str, pinned: str) -> bool:
    # A local version (+cpu) satisfies a pin without one, as in PEP 440.
    return installed == pinned or installed.split("+", 1)[0] == pinned


def unmet_pins(pins: dict[str, str]) -> list[str]:
    """Pins the current interpreter does not satisfy, as ``name==want (have X)``."""
    have = {_norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return [
        f"{n}=={v} (have {have.get(n, 'none')})"
        for n, v in sorted(pins.items())
        if n not in have or not _version_matches(have[n], v)
    ]


def env_root() -> Path:
    """Where created environments live."""
    return Path(
        os.environ.get("HARNESS_ENV_ROOT", Path.home() / ".cache" / "shopbench-harness" / "envs")
    )


def python_for(role: str, platform: str) -> str:
    """The interpreter a stage of ``role`` runs with, creating its environment if needed."""
    if role == "core":
        return sys.executable
    return ensure_env(env_file(role, platform))


def ensure_env(req: Path) -> str:
    """The python of an environment satisfying ``req``: this one, or a created venv."""
    pins = read_pins(req)
    if not unmet_pins(pins):
        return sys.executable
    digest = hashlib.sha256(req.read_bytes()).hexdigest()[:12]
    target = env_root() / f"{req.stem}-{digest}"
    py = target / "bin" / "python"
    if (target / ".complete").is_file():
        return str(py)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True)
        subprocess.run(
            [
                str(tmp / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "-r",
                str(req),
            ],
            check=True,
        )
        # The harness itself, without its dependencies (the pins provide them).
        project = Path(__file__).resolve().parents[1]
        subprocess.run(
            [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(project)],
            check=True,
        )
    except subprocess.CalledProcessError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HarnessError(f"creating environment from {req} failed: {e}") from None
    (tmp / ".complete").write_text(req.read_text(encoding="utf-8"), encoding="utf-8")
    # Only `bin/python -m ...` is ever used, which works after the rename (scripts would not).
    if target.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        return str(py)
    os.replace(tmp, target)
    return str(py)
