"""Shopping MMLU: loading the official layout, prompts, and both official scoring profiles.

Parity is checked against golden facts (``golden/official/mmlu_task_wise.json``,
``mmlu_skill_wise.json``): the official task-wise and skill-wise scripts themselves, run by
``tests/support/official_goldens.py`` on the miniature release over a committed corpus of
varied outputs (``tests/data/shopping_mmlu/build_fixture.py``'s styles, perfect answers and
generated random text): prompts equal, scores and per-row values agree to 1e-6, NaN where the
official script returns NaN or raises. The embedding metrics use a deterministic hashed
bag-of-words model (:mod:`tests.support.fake_embedder`, also given to the official scripts),
so no model is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.shopbench.errors import DataError, ScoringError, UnknownNameError
from harness.shopbench.mmlu import (
    LEADERBOARD_COLUMNS,
    OVERALL_COLUMN,
    SKILL_PROFILE,
    TASK_PROFILE,
    Benchmark,
    ShoppingMMLUDataError,
    TaskData,
    TaskRow,
    build_prompt,
    leaderboard_row,
    leaderboard_table,
    load_benchmark,
    load_task_file,
    max_new_tokens,
    official,
    score_benchmark,
    score_skill,
    score_task,
    skill_column,
)
from harness.shopbench.mmlu import data as mmlu_data
from tests.support import official_corpus, paths
from tests.support.fake_embedder import EMBED, EN
from tests.support.goldens import check_file, official_golden, sha256_text

HERE = paths.TESTS
_spec = importlib.util.spec_from_file_location(
    "shopping_mmlu_fixture", HERE / "data" / "shopping_mmlu" / "build_fixture.py"
)
assert _spec is not None and _spec.loader is not None
fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture)

TOL = 1e-6
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
PROFILES = (SKILL_PROFILE, TASK_PROFILE)
EXT = {"multiple_choice": "csv"}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data.zip, extracted directory) of the miniature release."""
    root = tmp_path_factory.mktemp("mmlu")
    return fixture.build_zip(root / "data.zip"), fixture.build_dir(root / "data")


@pytest.fixture(scope="module")
def bench(release: tuple[Path, Path]) -> Benchmark:
    return load_benchmark(release[1])


def _path(root: Path, t: TaskData) -> Path:
    if t.is_skill:
        return root / "skills" / f"{t.name}.json"
    return root / t.folder / f"{t.name}_dataset.{EXT.get(t.folder, 'json')}"


def _same(a: Any, b: Any) -> bool:
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= TOL


def _golden(name: str) -> dict[str, Any]:
    """An official golden, checked to be computed from this release and the committed
    outputs corpus."""
    golden = official_golden(name)
    check_file(name, golden["corpus"], official_corpus.MMLU_OUTPUTS)
    release = {rel: sha256_text(text) for rel, text in fixture.files().items()}
    assert golden["release"]["files_sha256"] == release, f"{name}: the release changed"
    return golden


@pytest.fixture(scope="module")
def task_golden() -> dict[str, Any]:
    """``golden/official/mmlu_task_wise.json``: per task file, keyed ``FOLDER/NAME``."""
    return _golden("mmlu_task_wise")["tasks"]


@pytest.fixture(scope="module")
def skill_golden() -> dict[str, Any]:
    """``golden/official/mmlu_skill_wise.json``: per skill file, keyed ``skills/NAME``."""
    return _golden("mmlu_skill_wise")["skills"]


@pytest.fixture(scope="module")
def outputs() -> dict[str, dict[str, list[str]]]:
    """The committed outputs corpus: ``FOLDER/NAME`` -> output set -> outputs."""
    return json.loads(official_corpus.MMLU_OUTPUTS.read_text("utf-8"))


def _key(t: TaskData) -> str:
    return official_corpus.mmlu_key(t)


# --------------------------------------------------------------------------- loading


def test_zip_and_directory_load_the_same_release(release: tuple[Path, Path]) -> None:
    z, d = release
    a, b = load_benchmark(z), load_benchmark(d)
    assert [(t.name, t.folder, t.rows) for t in a] == [(t.name, t.folder, t.rows) for t in b]
    assert a.ignored == ("data/README.txt",)
    assert a.tasks[0].source.endswith("data.zip:data/multiple_choice/odd_answer_index_dataset.csv")


def test_archive_without_a_top_folder(release: tuple[Path, Path], tmp_path: Path) -> None:
    flat = load_benchmark(fixture.build_zip(tmp_path / "flat.zip", prefix=""))
    nested = load_benchmark(release[0])
    assert [(t.name, t.rows) for t in flat] == [(t.name, t.rows) for t in nested]
    assert flat.ignored == ("README.txt",)


def test_csv_with_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    text = "question,choices,answer\r\n\"two\r\nlines\",\"['a', 'b', 'c', 'd']\",2\r\n"
    path = tmp_path / "multiple_choice" / "x_dataset.csv"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    t = load_task_file(path)
    assert [(r.input, r.choices, r.target, r.line) for r in t.rows] == [
        ("two\r\nlines", ("a", "b", "c", "d"), 2, 2)
    ]
    import pandas as pd

    assert pd.read_csv(path).iloc[0, 0] == t.rows[0].input


