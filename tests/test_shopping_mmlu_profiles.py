"""Shopping MMLU in a spec: choosing the evaluated files, and one set of answers scored under
the four profiles (the two official evaluators, the ShopBench official and robust parsers).

Runs on the miniature release the spec ``experiments/shopping_mmlu/tiny_cpu.yaml`` evaluates
(``experiments/data/shopping_mmlu_mini``), which must stay what the fixture builder writes.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

from harness.shopbench.mmlu import (
    LEADERBOARD_COLUMNS,
    PROFILES,
    ShoppingMMLUDataError,
    evaluated_files,
    load_benchmark,
    select_files,
)
from harness.shopbench.mmlu.profiles import (
    ALL_PROFILES,
    embedding_metrics,
    score_profiles,
    skill_records,
)
from tests.support import fake_embedder
from tests.support.paths import REPO

MINI = REPO / "experiments" / "data" / "shopping_mmlu_mini"
_spec = importlib.util.spec_from_file_location(
    "shopping_mmlu_fixture", REPO / "tests" / "data" / "shopping_mmlu" / "build_fixture.py"
)
assert _spec is not None and _spec.loader is not None
fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture)

EMBED = fake_embedder.EMBED
# The ShopBench profiles load sentence models by name; the multilingual one is not shipped.
NO_MULTI = ["multilingual-sent-transformer"]


def test_the_spec_release_is_what_the_fixture_builder_writes() -> None:
    on_disk = {
        p.relative_to(MINI).as_posix(): p.read_text(encoding="utf-8")
        for p in MINI.rglob("*")
        if p.is_file()
    }
    assert on_disk == fixture.files()


def test_select_files_by_kind_name_and_limit() -> None:
    bench = load_benchmark(MINI)
    skills = select_files(bench, "skills", ["skill3_behavior", "skill1_concept"], 2)
    assert skills.tasks == () and [s.name for s in skills.skills] == [
        "skill1_concept",
        "skill3_behavior",
    ]
    assert all(len(s.rows) == 2 for s in skills.skills)
    assert skills.skills[0].rows == bench.skill("skill1_concept").rows[:2]
    tasks = evaluated_files(MINI, "task")
    assert tasks.skills == () and len(tasks.tasks) == len(bench.tasks)
    with pytest.raises(ShoppingMMLUDataError, match=r"'skill3_behaviour' \(did you mean"):
        select_files(bench, "skills", ["skill3_behaviour"])


def test_skill_rows_become_shopbench_records_unless_shopbench_cannot_score_them() -> None:
    bench = load_benchmark(MINI)
    edge = bench.skill("skill5_edge_cases")
    kept, warns = skill_records(edge)
    assert all(r.track == "skill5_edge_cases" for _, r in kept)
    left = len(edge.rows) - len(kept)
    assert left >= 2  # the two `exact` rows at least
    assert sum(int(w.split(": ")[1].split()[0]) for w in warns) == left
    assert any("'exact'" in w for w in warns)
    concept = bench.skill("skill1_concept")
    kept, warns = skill_records(concept, leave_out_metrics=["sent-transformer"])
    assert len(kept) == len(concept.rows) - sum(
        r.metric == "sent-transformer" for r in concept.rows
    )
    assert warns and "no embedding model" in warns[0]


def test_perfect_answers_under_the_four_profiles() -> None:
    bench = evaluated_files(MINI, "skill")
    answers = {s.name: fixture.perfect_predictions(s) for s in bench.skills}
    result = score_profiles(bench, answers, embed=EMBED, leave_out_metrics=NO_MULTI)
    assert list(result) == list(ALL_PROFILES)
    for profile, r in result.items():
        assert list(r["leaderboard"]) == [*LEADERBOARD_COLUMNS, "Overall"]
        # Every profile gives the maximum on well-formed tasks and skills.
        assert r["skills"]["skill3_behavior"] == pytest.approx(1.0), profile
        for task in ("product_category_selection", "query_keyword_retrieval"):
            assert r["tasks"][task] == pytest.approx(1.0), (profile, task)
    # An answer index of -1: the official evaluators and the robust parser score its row 0,
    # the starter kit's official parsing takes "-1" as the index -1 and scores it right.
    assert result["official"]["tasks"]["odd_answer_index"] == 1.0
    for profile in ("robust", *PROFILES):
        assert result[profile]["tasks"]["odd_answer_index"] == 0.5, profile
    # An empty retrieval truth: the kit cannot score it (NaN, with a warning).
    assert math.isnan(result["official"]["tasks"]["empty_truth_retrieval"])
    assert any("empty_truth_retrieval: NaN" in w for w in result["official"]["warnings"])
    for profile in PROFILES:
        assert "detail" in result[profile]
        assert result[profile]["detail"]["profile"] == profile


def test_the_scorer_alone_moves_the_number() -> None:
    bench = evaluated_files(MINI, "skill")
    answers = {s.name: fixture.styled_predictions(s, seed=3) for s in bench.skills}
    result = score_profiles(bench, answers, embed=EMBED, leave_out_metrics=NO_MULTI)
    overall = {p: r["leaderboard"]["Overall"] for p, r in result.items()}
    finite = [v for v in overall.values() if not math.isnan(v)]
    assert len(finite) >= 3
    assert max(finite) - min(finite) > 0.01, overall


def test_task_files_get_the_two_shopping_mmlu_profiles() -> None:
    bench = evaluated_files(MINI, "task")
    answers = {t.name: fixture.perfect_predictions(t) for t in bench.tasks}
    result = score_profiles(bench, answers, embed=EMBED)
    assert list(result) == list(PROFILES)
    assert result["shopping-mmlu-task"]["tasks"]["product_category_selection"] == 1.0


def test_embedding_metrics_of_the_evaluated_files() -> None:
    assert embedding_metrics(evaluated_files(MINI, "skill", ["skill3_behavior"])) == {}
    used = embedding_metrics(evaluated_files(MINI, "skill"))
    assert set(used) == {"sent-transformer", "multilingual-sent-transformer"}


def test_the_miniature_release_and_new_prompt_variants_stay_out_of_the_tiny_tokenizer() -> None:
    from harness.spec.schema import TinyModelConfig
    from harness.tiny_model import corpus_files

    files = corpus_files([REPO / p for p in TinyModelConfig().corpus])
    assert not [f for f in files if f.is_relative_to(MINI)]
    prompts = {f.name for f in files if f.parent.name == "prompts"}
    assert prompts == {"plain.yaml", "taskwise.yaml"}
