"""Per-row units, bootstrap intervals and paired comparisons (harness.shopbench.units,
harness.shopbench.uncertainty).

Units must reproduce the scorers' numbers exactly (1e-9) on the fixtures, on a generated
corpus and under the Shopping MMLU profiles; the statistics must have their properties
(identical sets, swapping, row order, seeds, one-row tasks) and be calibrated: on simulated
eval sets with a known truth, stratified like ShopBench (several tasks, mixed metric types),
95% intervals cover the truth 95% +- 3% of the time and the paired test rejects a true null
5% +- 3% of the time.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main as cli_main
from harness.core.results import score_units
from harness.shopbench.data import load_eval_data, load_predictions
from harness.shopbench.errors import ScoringError
from harness.shopbench.evaluate import evaluate, units_of, write_scores
from harness.shopbench.mmlu import SKILL_PROFILE, TASK_PROFILE, load_benchmark, score_benchmark
from harness.shopbench.mmlu.units import mmlu_units
from harness.shopbench.types import Record
from harness.shopbench.uncertainty import compare, intervals, mcnemar_p
from harness.shopbench.units import MEAN, MICRO_F1, TaskUnits, Units, aggregate
from tests.support import fake_embedder, paths

HERE = paths.TESTS
VARIED = HERE / "data" / "predictions_corpus" / "fixture_varied.jsonl"
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
TOL = 1e-9


def _close_scores(
    units: Units, tasks: dict[str, float], groups: dict[str, float], overall: float
) -> None:
    got = aggregate(units)
    assert set(got["tasks"]) == set(tasks)
    for name, score in tasks.items():
        a, b = got["tasks"][name], score
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOL, name
    assert set(got["groups"]) == set(groups)
    for name, score in groups.items():
        a, b = got["groups"][name], score
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOL, name
    a, b = got["overall"], overall
    assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOL


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("mode", ["official", "robust"])
def test_units_reproduce_the_fixture_scores(dev_fixture: Path, mode: str, tmp_path: Path) -> None:
    records = load_eval_data(dev_fixture)
    result = evaluate(records, load_predictions(VARIED), mode)
    units = units_of(result)
    s = result.scores
    _close_scores(units, {n: t["score"] for n, t in s["tasks"].items()}, s["tracks"], s["overall"])
    assert any(t.aggregate == MICRO_F1 for t in units.tasks.values())
    # Units read back from the written files are the same.
    write_scores(result, tmp_path, f"scores_{mode}.json", f"rows_{mode}.jsonl")
    back = score_units(tmp_path, mode)
    for name, t in units.tasks.items():
        assert np.array_equal(back.tasks[name].stats, t.stats) and back.tasks[name].ids == t.ids


_TRACKS = (
    "amazon-kdd-cup-24-shopping-knowledge-reasoning",
    "amazon-kdd-cup-24-user-behavior-alignment",
)


@st.composite
def _corpus(draw: st.DrawFn) -> tuple[list[Record], list[str]]:
    """Random tasks of the metrics that need no model, with varied predictions."""
    records, preds = [], []
    for t in range(draw(st.integers(1, 5))):
        kind = draw(
            st.sampled_from(["accuracy", "hit rate@3", "ndcg", "micro f1", "rougel", "bleu"])
        )
        track = draw(st.sampled_from(_TRACKS))
        for _ in range(draw(st.integers(1, 6))):
            i = len(records)
            if kind == "accuracy":
                truth: Any = draw(st.integers(0, 3))
                prompt, ttype = "Q?\n0. a\n1. b\n2. c\n3. d\nAnswer:", "multiple-choice"
                pred = draw(st.sampled_from(["0", "1", "2", "3", "x", "Answer: 2"]))
            elif kind == "hit rate@3":
                truth = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True))
                prompt, ttype = "Pick three of 1-6.", "retrieval"
                pred = ", ".join(map(str, draw(st.lists(st.integers(1, 6), max_size=4))))
            elif kind == "ndcg":
                truth = draw(st.lists(st.floats(0, 3), min_size=2, max_size=5))
                prompt, ttype = "Rank.", "ranking"
                order = draw(st.permutations(range(1, len(truth) + 1)))
                pred = ", ".join(map(str, order))
            elif kind == "micro f1":
                truth = draw(st.lists(st.sampled_from(["nike", "red", "shoe"]), max_size=3))
                prompt, ttype = "Entities?", "named_entity_recognition"
                pred = ", ".join(
                    draw(st.lists(st.sampled_from(["nike", "Red", "hat", ""]), max_size=3))
                )
            else:
                truth = draw(st.sampled_from(["a red shoe", "fast running shoes for men"]))
                prompt, ttype = "Write.", "generation"
                pred = draw(st.sampled_from(["a red shoe", "shoes", "", "red fast shoe for men"]))
            records.append(
                Record(
                    prompt,
                    truth,
                    f"t{t}",
                    ttype,
                    kind,
                    ttype == "multiple-choice",
                    track,
                    f"d:{i + 1}",
                )  # type: ignore[arg-type]
            )
            preds.append(pred)
    return records, preds


@SETTINGS
@given(case=_corpus(), mode=st.sampled_from(["official", "robust"]))
def test_units_reproduce_scores_on_generated_corpora(
    case: tuple[list[Record], list[str]], mode: str
) -> None:
    records, preds = case
    result = evaluate(records, preds, mode)
    s = result.scores
    _close_scores(
        units_of(result), {n: t["score"] for n, t in s["tasks"].items()}, s["tracks"], s["overall"]
    )


_spec = importlib.util.spec_from_file_location(
    "shopping_mmlu_fixture", HERE / "data" / "shopping_mmlu" / "build_fixture.py"
)
assert _spec is not None and _spec.loader is not None
_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixture)
EMBED = fake_embedder.EMBED


@pytest.mark.parametrize("profile", [SKILL_PROFILE, TASK_PROFILE])
@pytest.mark.parametrize("perfect", [True, False])
def test_units_reproduce_the_shopping_mmlu_profiles(
    tmp_path: Path, profile: str, perfect: bool
) -> None:
    bench = load_benchmark(_fixture.build_dir(tmp_path / "data"))
    files = bench.skills if profile == SKILL_PROFILE else bench.tasks
    rng = np.random.default_rng(3)
    preds = {}
    for f in files:
        answers = _fixture.perfect_predictions(f)
        preds[f.name] = answers if perfect else [a if rng.random() < 0.5 else "1" for a in answers]
    result = score_benchmark(bench, preds, profile, embed=EMBED)
    from harness.shopbench.mmlu.scoring import task_results

    units = mmlu_units(result)
    tasks = {n: t["score"] for n, t in task_results(result).items()}
    board = result["leaderboard"]
    groups = {c: board[c] for c in units.groups}
    _close_scores(units, tasks, groups, result["overall"])
    iv = intervals(units, resamples=200)
    assert set(iv["groups"]) == set(units.groups)


# --------------------------------------------------------------------------- properties


@st.composite
def _units_pair(draw: st.DrawFn) -> tuple[Units, Units]:
    """Two evaluations of the same rows: tasks of mean (0/1, graded, continuous) and
    micro F1 units, in two tracks."""
    a_tasks, b_tasks = {}, {}
    for t in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 8))
        kind = draw(st.sampled_from(["binary", "graded", "continuous", "f1"]))
        group = draw(st.sampled_from(["g1", "g2"]))

        def col(kind: str = kind, n: int = n) -> np.ndarray:
            if kind == "binary":
                v = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
            elif kind == "graded":
                v = draw(
                    st.lists(st.sampled_from([0.0, 1 / 3, 2 / 3, 1.0]), min_size=n, max_size=n)
                )
            elif kind == "continuous":
                v = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
            else:
                v = draw(st.lists(st.tuples(*[st.integers(0, 3)] * 3), min_size=n, max_size=n))
            return np.array(v, dtype=np.float64).reshape(n, -1)

        agg = MICRO_F1 if kind == "f1" else MEAN
        ids = tuple(f"t{t}-{i}" for i in range(n))
        metric = "accuracy" if kind == "binary" else kind
        for out in (a_tasks, b_tasks):
            stats = col()
            rows = stats[:, 0] if agg == MEAN else np.zeros(n)
            out[f"t{t}"] = TaskUnits(f"t{t}", group, metric, agg, stats, ids, rows)
    return Units(a_tasks), Units(b_tasks)


def _permuted(units: Units, rng: np.random.Generator) -> Units:
    tasks = {}
    for name, t in reversed(units.tasks.items()):
        p = rng.permutation(t.n)
        tasks[name] = TaskUnits(
            name,
            t.group,
            t.metric,
            t.aggregate,
            t.stats[p],
            tuple(t.ids[i] for i in p),
            t.row_scores[p],
        )
    return Units(dict(reversed(tasks.items())))


def _entries(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [result["overall"], *result["tracks"].values(), *result["tasks"].values()]


R = 400


@SETTINGS
@given(pair=_units_pair(), seed=st.integers(0, 2**31))
def test_identical_predictions_give_zero_delta_and_p_one(
    pair: tuple[Units, Units], seed: int
) -> None:
    a, _ = pair
    result = compare(a, a, resamples=R, seed=seed)
    for e in _entries(result):
        assert e["delta"] == 0 and e["ci"] == [0.0, 0.0] and e["p_value"] == 1.0


@SETTINGS
@given(pair=_units_pair(), seed=st.integers(0, 2**31))
def test_swapping_negates_the_delta_and_mirrors_the_interval(
    pair: tuple[Units, Units], seed: int
) -> None:
    a, b = pair
    ab, ba = compare(a, b, resamples=R, seed=seed), compare(b, a, resamples=R, seed=seed)
    for x, y in zip(_entries(ab), _entries(ba), strict=True):
        if math.isnan(x["delta"]):
            continue
        assert x["delta"] == -y["delta"]
        assert x["ci"][0] == pytest.approx(-y["ci"][1], abs=1e-12)
        assert x["ci"][1] == pytest.approx(-y["ci"][0], abs=1e-12)
        assert x["p_value"] == y["p_value"]
    for name in a.tasks:
        assert ab["tasks"][name]["better"] == ba["tasks"][name]["worse"]


def test_swapping_mirrors_sets_with_the_same_counts_that_differ_per_row() -> None:
    """Two sets with the same distinct rows and counts (one right answer moved to another
    row) still come in one order whichever is called A: the interval mirrors exactly."""

    def units(scores: list[float]) -> Units:
        s = np.array(scores)
        ids = tuple(f"r{i}" for i in range(len(s)))
        return Units({"t": TaskUnits("t", "g", "accuracy", MEAN, s[:, None], ids, s)})

    a, b = units([0, 1, 1, 1]), units([1, 0, 1, 1])
    ab, ba = compare(a, b, resamples=R, seed=2), compare(b, a, resamples=R, seed=2)
    assert ab["overall"]["ci"][0] == pytest.approx(-ba["overall"]["ci"][1], abs=1e-12)
    assert ab["overall"]["ci"][1] == pytest.approx(-ba["overall"]["ci"][0], abs=1e-12)
    assert ab["overall"]["ci"][0] != pytest.approx(-ab["overall"]["ci"][1])  # not symmetric


@SETTINGS
@given(pair=_units_pair(), seed=st.integers(0, 2**31), shuffle=st.integers(0, 2**31))
def test_row_order_does_not_matter(pair: tuple[Units, Units], seed: int, shuffle: int) -> None:
    a, b = pair
    pa, pb = (
        _permuted(a, np.random.default_rng(shuffle)),
        _permuted(b, np.random.default_rng(shuffle)),
    )
    x, y = compare(a, b, resamples=R, seed=seed), compare(pa, pb, resamples=R, seed=seed)
    for e, f in zip(_entries(x), _entries(y), strict=True):
        if math.isnan(e["delta"]):
            continue
        assert e["delta"] == pytest.approx(f["delta"], abs=1e-12)
        assert e["ci"] == pytest.approx(f["ci"], abs=1e-12) and e["p_value"] == f["p_value"]
    for name in a.tasks:
        assert sorted(x["tasks"][name]["better"]) == sorted(y["tasks"][name]["better"])
    ia, ib = intervals(a, resamples=R, seed=seed), intervals(pa, resamples=R, seed=seed)
    assert ia["overall"]["ci"] == pytest.approx(ib["overall"]["ci"], abs=1e-12)


@SETTINGS
@given(pair=_units_pair(), seed=st.integers(0, 2**31))
def test_intervals_contain_the_point_and_a_seed_fixes_them(
    pair: tuple[Units, Units], seed: int
) -> None:
    a, b = pair
    iv = intervals(a, resamples=R, seed=seed)
    for e in [iv["overall"], *iv["groups"].values(), *iv["tasks"].values()]:
        if math.isnan(e["score"]):
            continue
        assert e["ci"][0] <= e["score"] <= e["ci"][1] and e["stderr"] >= 0
    assert intervals(a, resamples=R, seed=seed) == iv
    c = compare(a, b, resamples=R, seed=seed)
    assert compare(a, b, resamples=R, seed=seed) == c
    for e in _entries(c):
        if not math.isnan(e["delta"]):
            assert e["ci"][0] <= e["delta"] <= e["ci"][1] and 0 < e["p_value"] <= 1


@SETTINGS
@given(value=st.floats(0, 1), other=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_a_one_row_task_has_a_zero_width_interval(value: float, other: float, seed: int) -> None:
    def one(v: float) -> Units:
        return Units(
            {"t": TaskUnits("t", "g", "rougel", MEAN, np.array([[v]]), ("1",), np.array([v]))}
        )

    e = intervals(one(value), resamples=50, seed=seed)["tasks"]["t"]
    assert e["ci"] == [value, value] and e["stderr"] == 0
    d = compare(one(value), one(other), resamples=50, seed=seed)["tasks"]["t"]
    assert d["ci"] == [other - value, other - value]


def test_rows_that_differ_are_refused() -> None:
    def units(ids: tuple[str, ...]) -> Units:
        n = len(ids)
        return Units({"t": TaskUnits("t", "g", "accuracy", MEAN, np.ones((n, 1)), ids, np.ones(n))})

    with pytest.raises(ScoringError, match="same rows"):
        compare(units(("1", "2")), units(("1", "3")))
    with pytest.raises(ScoringError, match="same rows"):
        compare(units(("1", "2")), units(("1",)))


def test_mcnemar_exact_values() -> None:
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 0) == pytest.approx(2 * 0.5**5)
    assert mcnemar_p(1, 9) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_p(40, 60) == pytest.approx(0.0569, abs=1e-4)  # the binomial test's value


# --------------------------------------------------------------------------- calibration


# A ShopBench-like eval set: tasks of binary, graded (hit rate) and continuous (generation)
# metrics in three tracks.
_TASKS = [
    ("binary", 0.7, 20),
    ("binary", 0.4, 30),
    ("graded", 0.5, 25),
    ("continuous", 0.6, 40),
    ("continuous", 0.3, 20),
    ("binary", 0.85, 50),
    ("graded", 0.3, 30),
    ("continuous", 0.5, 30),
]


def _sim_units(rng: np.random.Generator, paired: bool) -> tuple[Units, Units]:
    a, b = {}, {}
    for i, (kind, mean, n) in enumerate(_TASKS):
        ids = tuple(str(j) for j in range(n))
        group = f"track{i % 3}"
        if paired:  # rows of varying difficulty; A and B exchangeable on each row
            p = np.clip(rng.beta(8 * mean, 8 * (1 - mean), n), 0.01, 0.99)
            va, vb = _per_row(kind, p, rng), _per_row(kind, p, rng)
        else:
            va = vb = _per_row(kind, np.full(n, mean), rng)
        metric = "accuracy" if kind == "binary" else kind
        a[f"t{i}"] = TaskUnits(f"t{i}", group, metric, MEAN, va[:, None], ids, va)
        b[f"t{i}"] = TaskUnits(f"t{i}", group, metric, MEAN, vb[:, None], ids, vb)
    return Units(a), Units(b)


def _per_row(kind: str, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "binary":
        return (rng.random(len(p)) < p).astype(np.float64)
    if kind == "graded":
        return rng.binomial(3, p) / 3
    return rng.beta(6 * p, 6 * (1 - p))


def test_calibration_coverage_and_false_positive_rate() -> None:
    rng = np.random.default_rng(2024)
    sets, resamples = 500, 1000
    truth = float(np.mean([m for _, m, _ in _TASKS]))
    covered = rejected = 0
    for s in range(sets):
        a, _ = _sim_units(rng, paired=False)
        lo, hi = intervals(a, resamples=resamples, seed=s)["overall"]["ci"]
        covered += lo <= truth <= hi
        x, y = _sim_units(rng, paired=True)
        rejected += compare(x, y, resamples=resamples, seed=s)["overall"]["p_value"] < 0.05
    coverage, fpr = covered / sets, rejected / sets
    print(json.dumps({"coverage": coverage, "false_positive_rate": fpr}))
    assert 0.92 <= coverage <= 0.98
    assert 0.02 <= fpr <= 0.08


# --------------------------------------------------------------------------- CLI


def _write_preds(path: Path, preds: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prediction": p}) + "\n" for p in preds), "utf-8")
    return path


def test_compare_cli_files_and_runs(
    dev_fixture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = load_eval_data(dev_fixture)
    pa = VARIED
    preds_b = [str(r.output_field) if i % 2 else "x" for i, r in enumerate(records)]
    pb = _write_preds(tmp_path / "b.jsonl", preds_b)
    out = tmp_path / "cmp.json"
    args = [
        "compare",
        "--data",
        str(dev_fixture),
        "--predictions",
        str(pa),
        "--predictions",
        str(pb),
    ]
    assert cli_main([*args, "--resamples", "500", "--out", str(out)]) == 0
    res = json.loads(out.read_text("utf-8"))
    assert {"overall", "tracks", "tasks", "resamples", "seed", "level", "method"} <= set(res)
    assert set(res["overall"]) >= {"a", "b", "delta", "ci", "p_value"}
    a = evaluate(records, load_predictions(pa), "official")
    b = evaluate(records, preds_b, "official")
    assert res["overall"]["a"] == pytest.approx(a.scores["overall"], abs=TOL)
    assert res["overall"]["delta"] == pytest.approx(
        b.scores["overall"] - a.scores["overall"], abs=TOL
    )
    for name, t in res["tasks"].items():
        assert {"n", "better", "worse"} <= set(t) and t["n"] == a.scores["tasks"][name]["n"]
        ups = [
            r.id
            for r, s in zip(b.rows, a.rows, strict=True)
            if r.task_name == name and r.score > s.score
        ]
        assert t["better"] == ups
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 80 and "…" not in printed

    # Two runs: score stage dirs written by the scorer, referenced from run.json files.
    runs = []
    for name, result in (("a", a), ("b", b)):
        stage = tmp_path / name / "score"
        write_scores(result, stage, "scores_official.json", "rows_official.jsonl")
        run = {
            "spec": {"eval": {"data": "d.jsonl", "parser": "official"}},
            "stages": {"score": {"dir": str(stage)}},
        }
        (tmp_path / name / "run.json").write_text(json.dumps(run), "utf-8")
        runs.append(str(tmp_path / name))
    out2 = tmp_path / "runs.json"
    assert cli_main(["compare", *runs, "--resamples", "500", "--out", str(out2)]) == 0
    res2 = json.loads(out2.read_text("utf-8"))
    assert res2["overall"]["delta"] == pytest.approx(res["overall"]["delta"], abs=TOL)
    assert res2["overall"]["p_value"] == res["overall"]["p_value"]

    # Different eval data, and rows that differ: refused with exit 2.
    other = json.loads((tmp_path / "b" / "run.json").read_text("utf-8"))
    other["spec"]["eval"]["data"] = "other.jsonl"
    (tmp_path / "b" / "run.json").write_text(json.dumps(other), "utf-8")
    capsys.readouterr()
    assert cli_main(["compare", *runs]) == 2
    assert "same eval data" in capsys.readouterr().err
    short = tmp_path / "short.jsonl"
    short.write_text(
        "".join(line + "\n" for line in dev_fixture.read_text("utf-8").splitlines()[:-1])
    )
    assert (
        cli_main(
            ["compare", "--data", str(short), "--predictions", str(pa), "--predictions", str(pb)]
        )
        == 2
    )
    assert cli_main(["compare", "--data", str(dev_fixture), "--predictions", str(pa)]) == 2


def test_score_ci_adds_intervals(
    dev_fixture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.json"
    args = ["score", "--data", str(dev_fixture), "--predictions", str(VARIED), "--out", str(out)]
    assert cli_main([*args, "--ci", "--resamples", "300"]) == 0
    s = json.loads(out.read_text("utf-8"))
    assert all(
        len(t["ci"]) == 2 and t["ci"][0] <= t["score"] <= t["ci"][1] for t in s["tasks"].values()
    )
    assert set(s["tracks_ci"]) == set(s["tracks"])
    assert s["overall_ci"][0] <= s["overall"] <= s["overall_ci"][1] and s["overall_stderr"] > 0
    printed = capsys.readouterr().out
    assert "95% CI" in printed and max(len(line) for line in printed.splitlines()) <= 80
    assert cli_main(args) == 0
    assert "overall_ci" not in json.loads(out.read_text("utf-8"))


def test_report_sections_show_intervals_and_paired_differences(
    dev_fixture: Path, tmp_path: Path
) -> None:
    from harness.stages import report

    records = load_eval_data(dev_fixture)
    this_preds = load_predictions(VARIED)
    base_preds = [p if i % 3 else "nothing" for i, p in enumerate(this_preds)]
    dirs = {}
    for name, preds in (("this", this_preds), ("base", base_preds)):
        dirs[name] = tmp_path / name
        for mode in ("official", "robust"):
            result = evaluate(records, preds, mode)
            write_scores(result, dirs[name], f"scores_{mode}.json", f"rows_{mode}.jsonl")
    lines, facts = report._scores_section(dirs["this"])
    md = "\n".join(lines)
    assert "official 95% CI" in md and "robust 95% CI" in md
    official = facts["official"]
    assert official["ci"][0] <= official["overall"] <= official["ci"][1]
    assert set(official["tasks"]) == {r.task_name for r in records}
    all_facts: dict[str, Any] = {"scores": facts}
    paired = "\n".join(
        report._paired_section(dirs["this"], {"base": dirs["base"]}, "official", all_facts)
    )
    c = all_facts["comparisons"]["base"]
    want = compare(
        units_of(evaluate(records, base_preds, "official")),
        units_of(evaluate(records, this_preds, "official")),
    )
    assert c["overall"]["delta"] == pytest.approx(want["overall"]["delta"], abs=TOL)
    assert c["overall"]["ci"] == pytest.approx(want["overall"]["ci"], abs=TOL)
    assert c["overall"]["p_value"] == want["overall"]["p_value"]
    assert f"| base | **overall** | {c['overall']['b']:.4f} |" in paired
    bold = [t for t, e in c["tasks"].items() if e["ci"][0] > 0 or e["ci"][1] < 0]
    for t in bold:
        assert f"| base | task {t} |" in paired and f"**{c['tasks'][t]['delta']:+.4f}**" in paired
    assert all_facts["resolvable_difference"] > 0 and "cannot be told from noise" in paired


def test_units_reproduce_the_real_dev_set_scores(real_dev_set: Path) -> None:
    records = load_eval_data(real_dev_set)
    varied = HERE / "data" / "predictions_corpus" / "dev_varied.jsonl"
    for mode in ("official", "robust"):
        result = evaluate(records, load_predictions(varied), mode)
        s = result.scores
        tasks = {n: t["score"] for n, t in s["tasks"].items()}
        _close_scores(units_of(result), tasks, s["tracks"], s["overall"])


def test_compare_and_score_ci_under_a_shopping_mmlu_profile(tmp_path: Path) -> None:
    from harness.shopbench.mmlu import load_task_file, score_task

    root = _fixture.build_dir(tmp_path / "data")
    data = root / "multiple_choice" / "product_category_selection_dataset.csv"
    task = load_task_file(data)
    perfect = _fixture.perfect_predictions(task)
    wrong = ["9"] * len(perfect)
    pa = _write_preds(tmp_path / "a.jsonl", wrong)
    pb = _write_preds(tmp_path / "b.jsonl", perfect)
    out = tmp_path / "cmp.json"
    args = ["compare", "--data", str(data), "--parser", TASK_PROFILE]
    assert (
        cli_main([*args, "--predictions", str(pa), "--predictions", str(pb), "--out", str(out)])
        == 0
    )
    res = json.loads(out.read_text("utf-8"))
    want = score_task(task, perfect)["score"] - score_task(task, wrong)["score"]
    assert res["overall"]["delta"] == pytest.approx(want, abs=TOL)
    (entry,) = res["tasks"].values()
    assert entry["mcnemar_p"] == pytest.approx(mcnemar_p(len(entry["better"]), len(entry["worse"])))
    scored = tmp_path / "s.json"
    ci_args = ["score", "--data", str(data), "--parser", TASK_PROFILE, "--predictions", str(pb)]
    assert cli_main([*ci_args, "--ci", "--resamples", "200", "--out", str(scored)]) == 0
    s = json.loads(scored.read_text("utf-8"))
    (t,) = s["tasks"].values()
    assert t["ci"][0] <= t["score"] <= t["ci"][1] and s["overall_ci"] == t["ci"]