def test_names_types_and_metrics(bench: Benchmark) -> None:
    got = {(t.folder, t.name, t.metric) for t in bench.tasks}
    assert got == {
        ("multiple_choice", "odd_answer_index", "accuracy"),
        ("multiple_choice", "product_category_selection", "accuracy"),
        ("multiple_choice", "review_rating_prediction", "accuracy"),
        ("retrieval", "empty_truth_retrieval", "hit rate@3"),
        ("retrieval", "query_keyword_retrieval", "hit rate@3"),
        ("ranking", "all_zero_relevance_ranking", "ndcg"),
        ("ranking", "query_product_ranking", "ndcg"),
        ("named_entity_recognition", "query_entity_recognition", "micro f1"),
        ("generation", "attribute_value_extraction", "rougel"),
        ("generation", "product_title_translation", "bleu"),
        ("generation", "product_title_translation_JP", "jp-bleu"),
        ("generation", "multilingual_description_generation", "multilingual-sent-transformer"),
        ("generation", "product_explanation", "sent-transformer"),
    }
    assert [s.name for s in bench.skills] == [
        "skill1_concept",
        "skill2_knowledge",
        "skill3_behavior",
        "skill4_multilingual",
        "skill5_edge_cases",
    ]
    row = bench.skill("skill3_behavior").rows[0]
    assert (row.task_name, row.task_type, row.metric) == (
        "query_product_ranking",
        "ranking",
        "ndcg",
    )
    with pytest.raises(ScoringError, match="no task 'nope'"):
        bench.task("nope")


def test_rows_read_by_position_as_pandas_does(bench: Benchmark, release: tuple[Path, Path]) -> None:
    import ast

    import pandas as pd

    for t in bench.tasks:
        path = _path(release[1], t)
        df = pd.read_csv(path) if t.folder == "multiple_choice" else pd.read_json(path, lines=True)
        assert len(t.rows) == df.shape[0], t.name
        for i, row in enumerate(t.rows):
            assert row.index == i
            assert row.input == df.iloc[i, 0]
            target = df.iloc[i, -1]
            assert row.target == (int(target) if t.folder == "multiple_choice" else target)
            if t.folder == "multiple_choice" and not t.is_review_rating:
                assert list(row.choices or ()) == [str(c) for c in ast.literal_eval(df.iloc[i, 1])]


def test_review_rating_special_case(bench: Benchmark) -> None:
    t = bench.task("review_rating_prediction")
    assert t.is_review_rating and not bench.task("product_category_selection").is_review_rating
    assert [r.target for r in t.rows] == [r for _, r in fixture.REVIEWS]
    assert all(r.choices is None for r in t.rows)
    # Ratings are the labels: "5" is right, and the choice labels are 1-5 for ill-format.
    out = score_task(t, ["1", "4", " 5 stars", "x", "0"])
    assert [r["score"] for r in out["rows"]] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert out["ill_format"] == 2  # "x" and "0" are not ratings


def test_line_numbers(bench: Benchmark) -> None:
    # Header, a blank line, then records; the third question spans two lines.
    lines = [r.line for r in bench.task("product_category_selection").rows]
    assert lines == [3, 4, 5, 7, 8, 9]
    # JSON Lines: a blank line after the first record.
    assert [r.line for r in bench.task("query_product_ranking").rows] == [1, 3, 4, 5, 6]


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("rel", "text", "line", "reason"),
    [
        ("multiple_choice/a_dataset.csv", "q,c,a\nx,\"['1','2','3','4']\",1,9\n", 2, "4 fields"),
        (
            "multiple_choice/a_dataset.csv",
            "q,c,a\nx,\"['1','2','3','4']\",one\n",
            2,
            "not an integer",
        ),
        ("multiple_choice/a_dataset.csv", "q,c,a\nx,\"['1','2'\",1\n", 2, "not a Python literal"),
        ("multiple_choice/a_dataset.csv", "q,c,a\nx,\"['1','2']\",1\n", 2, "at least 4"),
        ("multiple_choice/a_dataset.csv", "q,c,a\n\nNA,\"['1','2','3','4']\",1\n", 3, "missing"),
        ("multiple_choice/a_dataset.csv", "q,c,a\nx,__import__('os'),1\n", 2, "not a Python"),
        (
            "ranking/a_dataset.json",
            '{"input_field": "q", "target_field": [1]}\n{"input_field": "q"}\n',
            2,
            "last column",
        ),
        (
            "ranking/a_dataset.json",
            '{"input_field": 3, "target_field": [1]}\n',
            1,
            "must be a string",
        ),
        (
            "skills/s.json",
            '{"input_field": "q", "output_field": 1, "task_name": "t", "task_type": "multiple-choice"}\n',
            1,
            "`metric`",
        ),
        ("skills/s.json", "[1, 2]\n", 1, "JSON object"),
    ],
)
def test_malformed_rows_name_file_and_line(
    tmp_path: Path, rel: str, text: str, line: int, reason: str
) -> None:
    path = _write(tmp_path, rel, text)
    with pytest.raises(ShoppingMMLUDataError, match=rf"{path.name}:{line}: .*{reason}"):
        load_task_file(path)
    skipped = load_task_file(path, on_error="skip")
    assert [s.line for s in skipped.skipped][-1] == line
    assert reason.strip("`") in skipped.skipped[-1].reason


