"""Official mode == the official evaluator, task by task (to 1e-6) and row by row, on the
project's development-format fixture and on the real development set (when it is available),
for random and perturbed predictions (edge formats included) and for each one's varied-format
corpus.

The official numbers are golden facts (``golden/official/kit_evaluation_*.json``): the
starter kit's own ``local_evaluation`` run on the committed predictions
(``tests/data/predictions_corpus``) by ``tests/support/official_goldens.py``, encoding one
text per call as the kit does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.shopbench import metrics
from harness.shopbench.data import load_predictions, load_shopbench
from harness.shopbench.errors import SentenceModelNotFoundError
from harness.shopbench.evaluate import evaluate
from harness.shopbench.types import Record
from tests.support import official_corpus as corpus
from tests.support.goldens import check_file, official_golden, regenerate
from tests.support.paths import DEV_CORPUS, DEV_FIXTURE, FIXTURE_CORPUS

TOL = 1e-6
ML_KEY = f"multilingual/perturbed/{corpus.MULTILINGUAL_SEED}"


@dataclass(frozen=True)
class DevSet:
    """A development-format file, its varied-format corpus, the perturbation seeds (five whose
    predictions exercise every quirk that ``test_perturbations_cover_the_quirks`` lists on
    that data), their predictions and the official golden facts about them."""

    label: str
    path: Path
    corpus: Path
    seeds: tuple[int, ...]
    predictions: dict[str, list[str]]
    golden: dict[str, Any]

    def run(self, key: str) -> dict[str, Any]:
        """The official result for the predictions ``key``; fails when the golden lacks it."""
        if key not in self.golden["runs"]:
            name = f"golden/official/kit_evaluation_{self.label}.json"
            pytest.fail(f"{name} has no {key!r}: {regenerate()}")
        return self.golden["runs"][key]


@pytest.fixture(scope="module", params=["fixture", "real"])
def dev(request: pytest.FixtureRequest) -> DevSet:
    """The project's fixture, then the real development set (skipped, naming the command that
    fetches it, when it is not available), with their goldens, checked to be computed from
    these very files."""
    if request.param == "fixture":
        label, path, varied, seeds = "fixture", DEV_FIXTURE, FIXTURE_CORPUS, corpus.FIXTURE_SEEDS
    else:
        label, path, varied = "real", request.getfixturevalue("real_dev_set"), DEV_CORPUS
        seeds = corpus.REAL_SEEDS
    name = f"kit_evaluation_{label}"
    golden = official_golden(name)
    check_file(name, golden["data"], path)
    check_file(name, golden["corpora"]["perturbed"], corpus.SHOPBENCH_PREDICTIONS)
    check_file(name, golden["corpora"]["varied"], varied)
    predictions = json.loads(corpus.SHOPBENCH_PREDICTIONS.read_text("utf-8"))[label]
    return DevSet(label, path, varied, seeds, predictions, golden)


@pytest.fixture(scope="module")
def model_paths(dev: DevSet) -> dict[str, str]:
    """The sentence models available here; each must be the one the goldens were made with."""
    paths = {}
    used = dev.golden["substitutions"]["sentence_models"]
    for name in metrics.SENTENCE_MODEL_FOR_METRIC.values():
        try:
            path = metrics.resolve_sentence_model(name)
        except SentenceModelNotFoundError:
            continue
        paths[name] = str(path)
        for rel, digest in used[name].get("weights_sha256", {}).items():
            got = hashlib.sha256((path / rel).read_bytes()).hexdigest()
            assert got == digest, f"{name}: {path / rel} is not the model the goldens used"
    if "all-MiniLM-L6-v2" not in paths:
        pytest.skip("all-MiniLM-L6-v2 is not available offline")
    return paths


def _compare(
    records: list[Record], predictions: list[str], official: dict[str, Any], paths: dict[str, str]
) -> tuple[int, float]:
    # Tasks whose metric needs a model that is not available here are left out of the
    # comparison (the dev set has no multilingual-sent-transformer task, so none is).
    unavailable = {m for m, name in metrics.SENTENCE_MODEL_FOR_METRIC.items() if name not in paths}
    ours = evaluate(records, predictions, "official")
    assert "tasks" in official, official
    ref, ref_rows = official["tasks"], official["rows"]
    compared, worst = 0, 0.0
    for name, task in ours.scores["tasks"].items():
        if set(task["metric"].split("+")) & unavailable:
            continue
        worst = max(worst, abs(task["score"] - ref[name]))
        assert task["score"] == pytest.approx(ref[name], abs=TOL), name
        compared += 1
    for r, row, value in zip(records, ours.rows, ref_rows, strict=True):
        if r.metric == "micro f1":
            assert row.counts is not None and list(row.counts) == value, (r.source, row)
        elif r.metric not in unavailable:
            assert row.score == pytest.approx(float(value), abs=TOL), (r.source, row)
    assert set(ref) == set(ours.scores["tasks"])
    return compared, worst


@pytest.mark.parametrize("i", range(5))
def test_official_mode_matches_the_official_evaluator(
    i: int, dev: DevSet, model_paths: dict[str, str]
) -> None:
    records = load_shopbench(dev.path)
    key = f"perturbed/{dev.seeds[i]}"
    compared, _ = _compare(records, dev.predictions[key], dev.run(key), model_paths)
    assert compared == 18


def test_parity_on_the_varied_format_corpus(dev: DevSet, model_paths: dict[str, str]) -> None:
    records = load_shopbench(dev.path)
    compared, _ = _compare(records, load_predictions(dev.corpus), dev.run("varied"), model_paths)
    assert compared == 18


def test_multilingual_task_parity(dev: DevSet, model_paths: dict[str, str], tmp_path: Path) -> None:
    if "paraphrase-multilingual-MiniLM-L12-v2" not in model_paths:
        pytest.skip(
            "paraphrase-multilingual-MiniLM-L12-v2 is not available offline: the "
            "multilingual-sent-transformer task is not compared here (the dev set has none)"
        )
    official = dev.run(ML_KEY)
    if "tasks" not in official:
        pytest.fail(
            "the goldens were made without paraphrase-multilingual-MiniLM-L12-v2, which is "
            f"available here ({official}): {regenerate()}"
        )
    rows = [json.loads(x) for x in dev.path.read_text("utf-8").splitlines() if x.strip()]
    for row in rows:
        if row["metric"] in ("bleu", "jp-bleu"):
            row["metric"] = "multilingual-sent-transformer"
    path = tmp_path / "ml.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    records = load_shopbench(path)
    predictions = dev.predictions[f"perturbed/{corpus.MULTILINGUAL_SEED}"]
    _compare(records, predictions, official, model_paths)


def test_the_predictions_are_what_the_corpus_builder_makes(dev: DevSet) -> None:
    records = load_shopbench(dev.path)
    assert set(dev.predictions) == {
        f"perturbed/{seed}" for seed in (*dev.seeds, corpus.MULTILINGUAL_SEED)
    }
    for key, predictions in dev.predictions.items():
        seed = int(key.rsplit("/", 1)[1])
        assert predictions == corpus.perturbed_predictions(records, seed), key


def test_perturbations_cover_the_quirks(dev: DevSet) -> None:
    seen: set[str] = set()
    for seed in dev.seeds:
        seen.update(dev.predictions[f"perturbed/{seed}"])
    # The sets above must exercise the kit's edge cases, not only clean answers.
    for needle in ("0, 1, 2, 3, 4", "5, 0", "٣", "['a', 1]", "", "1, 2, 2, 3"):
        assert needle in seen, needle
