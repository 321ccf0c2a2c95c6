"""Sweeps: sweep-file validation, W&B search semantics, trials through the harness with shared
upstream stages, failure recording, the results, and resuming a killed sweep."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Client
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from harness import cli
from harness.core import stage as base
from harness.core.plan import MANIFEST, build_plan
from harness.inference.engine_pool import HOST_INFO, POOL_ENV
from harness.spec import load_spec
from harness.sweeps.cli import load_sweep
from harness.sweeps.config import SweepError
from harness.sweeps.executors import choose_executor, run_sweep
from harness.sweeps.space import TrialSource, planned_trials
from harness.sweeps.trial import TrialJob, read_ledger, run_trial, trial_id
from tests.plugins.sweep_probe import PROBE, UNLUCKY_TOP_K, sweep_probe
from tests.support.paths import REPO
from tests.support.runs import run_spec
from tests.support.served_sweep import (
    alive,
    gone,
    infer_summaries,
    stage_workers,
    start_sweep,
    wait_for_engines,
    write_served_sweep,
)
from tests.support.wandb_log import read_run

TINY = REPO / "experiments" / "tiny_cpu.yaml"
TOY = ["stages=[toy_a,toy_b]", "tracking.mode=disabled"]
PROBED = ["stages=[toy_a,toy_b,sweep_probe]", "tracking.mode=disabled"]
TEMPERATURE = "decoding.generation.temperature"


@pytest.fixture()
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(root))
    monkeypatch.setenv("TOY_SLEEP", "0")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return root


@pytest.fixture()
def probe(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Register ``sweep_probe`` here and in stage subprocesses and Ray workers."""
    monkeypatch.setenv("SWEEP_PROBE", "1")
    monkeypatch.setenv("SWEEP_PROBE_SLEEP", "0")
    monkeypatch.setenv(
        "HARNESS_STAGE_PLUGINS", "tests.plugins.toy_stages,tests.plugins.sweep_probe"
    )
    base.stage_defs()  # the toy stages first: plugins run in registration order
    base.stage(**PROBE)(sweep_probe)
    request.addfinalizer(lambda: base.STAGES.remove("sweep_probe"))


def write_sweep(tmp_path: Path, body: dict[str, Any], name: str = "toy") -> Path:
    """A sweep file over tiny_cpu.yaml (``spec`` absolute, so it can live anywhere)."""
    cfg = {"name": name, "spec": str(TINY), "metric": {"name": "score", "goal": "maximize"}}
    cfg.update(body)
    path = tmp_path / f"{name}.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)), encoding="utf-8")
    return path


def stage_dirs(runs: Path, stage: str) -> list[Path]:
    """Finished dirs (with a manifest) of a stage."""
    return sorted(p.parent for p in (runs / "stages" / stage).glob(f"*/{MANIFEST}"))


# --------------------------------------------------------------------------- validation