def test_file_level_errors(tmp_path: Path) -> None:
    assert issubclass(ShoppingMMLUDataError, DataError)
    assert issubclass(ShoppingMMLUDataError, ScoringError)
    bad_json = _write(tmp_path, "ranking/b_dataset.json", '{"input_field": "q", "t": [1]}\n{oops\n')
    with pytest.raises(ShoppingMMLUDataError, match=r"b_dataset.json:2: invalid JSON"):
        load_task_file(bad_json, on_error="skip")
    with pytest.raises(ShoppingMMLUDataError, match="not a Shopping MMLU data file"):
        load_task_file(_write(tmp_path, "ranking/b.json", "{}\n"))
    with pytest.raises(ShoppingMMLUDataError, match="expected at least 3"):
        load_task_file(_write(tmp_path, "multiple_choice/c_dataset.csv", "q,a\nx,1\n"))
    with pytest.raises(ShoppingMMLUDataError, match="no Shopping MMLU data files"):
        load_benchmark(_write(tmp_path, "empty/readme.txt", "x").parent)
    z = tmp_path / "two.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("a/ranking/x_dataset.json", "")
        f.writestr("b/ranking/y_dataset.json", "")
    with pytest.raises(ShoppingMMLUDataError, match="several roots"):
        load_benchmark(z)
    with pytest.raises(ShoppingMMLUDataError, match="differs from the expected"):
        load_benchmark(z, expected_sha256=mmlu_data.OFFICIAL_DATA_ZIP_SHA256)


def test_skipped_rows_are_reported_when_scoring(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "retrieval/r_dataset.json",
        '{"input_field": "q", "target_field": [1]}\n{"input_field": "q2", "target_field": null}\n'
        '{"input_field": "q3", "target_field": [2]}\n',
    )
    t = load_task_file(path, on_error="skip")
    assert [(r.index, r.line) for r in t.rows] == [(0, 1), (1, 3)]
    out = score_task(t, ["1", "2"])
    assert out["score"] == 1.0 and out["skipped"] == 1
    assert "1 malformed row(s) were skipped at load (line 2)" in out["warnings"][0]


def test_digest_check(release: tuple[Path, Path]) -> None:
    z = release[0]
    assert load_benchmark(z, expected_sha256=mmlu_data.sha256_of(z)).tasks
    with pytest.raises(ShoppingMMLUDataError, match="only be checked for an archive"):
        load_benchmark(release[1], expected_sha256="00")


# --------------------------------------------------------------------------- prompts


@pytest.mark.parametrize(("specific", "letters"), [(False, False), (True, False), (False, True)])
def test_prompts_match_the_task_wise_scripts(
    bench: Benchmark, task_golden: dict[str, Any], specific: bool, letters: bool
) -> None:
    for t in bench.tasks:
        prompts = task_golden[_key(t)]["prompts"]
        # Only the multiple-choice script has a letter option; the others ignore it.
        mc = t.folder == "multiple_choice"
        variant = "task_specific" if specific else "letters" if letters and mc else "plain"
        want = prompts[variant]
        assert len(want) == len(t.rows), t.name
        for i in range(len(t.rows)):
            got = build_prompt(t, i, task_specific_prompt=specific, letter_choices=letters)
            assert got == want[i], (t.name, i)


def test_skill_prompts_and_decoding_caps(
    bench: Benchmark, task_golden: dict[str, Any], skill_golden: dict[str, Any]
) -> None:
    for skill in bench.skills:
        g = skill_golden[_key(skill)]
        n = len(skill.rows)
        assert [build_prompt(skill, i) for i in range(n)] == g["prompts"], skill.name
        assert [max_new_tokens(skill, i) for i in range(n)] == g["max_new_tokens"]["1"]
        four = [max_new_tokens(skill, i, multi_choice_tokens=4) for i in range(n)]
        assert four == g["max_new_tokens"]["4"], skill.name
    s = bench.skill("skill1_concept")
    assert max_new_tokens(s, 0) == 1 and max_new_tokens(s, 0, multi_choice_tokens=4) == 4
    assert max_new_tokens(s, len(s.rows) - 1) == 100
    caps = {t.folder: max_new_tokens(t) for t in bench.tasks}
    assert caps == {
        "multiple_choice": 4,
        "retrieval": 15,
        "ranking": 20,
        "named_entity_recognition": 20,
        "generation": 128,
    }
    for t in bench.tasks:
        assert task_golden[_key(t)]["max_new_tokens"] == [max_new_tokens(t)], t.name
    pt = TaskData("pt_name_explain", "generation", "mem", (TaskRow(0, 1, "Explain.", "x"),))
    assert build_prompt(pt, 0, task_specific_prompt=True).startswith(
        "You are required to perform the task of  product type name explain. "
    )


# --------------------------------------------------------------------------- parity


def _row_values(out: dict[str, Any]) -> list[Any]:
    return [[r["tp"], r["fp"], r["fn"]] if "tp" in r else r["score"] for r in out["rows"]]


def _check_task_parity(
    t: TaskData, want: dict[str, Any], outputs: list[str], letters: bool = False
) -> None:
    ours = score_task(t, outputs, TASK_PROFILE, embed=EMBED, letter_choices=letters)
    if "raises" in want:
        assert math.isnan(ours["score"]), (t.name, outputs, want["raises"])
        assert ours["warnings"], t.name
        return
    assert _same(ours["score"], want["score"]), (t.name, outputs, ours["score"], want)
    for got, exp in zip(_row_values(ours), want["rows"], strict=True):
        assert got == exp if isinstance(exp, list) else _same(got, exp), (t.name, outputs)
    if t.folder in ("multiple_choice", "ranking"):
        assert ours["ill_format"] == want["ill_format"], (t.name, outputs)
    if math.isnan(ours["score"]):
        assert ours["warnings"], t.name


