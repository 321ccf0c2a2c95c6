"""The executor: caching, atomic stage dirs, SIGKILL safety, manifests, tracking sinks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.executor import execute
from harness.core.plan import MANIFEST, build_plan
from harness.spec import load_spec
from tests.support.paths import REPO
from tests.support.paths import TINY_CPU as TINY
from tests.support.wandb_log import read_run

TOY = ["stages=[toy_a,toy_b]"]


@pytest.fixture()
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(root))
    monkeypatch.setenv("TOY_SLEEP", "0")
    return root


def _run(*overrides: str, mode: str = "disabled"):
    plan = build_plan(load_spec(TINY, [*TOY, f"tracking.mode={mode}", *overrides]), REPO)
    return plan, execute(plan)


def test_second_run_is_fully_cached(runs: Path) -> None:
    plan, first = _run()
    assert [o.cached for o in first.outcomes] == [False, False]
    _, second = _run()
    assert [o.cached for o in second.outcomes] == [True, True]
    assert [o.dir for o in second.outcomes] == [o.dir for o in first.outcomes]
    m = json.loads((first.dir_of("toy_b") / MANIFEST).read_text())
    assert m["key"] == plan.by_name("toy_b").key
    assert m["upstream_keys"] == {"numbers": plan.by_name("toy_a").key}
    assert m["outputs"]["rows.jsonl"]["sha256"]
    assert m["result"]["metrics"]["score"] == 0.5
    run = json.loads((second.run_dir / "run.json").read_text())
    assert run["status"] == "ok" and run["stages"]["toy_b"]["cached"] is True
    assert {"sha", "dirty"} <= set(run["git"]) and "pydantic" not in run["packages"]
    assert run["host"]["cpus"] >= 1


def test_decoding_override_reruns_only_downstream(runs: Path) -> None:
    _run()
    _, again = _run("decoding.generation.temperature=0.7")
    assert [o.cached for o in again.outcomes] == [True, False]
    assert again.outcomes[1].result.metrics["score"] == pytest.approx(0.57)


def test_sigkilled_stage_is_rerun_and_never_reused(runs: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TOY_SLEEP": "60"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(TINY), *TOY, "tracking.mode=disabled"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    started = []
    while time.time() < deadline and not started:
        started = list(runs.glob("runs/tiny_cpu/*/toy_a.started"))
        time.sleep(0.2)
    assert started, "toy_a never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stage_root = runs / "stages" / "toy_a"
    half = list(stage_root.glob(".tmp-*"))
    assert half and (half[0] / "numbers.txt").read_text() == "seed=0\n"
    assert not [d for d in stage_root.iterdir() if not d.name.startswith(".")]
    _, summary = _run()
    assert [o.cached for o in summary.outcomes] == [False, False]
    assert (summary.dir_of("toy_a") / "numbers.txt").read_text().endswith("done\n")
    assert not list(stage_root.glob(".tmp-*")), "stale temp dir of a dead run not cleaned"


def test_failed_stage_leaves_nothing_reusable(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import StageError

    monkeypatch.setenv("TOY_SLEEP", "not-a-number")
    with pytest.raises(StageError, match="toy_a"):
        _run()
    assert not [d for d in (runs / "stages" / "toy_a").iterdir() if (d / MANIFEST).exists()]
    run_json = json.loads(next(runs.glob("runs/tiny_cpu/*/run.json")).read_text())
    assert run_json["status"] == "failed"


def test_wandb_offline_run_holds_config_and_metrics_without_secrets(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-" + "x" * 24
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    _, summary = _run(f"description=key {secret}", mode="auto")
    assert summary.wandb_dir is not None and summary.wandb_dir.name.startswith("offline-run-")
    data = read_run(summary.wandb_dir)
    cfg = data["config"]
    value = lambda k: cfg[k]["value"] if isinstance(cfg[k], dict) and "value" in cfg[k] else cfg[k]  # noqa: E731
    assert value("name") == "tiny_cpu"
    assert value("infer")["tensor_parallel_size"] == 2
    assert value("description") == "key ***"
    rows = {k: v for row in data["history"] for k, v in row.items()}
    assert rows["toy_b/score"] == 0.5 and "toy_a/wall_s" in rows
    for path in summary.run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_wandb_sink_logs_baseline_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Report baselines add stages named `<baseline>/<stage>`: W&B must accept them."""
    from harness.core.stage import StageResult
    from harness.tracking import WandbSink

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    stage_dir = tmp_path / "stage"
    stage_dir.mkdir()
    (stage_dir / "rows.jsonl").write_text('{"a": 1, "b": [1, 2]}\n{"a": "x", "b": null}\n')
    sink = WandbSink(tmp_path, project="p", entity=None, mode="offline", name="n", tags=[])
    result = StageResult(metrics={"overall": 0.25}, tables={"rows": "rows.jsonl"})
    sink.log_stage("untuned/infer", "ab12", result, stage_dir, 1.5, False)
    run_path = sink.run_path
    sink.finish()
    assert run_path is not None
    rows = {k: v for row in read_run(run_path)["history"] for k, v in row.items()}
    assert rows["untuned/infer/overall"] == 0.25 and rows["untuned/infer/wall_s"] == 1.5
