"""The model-surgery kernels import as ``shopbench_kernels``: the repository's ``kernels/``
folder never shadows Hugging Face's ``kernels`` (which current transformers imports), and
``harness env --check`` refuses an interpreter where ``kernels`` is something else.

The slow test builds a throw-away environment holding the newest transformers the package
index serves (and so Hugging Face's ``kernels``) and installs this project into it, editable
and as a wheel. Packages it does not install itself (torch and the harness's own
dependencies) come from this interpreter's site-packages through a ``.pth`` file that exists
only while Python runs there, never while pip does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.paths import REPO

IMPORTS = (
    "import kernels, transformers, shopbench_kernels.pad_checkpoint as pad; "
    "import transformers.models.qwen2.modeling_qwen2 as q; "
    "from transformers.integrations import hub_kernels; "
    "print(kernels.__file__); print(pad.__file__); print(transformers.__version__)"
)


def _write_fake_dist(root: Path, old_layout: Path | None = None) -> None:
    """A stand-in for Hugging Face's ``kernels`` distribution under ``root`` (its package and
    dist-info), and optionally, under ``old_layout``, a ``kernels`` package as an older
    install of this project left it."""
    (root / "kernels").mkdir(parents=True)
    (root / "kernels" / "__init__.py").write_text("CUDAProperties = object\n")
    info = root / "kernels-0.19.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kernels\nVersion: 0.19.1\n")
    (info / "RECORD").write_text("kernels/__init__.py,,\n")
    if old_layout is not None:
        (old_layout / "kernels").mkdir(parents=True)
        (old_layout / "kernels" / "__init__.py").write_text("")
        (old_layout / "kernels" / "pad_plan.py").write_text("")


def _env_check(python: str, cwd: Path, pythonpath: list[Path]) -> tuple[int, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    proc = subprocess.run(
        [python, "-m", "harness.cli", "env", "--check", "core", "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def test_the_kernels_folder_has_no_init_and_the_package_imports_as_shopbench_kernels() -> None:
    assert not (REPO / "kernels" / "__init__.py").exists()
    proc = subprocess.run(
        [sys.executable, "-c", "import shopbench_kernels.pad_plan as m; print(m.__file__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(proc.stdout.strip()).parent == REPO / "kernels" / "shopbench_kernels"


def test_env_check_refuses_kernels_of_an_older_install(tmp_path: Path) -> None:
    hf, old = tmp_path / "site", tmp_path / "old"
    _write_fake_dist(hf, old_layout=old)
    repo_harness = [REPO, REPO / "kernels"]
    # Hugging Face's `kernels` alone, run from the repository root: the folder does not win.
    rc, out = _env_check(sys.executable, REPO, [hf, *repo_harness])
    assert out["problems"] == [], out
    # An older install's `kernels` ahead of it on the path: refused, naming both.
    rc, out = _env_check(sys.executable, tmp_path, [old, hf, *repo_harness])
    assert rc == 1
    (problem,) = out["problems"]
    assert str(old / "kernels") in problem and "older shopbench-harness" in problem, problem
    assert "kernels==0.19.1" in problem
    # The same in text form: one line naming the cause.
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "env", "--check", "core"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [old, hf, *repo_harness]))},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "kernels: `import kernels` resolves to" in proc.stdout
    assert "Traceback" not in proc.stderr


def _record_digests(site: Path, dist: str) -> dict[str, str]:
    """sha256 of every file a distribution's RECORD lists (its code, not the pyc caches)."""
    (info,) = site.glob(f"{dist}-*.dist-info")
    out = {}
    for line in (info / "RECORD").read_text().splitlines():
        rel = line.split(",")[0]
        if rel and "__pycache__" not in rel and not rel.endswith(".dist-info/RECORD"):
            out[rel] = hashlib.sha256((site / rel).read_bytes()).hexdigest()
    return out


class _Env:
    """A throw-away virtualenv driven by this interpreter's pip (``pip --python``)."""

    def __init__(self, root: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        self.python = str(root / "bin" / "python")
        (self.site,) = (root / "lib").glob("python3*/site-packages")
        self.borrow = self.site / "zz_borrowed.pth"

    def pip(self, *args: str) -> str:
        self.borrow.unlink(missing_ok=True)  # pip sees only this environment's packages
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "--python", self.python, *args, "-q"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout

    def run(self, code: str, cwd: Path) -> list[str]:
        """Python code run in the environment from ``cwd``, borrowing what it lacks (torch,
        the harness's dependencies) from this interpreter's site-packages."""
        self.borrow.write_text(sysconfig.get_paths()["purelib"] + "\n")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = subprocess.run(
            [self.python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"from {cwd}:\n{proc.stderr[-3000:]}"
        return proc.stdout.split()


def _copy_project(dst: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "runs")
    for part in ("harness", "kernels"):
        shutil.copytree(REPO / part, dst / part, ignore=ignore)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, dst / f)
    return dst


@pytest.mark.slow
def test_newest_transformers_and_this_project_share_an_environment(tmp_path: Path) -> None:
    env = _Env(tmp_path / "venv")
    env.pip("install", "transformers")  # the newest the index serves, with Hugging Face's kernels
    if not list(env.site.glob("kernels-*.dist-info")):
        pytest.skip("the newest transformers the index serves does not require `kernels`")
    hf_files = _record_digests(env.site, "kernels")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def imports_work(project_dir: Path) -> None:
        for cwd in (REPO, elsewhere):
            kernels_file, pad_file, _version = env.run(IMPORTS, cwd)
            assert Path(kernels_file).is_relative_to(env.site), (cwd, kernels_file)
            assert Path(pad_file).is_relative_to(project_dir), (cwd, pad_file)

    # Editable: the project's padding code comes from the repository's kernels/ folder.
    env.pip("install", "--no-deps", "-e", str(REPO))
    imports_work(REPO / "kernels" / "shopbench_kernels")
    assert not (env.site / "kernels" / "pad_plan.py").exists()
    env.pip("uninstall", "-y", "shopbench-harness")
    assert _record_digests(env.site, "kernels") == hf_files

    # As a wheel: installed under its own name beside Hugging Face's package.
    wheels = tmp_path / "wheels"
    env.pip("wheel", "--no-deps", "-w", str(wheels), str(_copy_project(tmp_path / "src")))
    (wheel,) = wheels.glob("shopbench_harness-*.whl")
    env.pip("install", "--no-deps", str(wheel))
    imports_work(env.site / "shopbench_kernels")
    assert _record_digests(env.site, "kernels") == hf_files
    # The installed project's check accepts this environment...
    problems = env.run(
        "from harness.core.envs import kernels_problem; print(kernels_problem() or 'none')",
        elsewhere,
    )
    assert problems == ["none"]
    env.pip("uninstall", "-y", "shopbench-harness")
    assert _record_digests(env.site, "kernels") == hf_files
    assert not (env.site / "shopbench_kernels").exists()
    kernels_file, _ = env.run(
        "import kernels, transformers.models.qwen2.modeling_qwen2; print(kernels.__file__); "
        "print('ok')",
        elsewhere,
    )
    assert Path(kernels_file).is_relative_to(env.site)