def _check_skill_parity(s: TaskData, want: dict[str, Any], outputs: list[str]) -> None:
    ours = score_skill(s, outputs, SKILL_PROFILE, embed=EMBED)
    whole = want["whole"]
    if "raises" in whole:
        assert math.isnan(ours["score"]), (s.name, whole["raises"])
    else:
        assert _same(ours["score"], whole["track_wise"]), (s.name, outputs)
        values = [
            [r["tp"], r["fp"], r["fn"]] if "tp" in r else r["score"]
            for t in ours["tasks"].values()
            for r in t["rows"]
        ]
        order = [r["index"] for t in ours["tasks"].values() for r in t["rows"]]
        assert sorted(order) == list(range(len(outputs)))
        for i, got in zip(order, values, strict=True):
            exp = whole["rows"][i]
            if exp is None or isinstance(exp, list):
                assert got == exp, (s.name, i)
            else:
                assert _same(got, exp), (s.name, i, got, exp)
    # Task by task: the official evaluator run on the task's rows alone.
    assert set(ours["tasks"]) == set(want["tasks"]), s.name
    for name, task in ours["tasks"].items():
        part = want["tasks"][name]
        if "indices" in part:
            assert [r["index"] for r in task["rows"]] == part["indices"], (s.name, name)
        if "raises" in part:
            assert math.isnan(task["score"]), (s.name, name, part["raises"])
            assert task["warnings"], (s.name, name)
        else:
            assert _same(task["score"], part["score"]), (s.name, name)
        if math.isnan(task["score"]):
            assert task["warnings"], (s.name, name)


def _task_sets(
    bench: Benchmark, golden: dict[str, Any], outputs: dict[str, Any], keys: list[str]
) -> Iterator[tuple[TaskData, dict[str, Any], list[str], bool]]:
    """(task, official result, outputs, letters) for every task file and output set ``keys``,
    the multiple-choice files also with letter choices."""
    for t in bench.tasks:
        runs = golden[_key(t)]["runs"]
        for variant in ("plain", "letters") if t.folder == "multiple_choice" else ("plain",):
            for k in keys:
                yield t, runs[variant][k], outputs[_key(t)][k], variant == "letters"


@pytest.mark.parametrize("seed", range(8))
def test_task_profile_matches_the_task_wise_scripts(
    bench: Benchmark, task_golden: dict[str, Any], outputs: dict[str, Any], seed: int
) -> None:
    for t, want, outs, letters in _task_sets(
        bench, task_golden, outputs, [f"styled/{seed}", "perfect"]
    ):
        _check_task_parity(t, want, outs, letters)


@pytest.mark.parametrize("seed", range(8))
def test_skill_profile_matches_the_skill_wise_evaluator(
    bench: Benchmark, skill_golden: dict[str, Any], outputs: dict[str, Any], seed: int
) -> None:
    for s in bench.skills:
        for k in (f"styled/{seed}", "perfect"):
            _check_skill_parity(s, skill_golden[_key(s)]["runs"][k], outputs[_key(s)][k])


def test_generated_random_outputs_keep_parity(
    bench: Benchmark,
    task_golden: dict[str, Any],
    skill_golden: dict[str, Any],
    outputs: dict[str, Any],
) -> None:
    """Junk, right answers and right answers inside junk, per row (a fixed generated set)."""
    keys = [f"random/{n}" for n in range(official_corpus.MMLU_RANDOM_DRAWS)]
    for t, want, outs, letters in _task_sets(bench, task_golden, outputs, keys):
        _check_task_parity(t, want, outs, letters)
    for s in bench.skills:
        for k in keys:
            _check_skill_parity(s, skill_golden[_key(s)]["runs"][k], outputs[_key(s)][k])


def test_the_outputs_corpus_is_what_its_builder_makes(outputs: dict[str, Any]) -> None:
    assert outputs == official_corpus.mmlu_outputs()
    assert official_corpus.MMLU_OUTPUTS.read_text("utf-8") == official_corpus.dump(outputs)


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(data=st.data(), profile=st.sampled_from(PROFILES))
def test_scoring_never_raises(bench: Benchmark, data: st.DataObject, profile: str) -> None:
    for t in (*bench.tasks, *bench.skills):
        outputs = data.draw(st.lists(st.text(max_size=30), min_size=len(t), max_size=len(t)))
        if t.is_skill:
            out = score_skill(t, outputs, profile, embed=EMBED)
        else:
            out = score_task(t, outputs, profile, embed=EMBED)
        assert isinstance(out["score"], float)
        assert all(isinstance(w, str) for w in out["warnings"])
        json.dumps(out)  # JSON-ready (NaN as NaN)


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


