"""The prepared GPU check (``python -m harness.gpu_check``, ``nox -s gpu-pipeline``), run as a
whole process: the CPU dry run of gpu_small.yaml, and the real steps on light toy stages
(summary from the manifests, budget, timeouts that kill the step's process group)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from tests.support.paths import REPO

STAGES = ["model", "synthesize", "mix", "finetune", "pad", "quantize", "infer", "score", "report"]
TOY = ["--spec", "experiments/tiny_cpu.yaml", "--set", "stages=[toy_a,toy_b]"]
TOY += ["--set", "tracking.mode=disabled", "--skip", "gpu-tests"]


def _check(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "harness.gpu_check", "--out", str(out), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    summary = json.loads((out / "summary.json").read_text())
    return done, summary


def test_dry_run_validates_plans_and_writes_the_summary_skeleton(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    have = f"pydantic-{metadata.version('pydantic')}-py3-none-any.whl"
    new = "no_such_package_xyz-1.0-py3-none-any.whl"
    for name in (have, new):
        (wheels / name).write_bytes(b"")
    done, s = _check(tmp_path, "--dry-run", "--wheels", str(wheels))
    assert done.returncode == 0, done.stderr
    assert s["dry_run"] is True and s["spec"] == "experiments/gpu_small.yaml"
    assert s["validate"] == {"ok": True, "error": None}
    plan = s["plan"]
    assert plan["platform"] == "gpu" and plan["env_mode"] == "current"
    assert [st["stage"] for st in plan["stages"]] == STAGES
    assert plan["missing_inputs"] == []
    assert s["wheels"]["found"] == sorted([have, new])
    assert s["wheels"]["to_install"] == [new]
    assert s["wheels"]["already_installed"] == [have]

    steps = {st["name"]: st for st in s["steps"]}
    assert list(steps) == ["wheels", "env-check", "gpu-tests", "pipeline"]
    assert {st["status"] for st in steps.values()} == {"planned"}
    pip = steps["wheels"]["command"]
    assert pip[1:4] == ["-m", "pip", "install"] and "--no-index" in pip
    assert pip[pip.index("--find-links") + 1] == str(wheels) and pip[-1] == str(wheels / new)
    assert "-m" in steps["gpu-tests"]["command"] and "gpu" in steps["gpu-tests"]["command"]
    assert "tests/test_finetune_train.py" in s["gpu_tests"]["files"]
    assert steps["pipeline"]["command"][-2:] == ["run", "experiments/gpu_small.yaml"]
    assert all(st["timeout_s"] for n, st in steps.items() if n != "pipeline")
    for name, st in steps.items():
        assert name in done.stdout and " ".join(st["command"]) in done.stdout

    assert set(s["env_check"]["unmet"]) == {"core", "serve", "train", "quant"}
    assert "harness/envs/serve-gpu.txt" in s["env_check"]["unmet_counts"]["serve"]
    m = s["metrics"]
    for stage, key in [
        ("finetune", "loss_first"),
        ("finetune", "loss_last"),
        ("quantize", "size_ratio"),
        ("quantize", "recon_error_mean"),
        ("quantize", "logprob_gap_mean"),
        ("infer", "output_tokens_per_s"),
        ("infer", "engine"),
        ("score", "overall"),
    ]:
        assert key in m[stage] and m[stage][key] is None
    assert s["pipeline"]["unfinished_stages"] == STAGES
    assert [f"stage:{st}" for st in STAGES] == s["unfinished"][-len(STAGES) :]
    assert not (tmp_path / "out" / "runs").exists()  # a dry run runs nothing


def test_dry_run_imports_no_heavy_package(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from harness.gpu_check import main\n"
        f"assert main(['--dry-run', '--out', {str(tmp_path)!r}]) == 0\n"
        "heavy = sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_run_reads_stage_wall_times_from_the_manifests(tmp_path: Path) -> None:
    done, s = _check(tmp_path, *TOY, "--wheels", str(tmp_path / "none"), "--budget", "240")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert s["dry_run"] is False and s["unfinished"] == []
    steps = {st["name"]: st for st in s["steps"]}
    assert steps["wheels"]["status"] == "ok" and steps["wheels"]["detail"] == "no wheel to install"
    assert steps["env-check"]["status"] == "ok" and steps["pipeline"]["status"] == "ok"
    assert steps["gpu-tests"]["status"] == "skipped"
    assert steps["pipeline"]["timeout_s"] <= 240
    assert s["env_check"]["unmet_counts"] == {"core": {"harness/envs/cpu.txt": 0}}
    p = s["pipeline"]
    assert p["status"] == "ok" and p["unfinished_stages"] == []
    assert set(p["stages"]) == {"toy_a", "toy_b"}
    for name, rec in p["stages"].items():
        manifest = json.loads(
            (
                Path(p["run_dir"]).parents[2] / "stages" / name / rec["key"] / "manifest.json"
            ).read_text()
        )
        assert rec["wall_s"] == manifest["wall_s"] > 0
        assert rec["env_mode"] == "current" and rec["cached"] is False
    assert Path(p["run_dir"]).is_relative_to(tmp_path / "out" / "runs")
    # Each stage's metrics are those its result model declares (the toy stages': one each).
    assert s["metrics"] == {"toy_a": {"seed": 0.0}, "toy_b": {"score": 0.5}}
    assert s["wall_s"] < 240


def test_a_spent_budget_runs_nothing_and_says_what_did_not_finish(tmp_path: Path) -> None:
    done, s = _check(tmp_path, *TOY, "--wheels", str(tmp_path / "none"), "--budget", "12")
    assert done.returncode == 1
    steps = {st["name"]: st["status"] for st in s["steps"]}
    assert steps == {
        "wheels": "ok",
        "env-check": "not run",
        "gpu-tests": "skipped",
        "pipeline": "not run",
    }
    assert s["pipeline"]["status"] == "not started"
    assert s["unfinished"] == ["env-check", "pipeline", "stage:toy_a", "stage:toy_b"]


def test_a_step_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    done, s = _check(
        tmp_path,
        *TOY,
        "--wheels",
        str(tmp_path / "none"),
        "--budget",
        "30",
        env={"TOY_SLEEP": "120"},
    )
    assert time.perf_counter() - t0 < 60
    assert done.returncode == 1
    pipeline = next(st for st in s["steps"] if st["name"] == "pipeline")
    assert pipeline["status"] == "timeout" and pipeline["tail"]
    p = s["pipeline"]
    assert p["status"] == "running (killed)" and p["unfinished_stages"] == ["toy_a", "toy_b"]
    assert s["unfinished"] == ["pipeline", "stage:toy_a", "stage:toy_b"]
    started = Path(p["run_dir"]) / "toy_a.started"
    assert started.is_file()  # the stage process was sleeping when the step was killed
    pid = int(started.read_text())
    time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