def test_unknown_parameter_key_fails_before_any_trial(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        f"name: typo\nspec: {TINY}\nmethod: grid\nmetric: {{name: score, goal: maximize}}\n"
        'overrides: ["stages=[toy_a,toy_b]"]\n'
        "parameters:\n"
        "  decoding.generation.temprature:\n"
        "    values: [0.0, 0.5]\n",
        encoding="utf-8",
    )
    assert cli.main(["sweep", str(path), "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7" in err
    assert "`decoding.generation.temprature`" in err
    assert "did you mean `decoding.generation.temperature`" in err
    assert not runs.exists(), "nothing may run (or be created) before the sweep is valid"


@pytest.mark.parametrize(
    ("body", "line", "expect"),
    [
        (
            {"method": "grid", "parameters": {"decoding.generaton.top_p": {"values": [0.5]}}},
            "  decoding.generaton.top_p",
            "did you mean `decoding.generation`",
        ),
        (
            {"method": "grid", "parameters": {"decoding.generation.top_p": {"values": [0.5, 1.5]}}},
            "  decoding.generation.top_p",
            "= 1.5: `decoding.generation.top_p`: Input should be less than or equal to 1",
        ),
        (
            {"method": "grid", "parameters": {TEMPERATURE: {"min": 0.0, "max": 1.0}}},
            f"  {TEMPERATURE}",
            "grid search needs `values` or `value` (got distribution `uniform`)",
        ),
        (
            {"method": "random", "parameters": {TEMPERATURE: {"values": [0.0]}}},
            "method",
            "a random sweep needs `run_cap`",
        ),
        (
            {"method": "grid", "paramaters": {}, "parameters": {TEMPERATURE: {"value": 0.1}}},
            "paramaters",
            "unknown key `paramaters` (did you mean `parameters`?)",
        ),
        (
            {
                "method": "random",
                "run_cap": 2,
                "parameters": {TEMPERATURE: {"distribution": "beta", "a": 1, "b": 2}},
            },
            f"  {TEMPERATURE}",
            "distribution `beta` is not supported",
        ),
        (
            {
                "method": "random",
                "run_cap": 2,
                "parameters": {TEMPERATURE: {"distribution": "unifrom", "min": 0, "max": 1}},
            },
            f"  {TEMPERATURE}",
            "unknown distribution `unifrom` (did you mean `uniform`?)",
        ),
        (
            {"method": "grid", "parameters": {TEMPERATURE: {"min": 1.0, "max": 0.5}}},
            f"  {TEMPERATURE}",
            "`min` (1.0) must be below `max` (0.5)",
        ),
        (
            {"method": "grid", "early_terminate": {"type": "hyperband"}, "parameters": {}},
            "early_terminate",
            "`early_terminate` is not supported",
        ),
        (
            {"method": "grid", "parameters": {"name": {"values": ["a", "b"]}}},
            "  name",
            "each trial's spec name is set by the sweep",
        ),
    ],
)
def test_bad_sweep_files_name_line_and_key(
    tmp_path: Path, body: dict[str, Any], line: str, expect: str
) -> None:
    path = write_sweep(tmp_path, {"overrides": TOY, **body}, name="bad")
    with pytest.raises(SweepError) as e:
        load_sweep(path)
    msg = str(e.value)
    assert expect in msg
    lines = path.read_text().splitlines()
    # Indented names are parameter keys: look for them under `parameters:`.
    start = lines.index("parameters:") if line.startswith(" ") else 0
    want = next(i + 1 for i, t in enumerate(lines) if i >= start and t.startswith(f"{line}:"))
    assert f"{path}:{want}:" in msg


def test_base_spec_problems_are_reported_against_the_sweep(tmp_path: Path) -> None:
    path = write_sweep(
        tmp_path,
        {
            "method": "grid",
            "overrides": ["stages=[toy_a,toy_b]", "infer.tensor_paralel_size=2"],
            "parameters": {TEMPERATURE: {"values": [0.0]}},
        },
    )
    with pytest.raises(SweepError, match=r"did you mean `infer\.tensor_parallel_size`"):
        load_sweep(path)
    missing = write_sweep(tmp_path, {"spec": "nope.yaml", "method": "grid"}, name="nospec")
    with pytest.raises(SweepError, match=r"base spec not found: nope\.yaml"):
        load_sweep(missing)


def test_experiment_sweeps_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    decoding = load_sweep(REPO / "experiments" / "sweeps" / "decoding.yaml")
    assert decoding.spec_path == TINY
    assert len(planned_trials(decoding)) == 6
    prompts = load_sweep(REPO / "experiments" / "sweeps" / "prompts.yaml")
    trials = planned_trials(prompts)
    assert {t["prompts.variant"] for t in trials} == {"plain", "taskwise"}
    assert None in {t["prompts.non_mc_suffix"] for t in trials}
    theta = load_sweep(REPO / "experiments" / "sweeps" / "wise_ft_theta.yaml")
    assert [t["finetune.merge.wise_ft_theta"] for t in planned_trials(theta)] == [
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    n = len(list((REPO / "experiments" / "sweeps").glob("*.yaml")))
    assert cli.main(["validate", str(REPO / "experiments" / "sweeps")]) == 0
    assert f"{n}/{n} valid ({n} sweeps)" in capsys.readouterr().out


# --------------------------------------------------------------------------- search semantics


def test_grid_is_the_product_of_values_capped_by_run_cap(tmp_path: Path) -> None:
    params = {
        TEMPERATURE: {"values": [0.0, 0.5, 1.0]},
        "decoding.generation.top_k": {"values": [-1, 5]},
        "decoding.generation.top_p": {"value": 0.9},
    }
    sweep = load_sweep(
        write_sweep(tmp_path, {"method": "grid", "overrides": TOY, "parameters": params})
    )
    trials = planned_trials(sweep)
    assert len(trials) == 6
    assert {(t[TEMPERATURE], t["decoding.generation.top_k"]) for t in trials} == {
        (a, b) for a in (0.0, 0.5, 1.0) for b in (-1, 5)
    }
    assert all(t["decoding.generation.top_p"] == 0.9 for t in trials)
    capped = write_sweep(
        tmp_path, {"method": "grid", "overrides": TOY, "parameters": params, "run_cap": 4}, "cap"
    )
    assert planned_trials(load_sweep(capped)) == trials[:4]


def test_random_sampling_follows_wandb_distributions_and_is_seeded(tmp_path: Path) -> None:
    params = {
        TEMPERATURE: {"min": 0.1, "max": 0.9},
        "decoding.generation.top_k": {"min": 1, "max": 3},
        "decoding.generation.top_p": {"distribution": "log_uniform", "min": -2.0, "max": 0.0},
        "decoding.generation.repetition_penalty": {
            "distribution": "q_uniform",
            "min": 1.0,
            "max": 2.0,
            "q": 0.25,
        },
        "prompts.variant": {"values": ["plain", "taskwise"]},
    }
    body = {"method": "random", "run_cap": 60, "seed": 7, "overrides": TOY, "parameters": params}
    sweep = load_sweep(write_sweep(tmp_path, body))
    trials = planned_trials(sweep)
    assert len(trials) == 60
    assert trials == planned_trials(load_sweep(write_sweep(tmp_path, body, "again")))
    temps = [t[TEMPERATURE] for t in trials]
    assert all(0.1 <= v <= 0.9 for v in temps) and len(set(temps)) == 60
    # int_uniform: integers, W&B's max inclusive (60 draws from 3 values hit every one).
    assert {t["decoding.generation.top_k"] for t in trials} == {1, 2, 3}
    assert all(isinstance(t["decoding.generation.top_k"], int) for t in trials)
    # log_uniform: min/max are natural logs of the bounds.
    assert all(math.exp(-2.0) <= t["decoding.generation.top_p"] <= 1.0 for t in trials)
    assert {t["decoding.generation.repetition_penalty"] for t in trials} <= {
        1.0,
        1.25,
        1.5,
        1.75,
        2.0,
    }
    assert {t["prompts.variant"] for t in trials} == {"plain", "taskwise"}
    other = load_sweep(write_sweep(tmp_path, {**body, "seed": 8}, "seed8"))
    assert planned_trials(other) != trials


def test_bayes_runs_through_a_tune_searcher_or_says_what_to_install(
    runs: Path, tmp_path: Path
) -> None:
    body = {
        "method": "bayes",
        "run_cap": 3,
        "overrides": TOY,
        "parameters": {TEMPERATURE: {"min": 0.0, "max": 2.0}},
    }
    sweep = load_sweep(write_sweep(tmp_path, body))
    if not any(importlib.util.find_spec(m) for m in ("optuna", "hyperopt")):
        with pytest.raises(SweepError, match=r"pip install optuna"):
            TrialSource(sweep)
        return
    run = run_sweep(sweep, executor="local", project_root=REPO)
    assert len(run.records) == 3 and all(r.ok and not r.skipped for r in run.records)
    assert all(0.0 <= r.params[TEMPERATURE] <= 2.0 for r in run.records)
    assert len(stage_dirs(runs, "toy_a")) == 1
    # A rerun with a higher cap starts the search from the finished trials.
    more = load_sweep(write_sweep(tmp_path, {**body, "run_cap": 4}))
    again = run_sweep(more, executor="local", project_root=REPO)
    assert [r.skipped for r in again.records] == [True, True, True, False]
    assert {r.trial for r in again.records[:3]} == {r.trial for r in run.records}


# --------------------------------------------------------------------------- running


@pytest.mark.slow
def test_trials_share_upstream_stages_and_results_are_written(runs: Path, tmp_path: Path) -> None:
    temps = [0.0, 0.5, 1.0]
    body = {"method": "grid", "overrides": TOY, "parameters": {TEMPERATURE: {"values": temps}}}
    sweep = load_sweep(write_sweep(tmp_path, body))
    run = run_sweep(sweep, executor="local", project_root=REPO)

    assert [r.params[TEMPERATURE] for r in run.records] == temps
    assert all(r.ok and not r.skipped for r in run.records)
    assert [r.metric for r in run.records] == pytest.approx([0.5 + t / 10 for t in temps])
    # toy_a (model.tiny.seed) is not swept: it ran once and every trial used that one key.
    (a_dir,) = stage_dirs(runs, "toy_a")
    assert {r.stage_keys["toy_a"] for r in run.records} == {a_dir.name}
    assert [r.ran for r in run.records] == [["toy_a", "toy_b"], ["toy_b"], ["toy_b"]]
    b_dirs = stage_dirs(runs, "toy_b")
    assert {d.name for d in b_dirs} == {r.stage_keys["toy_b"] for r in run.records}
    assert len(b_dirs) == 3
    for d in b_dirs:
        assert json.loads((d / MANIFEST).read_text())["upstream_keys"] == {"numbers": a_dir.name}

    d = runs / "sweeps" / "toy"
    assert run.dir == d
    rows = [json.loads(x) for x in (d / "results.jsonl").read_text().splitlines()]
    assert [row[TEMPERATURE] for row in rows] == temps
    assert [row["toy_b/score"] for row in rows] == pytest.approx([0.5, 0.55, 0.6])
    assert [row["status"] for row in rows] == ["ok"] * 3
    png = (d / "score_vs_params.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    page = (d / "index.html").read_text(encoding="utf-8")
    assert all(r.trial in page for r in run.records) and "toy_b/score" in page
    assert run.best is not None and run.best.params[TEMPERATURE] == 1.0
    assert json.loads((d / "best.json").read_text())["trial"] == run.best.trial
    best = load_spec(d / "best_spec.yaml")
    assert best.spec.decoding.generation.temperature == 1.0
    assert best.spec.stages == ["toy_a", "toy_b"]
    # The best spec, run as it is, hits the sweep's cache for every stage.
    plan = build_plan(best, REPO)
    assert plan.by_name("toy_b").key == run.best.stage_keys["toy_b"]
    assert all(plan.is_cached(st) for st in plan.stages)

    again = run_sweep(load_sweep(sweep.path), executor="local", project_root=REPO)
    assert all(r.skipped for r in again.records)
    assert [r.trial for r in again.records] == [r.trial for r in run.records]
    assert len(list((runs / "runs").glob("*-toy-*/2*"))) == 3, "no trial ran again"


@pytest.mark.slow
def test_failing_trial_is_recorded_and_the_sweep_goes_on(
    runs: Path, tmp_path: Path, probe: None
) -> None:
    top_k = "decoding.generation.top_k"
    body = {
        "method": "grid",
        "overrides": PROBED,
        "parameters": {TEMPERATURE: {"value": 1.0}, top_k: {"values": [UNLUCKY_TOP_K, -1]}},
    }
    sweep = load_sweep(write_sweep(tmp_path, body))
    run = run_sweep(sweep, executor="local", project_root=REPO)
    failed, ok = run.records
    assert failed.params[top_k] == UNLUCKY_TOP_K and not failed.ok and failed.metric is None
    error = failed.error or ""
    assert "stage `sweep_probe` failed" in error and "unlucky" in error
    # What ran before the failure is kept: toy_a and toy_b finished, the probe did not.
    assert failed.ran == ["toy_a", "toy_b"] and failed.run_dir
    assert json.loads((Path(failed.run_dir) / "run.json").read_text())["status"] == "failed"
    assert ok.ok and ok.metric == pytest.approx(0.6), "the sweep went on after the failure"
    assert run.best is ok
    ledger = read_ledger(run.dir)
    assert {t: r.status for t, r in ledger.items()} == {failed.trial: "failed", ok.trial: "ok"}
    rows = [json.loads(x) for x in (run.dir / "results.jsonl").read_text().splitlines()]
    assert [row["status"] for row in rows] == ["failed", "ok"]
    assert "unlucky" in rows[0]["error"] and rows[1]["score"] == pytest.approx(0.6)

    # A rerun skips the finished trial and tries the failed one again.
    again = run_sweep(load_sweep(sweep.path), executor="local", project_root=REPO)
    assert [(r.ok, r.skipped) for r in again.records] == [(False, False), (True, True)]
    assert again.records[0].finished != failed.finished


@pytest.mark.slow
def test_a_metric_no_trial_reports_is_named_with_what_they_did(runs: Path, tmp_path: Path) -> None:
    body = {
        "method": "grid",
        "metric": {"name": "scores", "goal": "maximize"},
        "overrides": TOY,
        "parameters": {TEMPERATURE: {"values": [0.2]}},
    }
    path = write_sweep(tmp_path, body)
    with pytest.raises(SweepError) as e:
        run_sweep(load_sweep(path), executor="local", project_root=REPO)
    msg = str(e.value)
    assert "no trial reported metric `scores` (did you mean `score`?)" in msg
    assert "toy_a/seed" in msg and "toy_b/score" in msg
    line = path.read_text().splitlines().index("  name: scores") + 1
    assert f"{path}:{line}:" in msg
    rows = (runs / "sweeps" / "toy" / "results.jsonl").read_text().splitlines()
    assert json.loads(rows[0])["toy_b/score"] == pytest.approx(0.52), "the table is still written"


@pytest.mark.slow
def test_the_trial_function_behind_every_executor(runs: Path, tmp_path: Path) -> None:
    overrides = ["stages=[toy_a,toy_b]"]  # tracking auto: offline W&B without a key
    body = {
        "method": "grid",
        "overrides": overrides,
        "parameters": {TEMPERATURE: {"values": [0.3]}},
    }
    sweep = load_sweep(write_sweep(tmp_path, body))
    d = runs / "sweeps" / "toy"
    # The W&B agent's job: the agent's run records the trial, so the trial's own is off.
    job = TrialJob.for_sweep(sweep, d, REPO).with_overrides("tracking.mode=disabled")
    params = {TEMPERATURE: 0.3}
    rec = run_trial(job, params)
    assert rec.ok and not rec.skipped and rec.metric == pytest.approx(0.53)
    assert rec.trial == trial_id(params) and rec.scores == {"score": pytest.approx(0.53)}
    assert rec.metrics["toy_a/seed"] == 0.0 and rec.ran == ["toy_a", "toy_b"]
    run_json = json.loads((Path(rec.run_dir or "") / "run.json").read_text())
    assert run_json["spec"]["tracking"]["mode"] == "disabled"
    assert not list(Path(rec.run_dir or "").glob("wandb"))
    assert "sweep:toy" in run_json["spec"]["tracking"]["tags"]
    assert read_ledger(d)[rec.trial].to_json() == rec.to_json()
    assert run_trial(job, params).skipped
    # Changing the base (here: the seed toy_a reads) makes the ledger entry stale.
    stale = TrialJob.for_sweep(sweep, d, REPO).with_overrides("model.tiny.seed=1")
    fresh = run_trial(stale, params)
    assert fresh.ok and not fresh.skipped and fresh.ran == ["toy_a", "toy_b"]


def test_executor_choice(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"method": "grid", "parameters": {TEMPERATURE: {"values": [0.3]}}}
    auto = load_sweep(write_sweep(tmp_path, {**body, "overrides": ["stages=[toy_a,toy_b]"]}))
    assert choose_executor(auto, "auto") == "ray"
    with pytest.raises(SweepError, match="needs a W&B server: set WANDB_API_KEY"):
        choose_executor(auto, "wandb")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert choose_executor(auto, "auto") == "wandb"
    assert choose_executor(auto, "local") == "local"
    disabled = load_sweep(write_sweep(tmp_path, {**body, "overrides": TOY}, "off"))
    assert choose_executor(disabled, "auto") == "ray"


@pytest.mark.slow
def test_results_are_logged_to_a_wandb_offline_run(runs: Path, tmp_path: Path) -> None:
    overrides = ["stages=[toy_a,toy_b]", "tracking.mode=offline"]
    body = {
        "method": "grid",
        "overrides": overrides,
        "parameters": {TEMPERATURE: {"values": [0.0, 1.0]}},
    }
    run = run_sweep(load_sweep(write_sweep(tmp_path, body)), executor="local", project_root=REPO)
    assert run.wandb_dir is not None and "offline-run" in run.wandb_dir.name
    logged = read_run(run.wandb_dir)
    assert logged["config"]["sweep"]["method"] == "grid"
    (row,) = [h for h in logged["history"] if "trials" in h or "trials/nrows" in h]
    row = {k.replace("/", "."): v for k, v in row.items()}
    assert run.best is not None and row["best.trial"] == run.best.trial
    assert row["best.score"] == pytest.approx(0.6)
    assert row[f"best.{TEMPERATURE}"] == 1.0
    assert row["ran"] == 2 and row["failed"] == 0
    assert row["trials._type"] == "table-file" and row["trials.nrows"] == 2
    assert row["score_vs_params._type"] == "image-file"
    table = run.wandb_dir / "files" / row["trials.path"]
    logged_table = json.loads(table.read_text())
    assert [r[logged_table["columns"].index(TEMPERATURE)] for r in logged_table["data"]] == [
        0.0,
        1.0,
    ]


# --------------------------------------------------------------------------- Ray, kill, resume


def _procs_with_env(marker: str) -> list[int]:
    """Processes whose environment contains ``marker`` (this test's runs root)."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if marker.encode() in (p / "environ").read_bytes():
                found.append(int(p.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_killed_ray_sweep_resumes_skipping_finished_trials(
    runs: Path, tmp_path: Path, probe: None
) -> None:
    temps = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    body = {"method": "grid", "overrides": PROBED, "parameters": {TEMPERATURE: {"values": temps}}}
    path = write_sweep(tmp_path, body)
    ledger = runs / "sweeps" / "toy" / "trials"
    cmd = [sys.executable, "-m", "harness.cli", "sweep", str(path), "--executor", "ray"]
    env = {**os.environ, "SWEEP_PROBE_SLEEP": "6"}
    proc = subprocess.Popen(
        [*cmd, "--concurrency", "2"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 400
    while time.time() < deadline and len(list(ledger.glob("*.json"))) < 2:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.stem: p.read_text() for p in ledger.glob("*.json")}
    assert 2 <= len(finished) < len(temps), "kill landed outside the sweep"
    # Nothing the sweep started (Ray, its workers, their stage processes) outlives it.
    deadline = time.time() + 90
    while time.time() < deadline and _procs_with_env(str(runs)):
        time.sleep(1)
    assert not _procs_with_env(str(runs))

    rerun = subprocess.run(
        [*cmd, "--concurrency", "2"], cwd=REPO, env={**os.environ}, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(finished)} finished earlier" in rerun.stdout
    records = read_ledger(runs / "sweeps" / "toy")
    assert len(records) == len(temps) and all(r.ok for r in records.values())
    for tid, text in finished.items():
        assert (ledger / f"{tid}.json").read_text() == text, "a finished trial ran again"
    rows = [
        json.loads(x) for x in (runs / "sweeps" / "toy" / "results.jsonl").read_text().splitlines()
    ]
    assert [row[TEMPERATURE] for row in rows] == temps
    assert sum(row["skipped"] for row in rows) == len(finished)
    assert len(stage_dirs(runs, "toy_a")) == 1
    assert len(stage_dirs(runs, "toy_b")) == len(temps)
    probes = [json.loads((d / "probe.json").read_text()) for d in stage_dirs(runs, "sweep_probe")]
    assert sorted(p["temperature"] for p in probes) == temps
    # Stage processes of trials in Ray workers keep the launcher's thread settings.
    assert {p["omp"] for p in probes} == {os.environ.get("OMP_NUM_THREADS")}


# --------------------------------------------------------------------------- shared engines


def _kill_a_generating_engine(stop: threading.Event, killed: dict[str, int]) -> None:
    """SIGKILL the first engine host of this process's pool seen generating (its address file
    in the pool directory; its ``status``: a request group in flight)."""
    while not stop.is_set():
        root = os.environ.get(POOL_ENV)
        for info_file in sorted(Path(root).glob(f"*{HOST_INFO}")) if root else ():
            try:
                info = json.loads(info_file.read_text())
                conn = Client(
                    info["address"], family="AF_UNIX", authkey=bytes.fromhex(info["authkey"])
                )
                conn.send(("status", None))
                _, state = conn.recv()
                conn.close()
            except (OSError, EOFError, ValueError):
                continue
            if state["busy"]:
                os.killpg(int(info["pid"]), signal.SIGKILL)
                killed["pid"] = int(info["pid"])
                return
        time.sleep(0.01)


@pytest.mark.slow
def test_a_killed_engine_fails_only_the_trial_it_served(runs: Path, tmp_path: Path) -> None:
    # Long answers: time to see the engine generating.
    sweep = load_sweep(write_served_sweep(tmp_path, "enginekill", [48, 56, 64]))
    killed: dict[str, int] = {}
    stop = threading.Event()
    watch = threading.Thread(target=_kill_a_generating_engine, args=(stop, killed))
    watch.start()
    try:
        run = run_sweep(sweep, executor="local", project_root=REPO)
    finally:
        stop.set()
        watch.join()
    assert "pid" in killed, "no engine was seen generating"
    (lost,) = [r for r in run.records if not r.ok]
    assert f"shared engine (pid {killed['pid']}) went away" in (lost.error or ""), lost.error
    assert lost.index == 0, "the first trial's engine was killed"
    # The sweep went on: the later trials started a new engine and shared it.
    ok = [r for r in run.records if r.ok]
    assert len(ok) == 2 and all((r.metric or 0) > 0 for r in ok), [r.error for r in ok]
    shared = [s["shared_engine"] for s in infer_summaries(runs, ok)]
    assert len({s["pid"] for s in shared}) == 1 and shared[0]["pid"] != killed["pid"]
    assert [s["started_here"] for s in shared] == [True, False]
    assert run.engines_started == 2
    assert not alive(killed["pid"]) and not alive(shared[0]["pid"])


@pytest.mark.slow
def test_a_killed_sweep_leaves_no_engine(runs: Path, tmp_path: Path) -> None:
    path = write_served_sweep(tmp_path, "sweepkill", [2, 4, 6, 8])
    proc = start_sweep(path, "--concurrency", "1")
    try:
        hosts = wait_for_engines(proc, runs, within_s=300)
        assert set(hosts.values()) == {proc.pid}, "the engines watch the sweep's process"
        workers = stage_workers(runs)
        assert workers, "the trials' stages ran without a stage worker"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # The engines and stage workers run in sessions of their own (the kill did not reach
    # them): they end because their owner did.
    assert gone(list(hosts), within_s=30), f"engines {hosts} outlived their killed sweep"
    assert gone(workers, within_s=30), f"stage workers {workers} outlived their killed sweep"


# --------------------------------------------------------------------------- the real pipeline


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.engine
def test_tiny_cpu_decoding_sweep_reuses_upstream_stages(
    tiny_cpu_pipeline: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runs root of the whole-pipeline run: the stages upstream of infer are cached there
    # (other specs' stages may sit beside them), and no trial runs them again.
    runs = tiny_cpu_pipeline["runs"]
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(runs))
    monkeypatch.delenv("HARNESS_STAGE_PLUGINS", raising=False)
    sweep = load_sweep(REPO / "experiments" / "sweeps" / "decoding.yaml")
    # One trial at a time; the trials share one vLLM engine.
    run = run_sweep(sweep, executor="ray", concurrency=1, project_root=REPO)
    assert len(run.records) == 6
    assert all(r.ok and r.metric is not None for r in run.records), [r.error for r in run.records]
    upstream = ("model", "synthesize", "mix", "finetune", "pad", "quantize")
    for st in upstream:
        keys = {r.stage_keys[st] for r in run.records}
        assert len(keys) == 1, f"{st}: {keys}"
        (key,) = keys
        assert key in tiny_cpu_pipeline["stage_keys"], st
        assert json.loads((runs / "stages" / st / key / MANIFEST).read_text())["key"] == key
    for st in ("infer", "score"):
        keys = {r.stage_keys[st] for r in run.records}
        assert len(keys) == 6
        assert keys <= {d.name for d in stage_dirs(runs, st)}
    # Every trial ran infer and score itself, and nothing upstream.
    for r in run.records:
        assert {"infer", "score"} <= set(r.ran), r.ran
        assert set(r.ran) <= {"infer", "score", "report"}, r.ran
    assert (run.dir / "best_spec.yaml").is_file() and (run.dir / "score_vs_params.png").is_file()
    # Intervals and paired deltas against the baseline (the base spec: cached from the
    # pipeline run), and the best trial against the runner-up.
    assert run.intervals is not None and set(run.intervals.trials) == {r.trial for r in run.records}
    assert all("delta_vs_baseline" in e for e in run.intervals.trials.values()), run.intervals
    best = json.loads((run.dir / "best.json").read_text())
    assert best["vs_runner_up"]["distinguishable"] in (True, False)
    rows = [json.loads(x) for x in (run.dir / "results.jsonl").read_text().splitlines()]
    assert all(len(row["overall_ci"]) == 2 and "p_vs_baseline" in row for row in rows)

    assert run.engines_started == 1
    # One engine served every trial: the sweep started it ahead of the first trial (the
    # upstream model is cached), the others waited for none.
    infer_dirs = [runs / "stages" / "infer" / r.stage_keys["infer"] for r in run.records]
    results = [json.loads((d / MANIFEST).read_text())["result"] for d in infer_dirs]
    shared = [res["summary"]["shared_engine"] for res in results]
    assert len({s["pid"] for s in shared}) == 1, shared
    assert shared[0].get("started_ahead") is True, shared
    assert not any(s["started_here"] for s in shared), shared
    assert [res["metrics"]["engine_start_s"] for res in results][1:] == [0.0] * 5
    (host,) = {s["pid"] for s in shared}
    assert not Path(f"/proc/{host}").exists() or "Z" in Path(f"/proc/{host}/stat").read_text()
    # A trial run alone, with its own engine, gives the same predictions (greedy and seeded).
    trial = run.records[-1]
    served = _predictions(infer_dirs[-1])
    monkeypatch.setenv("HARNESS_SHARE_ENGINES", "off")
    _, proc = run_spec(
        runs,
        "experiments/tiny_cpu.yaml",
        *(f"{k}={v}" for k, v in trial.params.items()),
        "stages=[model,synthesize,mix,finetune,pad,quantize,infer]",
        "--force",
        "infer",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    alone = json.loads((infer_dirs[-1] / MANIFEST).read_text())["result"]
    assert alone["summary"]["shared_engine"] is None
    assert _predictions(infer_dirs[-1]) == served
    # Run again: every trial is finished (or cached), and no engine starts.
    monkeypatch.delenv("HARNESS_SHARE_ENGINES")
    again = run_sweep(sweep, executor="local", project_root=REPO)
    assert all(r.skipped or not r.ran for r in again.records), [r.ran for r in again.records]
    assert again.engines_started == 0


def _predictions(infer_dir: Path) -> list[tuple[str, int, str]]:
    rows = [json.loads(x) for x in (infer_dir / "predictions.jsonl").read_text().splitlines()]
    return [(r["prediction"], r["output_tokens"], r["finish_reason"]) for r in rows]


def test_trial_intervals_pair_each_trial_with_the_baseline(
    runs: Path, tmp_path: Path, dev_fixture: Path
) -> None:
    """Each trial's interval and paired delta against the base spec's own trial (found
    among the trials by its plan: nothing runs), and best vs runner-up."""
    from harness.shopbench.data import load_eval_data, load_predictions
    from harness.shopbench.evaluate import evaluate, units_of, write_scores
    from harness.shopbench.uncertainty import compare
    from harness.sweeps.trial import TrialRecord, plan_digest, trial_spec
    from harness.sweeps.uncertainty import best_line, sweep_intervals

    body = {"method": "grid", "parameters": {TEMPERATURE: {"values": [0.0, 1.0]}}}
    sweep = load_sweep(write_sweep(tmp_path, body))
    job = TrialJob.for_sweep(sweep, tmp_path / "sweep", REPO)
    digest = plan_digest(build_plan(trial_spec(job, {}, naming=False), REPO))
    rows = load_eval_data(dev_fixture)
    varied = load_predictions(
        REPO / "tests" / "data" / "predictions_corpus" / "fixture_varied.jsonl"
    )
    answers = {
        "base": varied,
        "good": [
            str(r.output_field) if i % 2 else p
            for i, (r, p) in enumerate(zip(rows, varied, strict=True))
        ],
        "best": [str(r.output_field) for r in rows],
    }
    records, results = [], {}
    for name, preds in answers.items():
        results[name] = evaluate(rows, preds, "official")
        stage = tmp_path / name / "score"
        write_scores(results[name], stage, "scores_official.json", "rows_official.jsonl")
        run = {"spec": {"eval": {"parser": "official"}}, "stages": {"score": {"dir": str(stage)}}}
        (tmp_path / name / "run.json").write_text(json.dumps(run))
        records.append(
            TrialRecord(
                trial=name,
                params={},
                status="ok",
                metric=results[name].scores["overall"],
                run_dir=str(tmp_path / name),
                plan=digest if name == "base" else "other",
            )
        )
    info = sweep_intervals(job, records, records[2], sweep.metric.better)
    assert info.baseline == "base"
    assert (
        info.trials["base"]["delta_vs_baseline"] == 0 and info.trials["base"]["p_vs_baseline"] == 1
    )
    want = compare(units_of(results["base"]), units_of(results["good"]))["overall"]
    got = info.trials["good"]
    assert got["delta_vs_baseline"] == pytest.approx(want["delta"], abs=1e-12)
    assert got["delta_ci"] == pytest.approx(want["ci"], abs=1e-12)
    lo, hi = got["overall_ci"]
    assert lo <= results["good"].scores["overall"] <= hi
    vs = info.vs_runner_up
    assert vs is not None and vs["runner_up"] == "good"
    assert vs["distinguishable"] == (vs["ci"][0] > 0 or vs["ci"][1] < 0)
    assert "from the runner-up good" in best_line(records[2], info)
    assert not list(runs.glob("runs/*")), "the baseline was found among the trials: no run"