@st.composite
def _perfect_case(draw: st.DrawFn) -> tuple[TaskData, list[str], float]:
    """A random task, its perfect answers and the maximum score."""
    kind = draw(
        st.sampled_from(["mc", "review", "retrieval", "ranking", "ner", "rouge", "bleu", "sent"])
    )
    n = draw(st.integers(1, 4))
    rows: list[TaskRow] = []
    answers: list[str] = []
    folder, name = "generation", "x_explain"
    for i in range(n):
        if kind == "mc":
            folder, name = "multiple_choice", "pick"
            a = draw(st.integers(0, 3))
            rows.append(TaskRow(i, i + 2, "q", a, ("a", "b", "c", "d")))
            answers.append(draw(st.sampled_from([str(a), f" {a}", f"{a}. b"])))
        elif kind == "review":
            folder, name = "multiple_choice", "review_rating_prediction"
            a = draw(st.integers(1, 5))
            rows.append(TaskRow(i, i + 2, "q", a))
            answers.append(str(a))
        elif kind == "retrieval":
            folder, name = "retrieval", "r"
            truth = draw(st.lists(st.integers(1, 20), min_size=1, max_size=3, unique=True))
            rows.append(TaskRow(i, i + 1, "q", truth))
            answers.append(draw(st.sampled_from([", ", ","])).join(map(str, truth)))
        elif kind == "ranking":
            folder, name = "ranking", "k"
            w = draw(st.lists(st.sampled_from([0, 0.1, 1, 2, 3]), min_size=1, max_size=6))
            w = w if any(w) else [*w[:-1], 1]
            rows.append(TaskRow(i, i + 1, "q", w))
            answers.append(
                ",".join(map(str, sorted(range(1, len(w) + 1), key=lambda j: -w[j - 1])))
            )
        elif kind == "ner":
            folder, name = "named_entity_recognition", "e"
            ents = draw(st.lists(_WORD, min_size=1, max_size=3, unique=True))
            rows.append(TaskRow(i, i + 1, "q", ents))
            answers.append(", ".join(e.upper() for e in ents))
        else:
            count = 4 if kind == "bleu" else 1
            text = " ".join(draw(st.lists(_WORD, min_size=count, max_size=6)))
            name = {"rouge": "v_extraction", "bleu": "t_translation", "sent": "x_explain"}[kind]
            rows.append(TaskRow(i, i + 1, "q", text))
            answers.append(text)
    return TaskData(name, folder, "mem", tuple(rows)), answers, 1.0


@SETTINGS
@given(case=_perfect_case(), profile=st.sampled_from(PROFILES))
def test_a_perfect_answer_scores_the_maximum(
    case: tuple[TaskData, list[str], float], profile: str
) -> None:
    task, answers, best = case
    out = score_task(task, answers, profile, embed=EMBED)
    assert out["score"] == pytest.approx(best, abs=TOL), out
    assert not out["warnings"]


# --------------------------------------------------------------------------- the quirks


def _task(folder: str, name: str, targets: list[Any], choices: bool = False) -> TaskData:
    rows = tuple(
        TaskRow(i, i + 1, "q", t, ("a", "b", "c", "d") if choices else None)
        for i, t in enumerate(targets)
    )
    return TaskData(name, folder, "mem", rows)


def _skill(rows: list[tuple[str, str, Any]]) -> TaskData:
    """Skill rows from (task, metric, target)."""
    return TaskData(
        "skill9",
        "skills",
        "mem",
        tuple(
            TaskRow(i, i + 1, "q", target, None, task, "t", metric)
            for i, (task, metric, target) in enumerate(rows)
        ),
    )


def test_multiple_choice_first_character_vs_first_digit() -> None:
    t = _task("multiple_choice", "pick", [2, 2, 2, 2], choices=True)
    outputs = ["\n2", "  2", "Answer: 2", "2"]
    assert [r["score"] for r in score_task(t, outputs, SKILL_PROFILE)["rows"]] == [0, 1, 0, 1]
    assert [r["score"] for r in score_task(t, outputs, TASK_PROFILE)["rows"]] == [1, 1, 1, 1]
    letters = score_task(t, ["C", " (C)", "2", "c"], TASK_PROFILE, letter_choices=True)
    assert [r["score"] for r in letters["rows"]] == [1, 1, 0, 0]


def test_retrieval_multi_line_answers() -> None:
    t = _task("retrieval", "r", [[3, 4]])
    assert score_task(t, ["1, 3\n4, 9"], SKILL_PROFILE)["rows"][0]["parsed"] == [1, 9]
    assert score_task(t, ["1, 3\n4, 9"], TASK_PROFILE)["rows"][0]["parsed"] == [1, 3]
    assert score_task(t, ["3\n4"], SKILL_PROFILE)["score"] == 0.0  # int("3\n4") fails
    assert score_task(t, ["3\n4"], TASK_PROFILE)["score"] == 0.5


def test_rankings_are_not_deduplicated_and_weights_stay_unsorted() -> None:
    weights = [3, 0, 1, 2, 0]
    t = _task("ranking", "k", [weights])
    skill = score_task(t, ["1,1,1,1,1"], SKILL_PROFILE)
    assert skill["score"] > 1
    long = score_task(t, ["1,4,3,2,5,1,1"], TASK_PROFILE)  # not truncated task-wise
    assert long["score"] > 1 and long["ill_format"] == 2
    assert score_task(t, ["1,4,3,2,5,1,1"], SKILL_PROFILE)["score"] == pytest.approx(1.0)
    assert weights == [3, 0, 1, 2, 0]  # the official in-place sort is not visible
    assert score_task(t, ["1,4,3,2,5"], SKILL_PROFILE)["score"] == pytest.approx(1.0)
    assert official.ndcg([0], [0, 0, 1]) == pytest.approx(1.0)  # index 0 reads the last weight


