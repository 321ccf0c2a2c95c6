"""Running where environments cannot be created: ``harness env --check`` and the
current-interpreter mode (``run.env_mode`` / ``HARNESS_ENV_MODE``): which pins are unmet,
what enters the stage keys, and what the manifests record."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.core import envs
from harness.core.plan import build_plan, load_history, reasons, save_history
from harness.errors import HarnessError
from harness.spec import load_spec
from tests.support.paths import REPO
from tests.support.paths import TINY_CPU as TINY

GPU_SMALL = REPO / "experiments" / "gpu_small.yaml"
TOY = ["stages=[toy_a,toy_b]", "tracking.mode=disabled"]
ENTRY = re.compile(r"^[a-z0-9][a-z0-9-]*==\S+ \((have \S+|missing)\)$")
PYDANTIC = metadata.version("pydantic")
PYYAML = metadata.version("pyyaml")


@pytest.fixture()
def pin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pin files of known state: one met pin, one at another version, one missing package;
    each GPU role's file differs, so the role -> file mapping shows."""
    d = tmp_path / "envs"
    d.mkdir()
    (d / "cpu.txt").write_text(f"# CPU pins\npydantic=={PYDANTIC}\n", encoding="utf-8")
    (d / "serve-gpu.txt").write_text(
        f"pydantic=={PYDANTIC}\nPyYAML==0.0.1\nno-such-package-xyz==1.0\n", encoding="utf-8"
    )
    (d / "train-gpu.txt").write_text("no_such.package-xyz==2.0\n", encoding="utf-8")
    (d / "quant-gpu.txt").write_text(f"pydantic=={PYDANTIC}\n", encoding="utf-8")
    for platform in ("cpu", "gpu"):
        (d / f"llmcompressor-{platform}.txt").write_text(
            "no-such-package-xyz==3.0\n", encoding="utf-8"
        )
    monkeypatch.setattr(envs, "ENV_DIR", d)
    monkeypatch.delenv("HARNESS_ENV_MODE", raising=False)
    return d


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    rc = cli_main(["env", "--check", *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


# --------------------------------------------------------------------------- env --check


def test_check_lists_unmet_pins_per_role_and_file(
    pin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, doc = _check(capsys, "--platform", "gpu")
    assert rc == 1
    assert doc["platform"] == "gpu"
    assert doc["unmet"] == {
        "core": {"harness/envs/cpu.txt": []},
        "serve": {
            "harness/envs/serve-gpu.txt": [
                "no-such-package-xyz==1.0 (missing)",
                f"pyyaml==0.0.1 (have {PYYAML})",
            ]
        },
        "train": {"harness/envs/train-gpu.txt": ["no-such-package-xyz==2.0 (missing)"]},
        "quant": {"harness/envs/quant-gpu.txt": []},
        "llmcompressor": {
            "harness/envs/llmcompressor-gpu.txt": ["no-such-package-xyz==3.0 (missing)"]
        },
    }
    for files in doc["unmet"].values():
        for entries in files.values():
            assert all(ENTRY.match(e) for e in entries), entries


def test_check_exits_zero_when_every_pin_is_met(
    pin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["env", "--check", "quant", "core", "--platform", "gpu"]) == 0
    out = capsys.readouterr().out
    assert "quant (gpu): harness/envs/quant-gpu.txt: all pins met" in out
    assert "core (gpu): harness/envs/cpu.txt: all pins met" in out
    assert cli_main(["env", "--check", "serve", "--platform", "gpu"]) == 1
    out = capsys.readouterr().out
    assert "serve (gpu): harness/envs/serve-gpu.txt: 2 unmet" in out
    assert "  no-such-package-xyz==1.0 (missing)" in out


def test_check_of_a_spec_uses_its_stages_roles_and_platform(
    pin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, doc = _check(capsys, str(GPU_SMALL))
    assert rc == 1 and doc["platform"] == "gpu"  # run.platform: gpu
    assert list(doc["unmet"]) == ["core", "serve", "train", "quant"]
    assert doc["unmet"]["train"] == {
        "harness/envs/train-gpu.txt": ["no-such-package-xyz==2.0 (missing)"]
    }
    rc, doc = _check(capsys, str(TINY))
    assert rc == 0 and doc["platform"] == "cpu"
    assert all(files == {"harness/envs/cpu.txt": []} for files in doc["unmet"].values())
    rc, doc = _check(capsys, str(GPU_SMALL), "--platform", "cpu")  # --platform overrides it
    assert rc == 0 and doc["platform"] == "cpu"
    assert all(files == {"harness/envs/cpu.txt": []} for files in doc["unmet"].values())


def test_env_without_roles_or_with_unknown_ones_is_a_user_error(pin_dir: Path) -> None:
    assert cli_main(["env"]) == 2
    assert cli_main(["env", "bogus"]) == 2
    assert cli_main(["env", "--check", "bogus"]) == 2


def test_the_real_cpu_pins_hold_in_the_project_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """.venv is built from cpu.txt: nothing of it is unmet on CPU. llm-compressor's pins
    (transformers 5.17, compressed-tensors 0.19) are those cpu.txt cannot hold."""
    rc, doc = _check(capsys, "--platform", "cpu")
    assert rc == 1
    assert set(doc["unmet"]) == {"core", "serve", "train", "quant", "llmcompressor"}
    assert all(doc["unmet"][r] == {"harness/envs/cpu.txt": []} for r in ("core", "serve"))
    assert all(doc["unmet"][r] == {"harness/envs/cpu.txt": []} for r in ("train", "quant"))
    unmet = doc["unmet"]["llmcompressor"]["harness/envs/llmcompressor-cpu.txt"]
    assert any(e.startswith(("transformers==", "compressed-tensors==")) for e in unmet)


# --------------------------------------------------------------------------- the mode


def test_mode_comes_from_the_spec_and_the_variable_overrides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HARNESS_ENV_MODE", raising=False)
    assert envs.env_mode() == "pinned" and envs.env_mode("current") == "current"
    assert build_plan(load_spec(TINY, TOY), REPO).env_mode == "pinned"
    assert build_plan(load_spec(TINY, [*TOY, "run.env_mode=current"]), REPO).env_mode == "current"
    monkeypatch.setenv("HARNESS_ENV_MODE", "current")
    assert build_plan(load_spec(TINY, TOY), REPO).env_mode == "current"
    monkeypatch.setenv("HARNESS_ENV_MODE", "pinned")
    assert build_plan(load_spec(TINY, [*TOY, "run.env_mode=current"]), REPO).env_mode == "pinned"
    monkeypatch.setenv("HARNESS_ENV_MODE", "loose")
    with pytest.raises(HarnessError, match=r"HARNESS_ENV_MODE='loose'.*pinned, current"):
        envs.env_mode("pinned")


def test_a_bad_spec_mode_names_its_key() -> None:
    with pytest.raises(HarnessError, match=r"run\.env_mode"):
        load_spec(TINY, ["run.env_mode=loose"])


def test_current_mode_never_creates_an_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(req: Path) -> str:
        raise AssertionError(f"would create an environment from {req}")

    monkeypatch.setattr(envs, "ensure_env", refuse)
    for role in ("core", "serve", "train", "quant"):
        assert envs.python_for(role, "gpu", "current") == sys.executable
    with pytest.raises(AssertionError, match=r"serve-gpu\.txt"):
        envs.python_for("serve", "gpu", "pinned")


def test_pinned_key_material_is_unchanged_and_current_mode_keys_differ(pin_dir: Path) -> None:
    pinned = build_plan(load_spec(TINY, TOY), REPO)
    current = build_plan(load_spec(TINY, [*TOY, "run.env_mode=current"]), REPO)
    a, c = pinned.by_name("toy_a"), current.by_name("toy_a")
    assert a.envs == {"core": {**envs.pins_digest("core", "cpu"), "platform": "cpu"}}
    assert set(a.envs["core"]) == {"file", "pins", "platform"}
    assert set(c.envs["core"]) == {"file", "mode", "installed", "platform"}
    assert c.envs["core"]["mode"] == "current"
    assert a.key != c.key
    assert pinned.by_name("toy_b").key != current.by_name("toy_b").key  # via upstream


def test_current_keys_follow_installed_versions_not_pin_versions(
    pin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def keys(mode: str) -> str:
        return (
            build_plan(load_spec(TINY, [*TOY, f"run.env_mode={mode}"]), REPO).by_name("toy_a").key
        )

    pinned, current = keys("pinned"), keys("current")
    (pin_dir / "cpu.txt").write_text("pydantic==0.0.1\n", encoding="utf-8")  # a new pin
    repinned = keys("pinned")
    assert repinned != pinned
    assert keys("current") == current  # the same installed version
    real = envs.installed_versions()
    monkeypatch.setattr(envs, "installed_versions", lambda: {**real, "pydantic": "0.0.2"})
    assert keys("current") != current  # another installed version
    assert keys("pinned") == repinned


def test_switching_mode_is_an_environment_change_in_the_plan(
    pin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(tmp_path / "runs"))
    pinned = build_plan(load_spec(TINY, TOY), REPO)
    save_history(pinned)
    current = build_plan(load_spec(TINY, [*TOY, "run.env_mode=current"]), REPO)
    why = reasons(current, load_history(current))
    assert {
        "kind": "environment changed",
        "detail": "harness/envs/cpu.txt (cpu, current interpreter)",
    } in why["toy_a"]


# --------------------------------------------------------------------------- a real run


def test_current_mode_run_uses_this_interpreter_and_records_installed_pins(
    tmp_path: Path,
) -> None:
    """A stage of the `serve` role on a GPU platform whose pins this interpreter does not
    meet runs with this interpreter (no environment is created); its manifest records the
    mode and the installed versions of serve-gpu.txt's pinned packages."""
    runs, env_root = tmp_path / "runs", tmp_path / "envs"
    env = {
        **os.environ,
        "HARNESS_STAGE_PLUGINS": "tests.plugins.toy_stages,tests.plugins.env_probe",
        "HARNESS_ENV_MODE": "current",
        "HARNESS_RUNS_ROOT": str(runs),
        "HARNESS_ENV_ROOT": str(env_root),
    }
    args = [str(TINY), "stages=[env_probe]", "run.platform=gpu", "tracking.mode=disabled"]
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "pin(s) of harness/envs/serve-gpu.txt unmet" in done.stderr
    assert not env_root.exists()
    (stage_dir,) = [
        d for d in (runs / "stages" / "env_probe").iterdir() if not d.name.startswith(".")
    ]
    m = json.loads((stage_dir / "manifest.json").read_text())
    assert m["env_mode"] == "current"
    assert m["envs"]["serve"]["mode"] == "current" and "pins" not in m["envs"]["serve"]
    assert m["result"]["summary"] == {"python": sys.executable, "platform": "gpu"}
    recorded = m["installed_pins"]["serve"]
    assert recorded["file"] == "harness/envs/serve-gpu.txt"
    pins = envs.read_pins(REPO / "harness" / "envs" / "serve-gpu.txt")
    have = envs.installed_versions()
    assert recorded["versions"] == {n: have.get(n) for n in pins}
    assert None in recorded["versions"].values()  # e.g. the CUDA libraries
    run = json.loads(next((runs / "runs").rglob("run.json")).read_text())
    assert run["env_mode"] == "current" and run["environment"]["HARNESS_ENV_MODE"] == "current"

    plan = json.loads(
        subprocess.run(
            [sys.executable, "-m", "harness.cli", "plan", *args, "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            check=True,
        ).stdout
    )
    assert plan["env_mode"] == "current"
    assert [s["status"] for s in plan["stages"]] == ["cached"]
    pinned = json.loads(
        subprocess.run(
            [sys.executable, "-m", "harness.cli", "plan", *args, "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**env, "HARNESS_ENV_MODE": "pinned"},
            check=True,
        ).stdout
    )
    assert pinned["stages"][0]["key"] != plan["stages"][0]["key"]
    assert pinned["stages"][0]["status"] == "will run"
