"""Benchmark: what bootstrap intervals and a paired comparison add to scoring, over 20,000
ShopBench rows with 10,000 resamples.

Rows and predictions are those of the scoring benchmark (sampled from the 96-row dev set,
the real metric mix); B is A with 30% of the answers drawn again. Whole ``harness``
processes are timed by their CPU time (user + system of the child), after one untimed
``harness score`` of A and of B has filled the embedding cache every timed run reads: plain
``harness score`` of A and of B (the baseline), ``harness score --ci`` of A, ``harness compare`` of A and B, and plain
``harness score`` of A again (the baseline's spread). The in-process cost of
:func:`~harness.shopbench.uncertainty.intervals` and
:func:`~harness.shopbench.uncertainty.compare` on the same units is timed too. Asserts
that each adds at most 3 s of CPU, and writes ``bench-results/uncertainty.json``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.atomic import write_json
from harness.shopbench import metrics
from harness.shopbench.data import load_shopbench
from harness.shopbench.errors import SentenceModelNotFoundError
from harness.shopbench.evaluate import evaluate, units_of
from harness.shopbench.uncertainty import compare, intervals
from tests.benchmarks.test_bench_scoring import _prediction, _rows
from tests.support.paths import REPO

RESULTS = REPO / "bench-results" / "uncertainty.json"
BUDGET_S = 3.0


def _cpu_of(cmd: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.mark.bench
def test_bench_intervals_and_paired_comparison(real_dev_set: Path, tmp_path: Path) -> None:
    dev = load_shopbench(real_dev_set)
    try:
        metrics.load_sentence_model("all-MiniLM-L6-v2")
    except SentenceModelNotFoundError as e:
        pytest.skip(str(e))
    records, preds_a = _rows(dev)
    rng = random.Random(5)
    preds_b = [
        p if rng.random() < 0.7 else _prediction(rng, r)
        for p, r in zip(preds_a, records, strict=True)
    ]
    fields = (
        "input_field",
        "output_field",
        "task_name",
        "task_type",
        "metric",
        "is_multiple_choice",
        "track",
    )
    data = _write(tmp_path / "data.jsonl", [{f: getattr(r, f) for f in fields} for r in records])
    pa = _write(tmp_path / "a.jsonl", [{"prediction": p} for p in preds_a])
    pb = _write(tmp_path / "b.jsonl", [{"prediction": p} for p in preds_b])
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_EMBEDDING_CACHE": str(tmp_path / "emb")}
    harness = [sys.executable, "-m", "harness.cli"]

    def score(pred: Path, *extra: str) -> float:
        return _cpu_of(
            [*harness, "score", "--data", str(data), "--predictions", str(pred), *extra], env
        )

    score(pa)  # untimed: fill the embedding cache that every timed run then reads
    score(pb)
    plain_a = score(pa)
    plain_b = score(pb)
    with_ci = score(pa, "--ci")
    compared = _cpu_of(
        [
            *harness,
            "compare",
            "--data",
            str(data),
            "--predictions",
            str(pa),
            "--predictions",
            str(pb),
            "--out",
            str(tmp_path / "cmp.json"),
        ],
        env,
    )
    plain_a2 = score(pa)
    baseline = min(plain_a, plain_a2)

    ua = units_of(evaluate(records, preds_a, "official"))
    ub = units_of(evaluate(records, preds_b, "official"))
    t0 = time.process_time()
    iv = intervals(ua)
    intervals_s = time.process_time() - t0
    t0 = time.process_time()
    cmp = compare(ua, ub)
    compare_s = time.process_time() - t0

    result = {
        "rows": len(records),
        "resamples": iv["resamples"],
        "process_cpu_s": {
            "score_a": round(plain_a, 3),
            "score_a_again": round(plain_a2, 3),
            "score_b": round(plain_b, 3),
            "score_ci_a": round(with_ci, 3),
            "compare_a_b": round(compared, 3),
        },
        "added_cpu_s": {
            "score_ci_vs_score": round(with_ci - baseline, 3),
            "compare_vs_two_scores": round(compared - (baseline + plain_b), 3),
            "compare_vs_one_score": round(compared - baseline, 3),
        },
        "ratios": {
            "score_ci_over_score": round(with_ci / baseline, 3),
            "compare_over_two_scores": round(compared / (baseline + plain_b), 3),
        },
        "in_process_cpu_s": {"intervals": round(intervals_s, 3), "compare": round(compare_s, 3)},
        "overall": {"score": iv["overall"]["score"], "ci": iv["overall"]["ci"]},
        "delta": {k: cmp["overall"][k] for k in ("delta", "ci", "p_value")},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, result, sort_keys=False)
    print(json.dumps(result, indent=2))
    assert intervals_s <= BUDGET_S and compare_s <= BUDGET_S
    assert with_ci - baseline <= BUDGET_S
    # compare scores both sets in one process: beyond scoring them, it adds at most 3 s.
    assert compared - (baseline + plain_b) <= BUDGET_S