def test_all_zero_truth_and_bad_indices_are_nan() -> None:
    zero = _task("ranking", "k", [[0, 0, 0], [1, 0, 0]])
    for profile in PROFILES:
        out = score_task(zero, ["1,2,3", "1,2,3"], profile)
        assert math.isnan(out["score"]) and math.isnan(out["rows"][0]["score"])
        assert out["rows"][1]["score"] == pytest.approx(1.0)
        assert "every relevance weight is zero" in out["warnings"][0]
    short = _task("ranking", "k", [[1, 0, 0]])
    out = score_task(short, ["-9, 1"], TASK_PROFILE)
    assert math.isnan(out["score"]) and "IndexError" in out["warnings"][0]
    assert "row 0 (line 1)" in out["warnings"][0]


def test_entities_first_line_and_unguarded_micro_f1() -> None:
    t = _task("named_entity_recognition", "e", [["Nike", "adidas"], ["lego"]])
    out = score_task(t, ["\n\nnike , ADIDAS\npuma", "LEGO,,lego"], SKILL_PROFILE)
    assert [(r["tp"], r["fp"], r["fn"]) for r in out["rows"]] == [(2, 0, 0), (1, 1, 0)]
    assert out["score"] == pytest.approx(2 * 0.75 * 1 / 1.75)
    for profile in PROFILES:
        none = score_task(t, ["", "\n\n"], profile)
        assert math.isnan(none["score"])
        assert "micro F1 divides by zero" in none["warnings"][0]


def test_similarity_is_clamped_only_skill_wise() -> None:
    vectors = {"up": np.array([1, 0], np.float32), "down": np.array([-1, 0], np.float32)}
    vectors[""] = np.zeros(2, np.float32)

    def embed(texts: list[str]) -> list[Any]:
        return [vectors[t] for t in texts]

    t = _task("generation", "x_explain", ["down", "down"])
    task_wise = score_task(t, ["up", "down"], TASK_PROFILE, embed=embed)
    skill_wise = score_task(t, ["up", "down"], SKILL_PROFILE, embed=embed)
    assert [r["score"] for r in task_wise["rows"]] == [-1.0, 1.0]
    assert [r["score"] for r in skill_wise["rows"]] == [0.0, 1.0]
    zero = score_task(t, ["", "down"], TASK_PROFILE, embed=embed)
    assert math.isnan(zero["score"]) and "zero-norm embedding" in zero["warnings"][0]
    assert score_task(t, ["", "down"], SKILL_PROFILE, embed=embed)["score"] == 0.5
    listed = _task("generation", "x_explain", [[]])
    assert math.isnan(score_task(listed, ["up"], TASK_PROFILE, embed=embed)["score"])
    assert score_task(listed, ["up"], SKILL_PROFILE, embed=embed)["score"] == 0.0


def test_bleu_reads_the_first_line_and_needs_a_string_reference() -> None:
    t = _task("generation", "p_translation", ["red cotton shirt for men", ["a", "b"]])
    out = score_task(t, ["\n\nRed cotton shirt for men\nmore", "a"], TASK_PROFILE)
    assert out["rows"][0]["score"] == pytest.approx(1.0)
    assert out["rows"][0]["parsed"] == "Red cotton shirt for men"
    assert math.isnan(out["score"]) and "TypeError" in out["warnings"][0]


def test_task_profile_maps_answer_indices_through_the_labels(bench: Benchmark) -> None:
    t = bench.task("odd_answer_index")
    out = score_task(t, ["3", "0", "4"], TASK_PROFILE)  # -1 reads label "3"; 4 raises
    assert math.isnan(out["score"])
    assert "row 2 (line 5): IndexError" in out["warnings"][0]
    assert [r["score"] for r in out["rows"]][:2] == [1.0, 1.0]
    skill = score_task(t, ["3", "0", "4"], SKILL_PROFILE)  # compared with str(answer)
    assert skill["score"] == pytest.approx(2 / 3)


def test_skill_edge_cases(bench: Benchmark) -> None:
    s = bench.skill("skill5_edge_cases")
    outputs = ["1,2,3", "1,2,3", "1", "1", "x", "y", "red", "Red mug made of ceramic"]
    out = score_skill(s, outputs, embed=EMBED)
    tasks = out["tasks"]
    assert list(tasks) == [
        "all_zero_relevance_ranking",
        "empty_truth_retrieval",
        "free_text",
        "mixed_metrics",
    ]
    assert math.isnan(tasks["all_zero_relevance_ranking"]["score"])
    assert "ZeroDivisionError" in tasks["empty_truth_retrieval"]["warnings"][0]
    assert [r["score"] for r in tasks["free_text"]["rows"]] == [None, None]
    assert any("does not score ('exact')" in w for w in tasks["free_text"]["warnings"])
    assert math.isnan(tasks["free_text"]["score"])
    # Rows scored by their own metric, the task by its first row's (a mean).
    assert tasks["mixed_metrics"]["metric"] == "rougel"
    assert tasks["mixed_metrics"]["score"] == pytest.approx(1.0)
    assert math.isnan(out["score"]) and "stops at task(s)" in " ".join(out["warnings"])


def test_task_profile_on_skill_rows_matches_the_task_files(bench: Benchmark) -> None:
    s = bench.skill("skill1_concept")
    outputs = fixture.styled_predictions(s, 3)
    by_skill = score_skill(s, outputs, TASK_PROFILE, embed=EMBED)
    for name, got in by_skill["tasks"].items():
        rows = [outputs[r["index"]] for r in got["rows"]]
        want = score_task(bench.task(name), rows, TASK_PROFILE, embed=EMBED)
        assert _same(got["score"], want["score"]), name


