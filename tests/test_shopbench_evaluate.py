"""evaluate(): the scores dict, robust vs official on the varied-format corpus, outputs on disk,
the chart, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.shopbench.data import load_predictions, load_shopbench
from harness.shopbench.errors import ScoringError, UnknownNameError
from harness.shopbench.evaluate import EvalResult, evaluate, plot_scores, write_scores
from harness.shopbench.types import ALL_TRACKS, TRACKS, Record
from tests.support.paths import FIXTURE_CORPUS as CORPUS


@pytest.fixture(scope="module")
def dev(dev_fixture: Path) -> list[Record]:
    return load_shopbench(dev_fixture)


@pytest.fixture(scope="module")
def corpus_results(dev: list[Record]) -> tuple[EvalResult, EvalResult, list[str]]:
    predictions = load_predictions(CORPUS)
    formats = [json.loads(line)["format"] for line in CORPUS.read_text("utf-8").splitlines()]
    return (
        evaluate(dev, predictions, "official"),
        evaluate(dev, predictions, "robust"),
        formats,
    )


def test_robust_beats_official_on_every_task_of_the_corpus(
    corpus_results: tuple[EvalResult, EvalResult, list[str]],
) -> None:
    official, robust, formats = corpus_results
    for name, task in official.scores["tasks"].items():
        assert robust.scores["tasks"][name]["score"] >= task["score"] - 1e-12, name
    assert robust.scores["overall"] > official.scores["overall"] + 0.2
    # Ambiguous outputs ("1 or 2", two different lists) are left unparsed and score 0.
    ambiguous = [i for i, f in enumerate(formats) if f == "ambiguous"]
    assert ambiguous
    assert all(not robust.rows[i].parse_ok and robust.rows[i].score == 0.0 for i in ambiguous)
    # Empty outputs and "None" are unparsed too.
    for i, f in enumerate(formats):
        if f in ("empty", "none"):
            assert not robust.rows[i].parse_ok
    assert robust.parse_rates["ranking"] == 1.0 > official.parse_rates["ranking"]


def test_scores_dict_shape_and_aggregation(
    corpus_results: tuple[EvalResult, EvalResult, list[str]], dev: list[Record]
) -> None:
    result = corpus_results[1]
    s = result.scores
    assert set(s) == {"parser", "tasks", "tracks", "overall"} and s["parser"] == "robust"
    assert len(s["tasks"]) == 18
    for name, task in s["tasks"].items():
        assert set(task) == {"task_type", "metric", "n", "score", "track"}
        rows = [r for r in result.rows if r.task_name == name]
        assert task["n"] == len(rows)
        if task["metric"] not in ("micro f1",):
            assert task["score"] == pytest.approx(sum(r.score for r in rows) / len(rows))
    assert s["tasks"]["task17"]["metric"] == "bleu+jp-bleu"
    assert set(s["tracks"]) == {*TRACKS, ALL_TRACKS}
    track_of = {r.task_name: r.track for r in dev}
    for track in TRACKS:
        scores = [t["score"] for n, t in s["tasks"].items() if track_of[n] == track]
        assert s["tracks"][track] == pytest.approx(sum(scores) / len(scores))
    assert s["tracks"][ALL_TRACKS] == pytest.approx(sum(s["tracks"][t] for t in TRACKS) / 4)
    assert s["overall"] == pytest.approx(
        sum(t["score"] for t in s["tasks"].values()) / len(s["tasks"])
    )
    assert len(result.rows) == len(dev)
    assert all(0.0 <= r.score <= 1.0 + 1e-9 for r in result.rows)


def test_written_scores_rows_and_chart(
    corpus_results: tuple[EvalResult, EvalResult, list[str]], tmp_path: Path
) -> None:
    official, robust, _ = corpus_results
    scores_path, rows_path = write_scores(robust, tmp_path / "out")
    assert json.loads(scores_path.read_text("utf-8")) == json.loads(json.dumps(robust.scores))
    rows = [json.loads(line) for line in rows_path.read_text("utf-8").splitlines()]
    assert len(rows) == len(robust.rows)
    assert all(
        set(r) - {"tp", "fp", "fn"} == {"task_name", "parsed", "parse_ok", "score", "id"}
        for r in rows
    )
    png = plot_scores(official, robust.scores, tmp_path / "out" / "scores.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "rows.jsonl",
        "scores.json",
        "scores.png",
    ]


def test_perfect_predictions_score_one(dev: list[Record]) -> None:
    def perfect(r: Record) -> str:
        o = r.output_field
        if r.task_type == "ranking":
            return ", ".join(str(i + 1) for i in sorted(range(len(o)), key=lambda i: -o[i]))
        if isinstance(o, list):
            return ", ".join(map(str, o))
        return str(o)

    for mode in ("official", "robust"):
        result = evaluate(dev, [perfect(r) for r in dev], mode)
        assert all(t["score"] == pytest.approx(1.0) for t in result.scores["tasks"].values())
        assert math.isclose(result.scores["overall"], 1.0, abs_tol=1e-6)


def _rec(**kw: object) -> Record:
    base = {
        "input_field": "Q\n0. a\n1. b\nAnswer: ",
        "output_field": 1,
        "task_name": "t",
        "task_type": "multiple-choice",
        "metric": "accuracy",
        "is_multiple_choice": True,
        "track": "x",
        "source": "data.jsonl:7",
    }
    base.update(kw)
    return Record(**base)  # type: ignore[arg-type]


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ScoringError, match="2 predictions for 1 data rows"):
        evaluate([_rec()], ["1", "2"])
    with pytest.raises(ScoringError, match=r"data\.jsonl:7: row has no answer"):
        evaluate([_rec(output_field=None)], ["1"])
    with pytest.raises(UnknownNameError, match=r"data\.jsonl:7: unknown metric 'bool'"):
        evaluate([_rec(metric="bool")], ["1"])
    with pytest.raises(UnknownNameError, match=r"data\.jsonl:7: unknown task type 'quiz'"):
        evaluate([_rec(task_type="quiz")], ["1"])
    with pytest.raises(UnknownNameError, match="unknown parser mode `fuzzy`"):
        evaluate([_rec()], ["1"], "fuzzy")
    with pytest.raises(ScoringError, match="mixes tracks"):
        evaluate([_rec(), _rec(track="y")], ["1", "1"])
    ner = {"task_type": "named_entity_recognition", "output_field": ["a"], "metric": "micro f1"}
    with pytest.raises(ScoringError, match="mixes 'micro f1'"):
        evaluate([_rec(**ner), _rec()], ["a", "1"])
    with pytest.raises(ScoringError, match="no rows"):
        evaluate([], [])


def test_core_imports_no_heavy_packages() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import harness.shopbench.evaluate, harness.shopbench.score_cli, harness.shopbench.router\n"
        "import harness.shopbench.validators, harness.stages.score\n"
        "heavy = ('torch', 'sentence_transformers', 'transformers', 'rouge_score', 'nltk',"
        " 'sacrebleu', 'matplotlib')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