def test_skill_profile_on_task_files(bench: Benchmark) -> None:
    t = bench.task("query_keyword_retrieval")
    outputs = ["2, 4", "1\n3, 6", "", "5,2", "1, 3", "2"]
    out = score_task(t, outputs, SKILL_PROFILE)
    assert [r["score"] for r in out["rows"]] == [1.0, 1 / 3, 0.0, 1.0, 1.0, 0.5]
    assert out["ill_format"] is None


# --------------------------------------------------------------------------- benchmark


def test_benchmark_skill_profile_and_leaderboard(bench: Benchmark) -> None:
    preds = {s.name: fixture.perfect_predictions(s) for s in bench.skills}
    out = score_benchmark(bench, preds, SKILL_PROFILE, embed=EMBED)
    board = out["leaderboard"]
    names = ["skill1_concept", "skill2_knowledge", "skill3_behavior", "skill4_multilingual"]
    for column, name in zip(LEADERBOARD_COLUMNS, names, strict=True):
        assert board[column] == out["skills"][name]["score"]
    assert board[LEADERBOARD_COLUMNS[2]] == pytest.approx(1.0)
    # skill2's answer -1 is compared as its first character "-" with "-1".
    assert out["skills"]["skill2_knowledge"]["tasks"]["odd_answer_index"]["score"] == 0.5
    # A list of references: the mean cosine with each, below 1 for the first one alone.
    assert board[LEADERBOARD_COLUMNS[0]] < 1
    assert out["overall"] == pytest.approx(np.mean([board[c] for c in LEADERBOARD_COLUMNS]))
    assert any("'skill5_edge_cases' has no leaderboard column" in w for w in out["warnings"])
    assert leaderboard_row(out)[OVERALL_COLUMN] == out["overall"]
    empty = {"leaderboard": dict.fromkeys([*LEADERBOARD_COLUMNS, OVERALL_COLUMN], math.nan)}
    lines = leaderboard_table({"perfect": out, "empty": empty}).splitlines()
    assert lines[0] == "| Model | " + " | ".join(LEADERBOARD_COLUMNS) + " | Overall |"
    assert lines[1] == "|---|---:|---:|---:|---:|---:|"
    cells = [f"{100 * board[c]:.2f}" for c in (*LEADERBOARD_COLUMNS, OVERALL_COLUMN)]
    assert lines[2] == "| perfect | " + " | ".join(cells) + " |"
    assert lines[3] == "| empty | nan | nan | nan | nan | nan |"


def test_benchmark_task_profile(bench: Benchmark) -> None:
    preds: dict[str, list[str]] = {t.name: fixture.perfect_predictions(t) for t in bench.tasks}
    del preds["attribute_value_extraction"]
    preds["ranking/query_product_ranking"] = preds.pop("query_product_ranking")
    out = score_benchmark(bench, preds, TASK_PROFILE, embed=EMBED)
    assert set(out["tasks"]) == {t.name for t in bench.tasks}
    assert out["tasks"]["query_product_ranking"]["score"] == pytest.approx(1.0)
    assert math.isnan(out["tasks"]["attribute_value_extraction"]["score"])
    assert "attribute_value_extraction: no predictions" in out["warnings"]
    skills = out["skills"]
    assert skills["skill3_behavior"]["tasks"] == [
        "review_rating_prediction",
        "query_product_ranking",
    ]
    assert skills["skill3_behavior"]["score"] == pytest.approx(1.0)
    assert math.isnan(skills["skill1_concept"]["score"])  # one task has no predictions
    with pytest.raises(ScoringError, match="unknown task"):
        score_benchmark(bench, {"nope": []}, TASK_PROFILE, embed=EMBED)
    explicit = score_benchmark(
        bench, preds, TASK_PROFILE, embed=EMBED, task_skills={"query_product_ranking": "skill3"}
    )
    assert explicit["leaderboard"][LEADERBOARD_COLUMNS[2]] == pytest.approx(1.0)


def test_skill_columns() -> None:
    assert skill_column("skill1_concept") == LEADERBOARD_COLUMNS[0]
    assert skill_column("skill4") == LEADERBOARD_COLUMNS[3]
    assert skill_column("user_behavior") == LEADERBOARD_COLUMNS[2]
    assert skill_column("skill12") is None and skill_column("misc") is None


# --------------------------------------------------------------------------- API edges


def test_argument_errors(bench: Benchmark) -> None:
    t = bench.task("query_keyword_retrieval")
    with pytest.raises(ScoringError, match="5 predictions for 6 rows"):
        score_task(t, [""] * 5)
    with pytest.raises(ScoringError, match="prediction 1 is a number, not a string"):
        score_task(t, ["", 1, "", "", "", ""])  # type: ignore[list-item]
    with pytest.raises(UnknownNameError, match="unknown profile"):
        score_task(t, [""] * 6, "kdd")
    with pytest.raises(ScoringError, match="score it with score_skill"):
        score_task(bench.skills[0], [""] * len(bench.skills[0]))
    with pytest.raises(ScoringError, match="score it with score_task"):
        score_skill(t, [""] * 6)


def test_default_embedder_encodes_one_text_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.shopbench import metrics

    calls: list[tuple[str, list[str]]] = []

    class Model:
        def __init__(self, name: str) -> None:
            self.name = name

        def encode(self, texts: list[str], **_: Any) -> np.ndarray:
            calls.append((self.name, list(texts)))
            return EN.encode(texts)

    monkeypatch.setattr(metrics, "load_sentence_model", lambda name, overrides=None: Model(name))
    t = _task("generation", "multilingual_x", ["eine rote Tasse", "ein Hut"])
    out = score_task(t, ["eine rote Tasse", "ein Hut"], TASK_PROFILE)
    assert out["score"] == pytest.approx(1.0)
    assert {name for name, _ in calls} == {"paraphrase-multilingual-MiniLM-L12-v2"}
    assert all(len(texts) == 1 for _, texts in calls)


def test_import_is_light() -> None:
    code = (
        "import sys, harness.shopbench.mmlu\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'pandas', 'sacrebleu') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _write_preds(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prediction": t}) + "\n" for t in texts))
    return path


@pytest.mark.parametrize(
    ("rel", "profile"),
    [
        ("multiple_choice/product_category_selection_dataset.csv", "shopping-mmlu-task"),
        ("ranking/query_product_ranking_dataset.json", "shopping-mmlu-task"),
        ("retrieval/query_keyword_retrieval_dataset.json", "shopping-mmlu-skill"),
        ("named_entity_recognition/query_entity_recognition_dataset.json", "shopping-mmlu-task"),
        ("ranking/all_zero_relevance_ranking_dataset.json", "shopping-mmlu-task"),
    ],
)
def test_score_command_answers_per_file(
    release: tuple[Path, Path], tmp_path: Path, rel: str, profile: str
) -> None:
    """`harness score --data FILE --predictions PRED --parser PROFILE --out OUT` writes
    OUT["tasks"][task]["score"], the number the library (checked against the official
    scripts above) gives; NaN is written as NaN."""
    from harness.cli import main

    data = release[1] / rel
    task = load_task_file(data)
    texts = [f"{i % 4}, {(i + 1) % 4}\n" for i in range(len(task))]
    preds = _write_preds(tmp_path / "pred.jsonl", texts)
    out = tmp_path / "out.json"
    args = ["score", "--data", str(data), "--predictions", str(preds), "--parser", profile]
    assert main([*args, "--out", str(out), "--rows", str(tmp_path / "rows.jsonl")]) == 0
    got = json.loads(out.read_text())["tasks"][task.name]["score"]
    want = score_task(task, texts, profile)["score"]
    assert (math.isnan(got) and math.isnan(want)) or got == want
    rows = (tmp_path / "rows.jsonl").read_text().splitlines()
    assert len(rows) == len(task)


def test_score_command_on_a_skill_file_and_a_whole_release(
    release: tuple[Path, Path], tmp_path: Path
) -> None:
    from harness.cli import main

    skill = load_task_file(release[1] / "skills" / "skill3_behavior.json")
    texts = ["1" for _ in range(len(skill))]
    preds = _write_preds(tmp_path / "skill.jsonl", texts)
    out = tmp_path / "skill_out.json"
    data = str(release[1] / "skills" / "skill3_behavior.json")
    assert main(["score", "--data", data, "--predictions", str(preds),
                 "--parser", "shopping-mmlu-skill", "--out", str(out)]) == 0  # fmt: skip
    doc = json.loads(out.read_text())
    want = score_skill(skill, texts, "shopping-mmlu-skill")
    assert set(doc["tasks"]) == set(want["tasks"])
    for name, t in want["tasks"].items():
        got = doc["tasks"][name]["score"]
        assert (math.isnan(got) and math.isnan(t["score"])) or got == t["score"], name

    # The whole release (zip) with a predictions dir: files without predictions score NaN.
    pdir = tmp_path / "preds"
    pdir.mkdir()
    mc = load_task_file(release[1] / "multiple_choice" / "product_category_selection_dataset.csv")
    _write_preds(pdir / "product_category_selection_dataset.jsonl", ["0"] * len(mc))
    out = tmp_path / "all.json"
    assert main(["score", "--data", str(release[0]), "--predictions", str(pdir),
                 "--parser", "shopping-mmlu-task", "--out", str(out)]) == 0  # fmt: skip
    doc = json.loads(out.read_text())
    want_mc = score_task(mc, ["0"] * len(mc))["score"]
    assert doc["tasks"]["product_category_selection"]["score"] == want_mc and not math.isnan(
        want_mc
    )
    assert math.isnan(doc["tasks"]["query_product_ranking"]["score"])
    assert any("query_product_ranking" in w for w in doc["warnings"])

    # The whole release under the skill profile: its tasks sit inside the skill files.
    sdir = tmp_path / "skill_preds"
    sdir.mkdir()
    _write_preds(sdir / "skill3_behavior.jsonl", texts)
    out, rows = tmp_path / "skills.json", tmp_path / "skill_rows.jsonl"
    assert main(["score", "--data", str(release[0]), "--predictions", str(sdir),
                 "--parser", "shopping-mmlu-skill", "--out", str(out),
                 "--rows", str(rows)]) == 0  # fmt: skip
    doc = json.loads(out.read_text())
    assert set(doc["tasks"]) == set(want["tasks"])
    for name, t in want["tasks"].items():
        got = doc["tasks"][name]["score"]
        assert (math.isnan(got) and math.isnan(t["score"])) or got == t["score"], name
    assert len(rows.read_text().splitlines()) == len(skill)
