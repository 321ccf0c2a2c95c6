"""ECInstruct conversion and import, the mix (weights, caps, held-out split, contamination,
statistics), and the synthesize + mix stages end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from harness.data.catalogue import load_catalogue
from harness.data.ecinstruct import (
    EC_KEYS,
    answer_text,
    dev_to_ec,
    ec_to_dev,
    load_ecinstruct,
    mc_answer_index,
)
from harness.data.errors import ContaminationError, MixError
from harness.data.mix import MixItem, build_mix, load_source, task_statistics
from harness.data.sources import load_sources
from harness.data.template import generate_template
from harness.shopbench.data import load_shopbench
from harness.spec.schema import MixConfig, MixSource
from tests.support.paths import REPO
from tests.support.paths import TINY_CPU as TINY

DATA = REPO / "experiments" / "data"
CAT = load_catalogue(REPO / "experiments" / "prompts" / "synth")


@pytest.fixture(scope="module")
def synth_items() -> list[MixItem]:
    s = load_sources(DATA / "products.jsonl", DATA / "categories.csv", DATA / "reviews.jsonl")
    rows = generate_template(s, CAT, ["task5", "task7", "task12"], 30, 2, seed=0)
    return [
        MixItem(dev_to_ec(r, CAT.get(r["task_name"]).instruction), r, "synthetic") for r in rows
    ]


def _src(name: str = "synthetic", **kw: object) -> MixSource:
    return MixSource.model_validate({"name": name, "kind": "synthetic", **kw})


def test_dev_rows_convert_to_the_answer_text_a_model_should_write() -> None:
    assert answer_text("multiple-choice", 2) == "2"
    assert answer_text("retrieval", [6, 9, 15]) == "6, 9, 15"
    assert answer_text("ranking", [0.1, 1, 0.01, 1, 0]) == "2, 4, 1, 3, 5"
    assert answer_text("named_entity_recognition", ["norvik", "red"]) == "norvik, red"
    assert answer_text("generation", ["first", "second"]) == "first"
    row = {
        "input_field": "Q?\n0. a\n1. b\nAnswer: ",
        "output_field": 1,
        "task_name": "task5",
        "task_type": "multiple-choice",
    }
    ec = dev_to_ec(row, "Answer it.")
    assert tuple(ec) == EC_KEYS
    assert ec == {
        "instruction": "Answer it.",
        "input": row["input_field"],
        "options": [],
        "output": "1",
        "task": "task5",
        "task_type": "multiple-choice",
    }


def test_ecinstruct_import_filters_split_and_setting(tmp_path: Path) -> None:
    rows = [
        {"split": "train", "task": "Product_Matching", "setting": "IND_Single_Instruction",
         "instruction": "Do the two titles match?", "input": "t1 | t2",
         "options": ["A: yes", "B: no"], "output": "B: no", "few_shot_example": None},
        {"split": "val", "task": "Product_Matching", "setting": "IND_Single_Instruction",
         "instruction": "x", "input": "y", "options": None, "output": "z"},
        {"split": "train", "task": "Answer_Generation", "setting": "IND_Diverse_Instruction",
         "instruction": "x", "input": "y", "options": None, "output": "z"},
        {"split": "train", "task": "Answer_Generation", "setting": "IND_Single_Instruction",
         "instruction": "Answer the question.", "input": "Is it waterproof?", "options": None,
         "output": "Yes, fully."},
    ]  # fmt: skip
    (tmp_path / "ec").mkdir()
    (tmp_path / "ec" / "part.json").write_text(json.dumps(rows), encoding="utf-8")
    items = load_ecinstruct(tmp_path / "ec")
    assert [i["task"] for i in items] == [
        "ecinstruct/Product_Matching",
        "ecinstruct/Answer_Generation",
    ]
    assert [i["task_type"] for i in items] == ["multiple-choice", "generation"]
    assert mc_answer_index(items[0]) == 1
    dev = ec_to_dev(items[0])
    assert dev is not None and dev["output_field"] == 1
    assert dev["input_field"].endswith("0. yes\n1. no\nAnswer: ")
    gen = ec_to_dev(items[1])
    assert gen is not None and gen["metric"] == "rougel" and gen["input_field"].endswith("Output: ")
    assert len(load_ecinstruct(tmp_path / "ec", split=None, setting=None)) == 4
    # In the mix, multiple-choice answers become the index of the option they name.
    src = MixSource(name="ec", kind="ecinstruct", path=str(tmp_path / "ec"))
    mixed = load_source(src, root=REPO, synthetic=None, catalogue=CAT)
    assert [m.ec["output"] for m in mixed] == ["1", "Yes, fully."]
    assert mixed[0].dev is not None and mixed[0].dev["output_field"] == 1
    unmapped = {**rows[0], "output": "C: maybe"}
    (tmp_path / "ec2").mkdir()
    (tmp_path / "ec2" / "part.json").write_text(json.dumps([unmapped]), encoding="utf-8")
    skipped: list[str] = []
    src2 = MixSource(name="ec2", kind="ecinstruct", path=str(tmp_path / "ec2"))
    assert load_source(src2, root=REPO, synthetic=None, catalogue=CAT, skipped=skipped) == []
    assert skipped == [
        "ec2: ecinstruct/Product_Matching: answer 'C: maybe' names none of the options"
    ]
    (tmp_path / "bad.jsonl").write_text('{"instruction": "x"}\n', encoding="utf-8")
    with pytest.raises(MixError, match=r"bad\.jsonl:1: missing string field `output`"):
        load_ecinstruct(tmp_path / "bad.jsonl")


def test_heldout_split_is_per_task_and_disjoint_from_training(synth_items) -> None:  # type: ignore[no-untyped-def]
    res = build_mix([(_src(), synth_items)], MixConfig(sources=[_src()], heldout_fraction=0.2))
    per_task = Counter(it.task for it in synth_items)
    held = Counter(it.task for it in res.heldout)
    assert {t: round(n * 0.2) for t, n in per_task.items()} == dict(held)
    assert not {it.text_key() for it in res.train} & {it.text_key() for it in res.heldout}
    assert len(res.train) + len(res.heldout) == len(synth_items)
    again = build_mix([(_src(), synth_items)], MixConfig(sources=[_src()], heldout_fraction=0.2))
    assert [it.ec for it in again.train] == [it.ec for it in res.train]
    other = build_mix(
        [(_src(), synth_items)], MixConfig(sources=[_src()], heldout_fraction=0.2, seed=1)
    )
    assert [it.ec for it in other.train] != [it.ec for it in res.train]


def test_weights_total_and_caps(synth_items) -> None:  # type: ignore[no-untyped-def]
    half = len(synth_items) // 2
    a, b = synth_items[:half], synth_items[half:]
    srcs = [_src("a", weight=2.0), _src("b", weight=0.5)]
    res = build_mix(
        list(zip(srcs, [a, b], strict=True)), MixConfig(sources=srcs, heldout_fraction=0)
    )
    by_src = Counter(it.source for it in res.train)
    assert by_src == {"synthetic": 2 * len(a) + round(0.5 * len(b))}  # items keep their origin
    assert res.stats["sources"]["a"]["train"] == 2 * len(a)
    assert res.stats["sources"]["b"]["train"] == round(0.5 * len(b))
    total = build_mix(
        list(zip(srcs, [a, b], strict=True)), MixConfig(sources=srcs, heldout_fraction=0, total=100)
    )
    assert len(total.train) == 100
    assert (total.stats["sources"]["a"]["train"], total.stats["sources"]["b"]["train"]) == (80, 20)
    capped = build_mix(
        [(_src(), synth_items)], MixConfig(sources=[_src()], heldout_fraction=0, cap_per_task=10)
    )
    assert set(Counter(it.task for it in capped.train).values()) == {10}
    limited = build_mix(
        [(_src(max_items=12), synth_items)], MixConfig(sources=[_src(max_items=12)])
    )
    assert len(limited.train) + len(limited.heldout) == 12


def test_duplicates_across_sources_are_taken_once(synth_items) -> None:  # type: ignore[no-untyped-def]
    srcs = [_src("a"), _src("b")]
    res = build_mix(
        list(zip(srcs, [synth_items, synth_items[:10]], strict=True)),
        MixConfig(sources=srcs, heldout_fraction=0),
    )
    assert res.stats["sources"]["b"] == {"read": 10, "duplicates": 10, "kept": 0, "train": 0}


def test_contamination_is_caught(synth_items) -> None:  # type: ignore[no-untyped-def]
    leaked = synth_items[5].dev["input_field"]  # type: ignore[index]
    cfg = MixConfig(sources=[_src()], heldout_fraction=0)
    with pytest.raises(ContaminationError, match=r"1 training item.*task task5.*`synthetic`"):
        build_mix([(_src(), synth_items)], cfg, eval_prompts=["unrelated?", leaked + "  \n"])
    lenient = MixConfig(sources=[_src()], heldout_fraction=0, contamination_check=False)
    res = build_mix([(_src(), synth_items)], lenient, eval_prompts=[leaked.replace("Answer: ", "")])
    assert res.stats["contaminated"] == 1 and res.contaminated[0]["task"] == "task5"
    clean_eval = [
        json.loads(x)["input_field"]
        for x in (DATA / "eval_tiny.jsonl").read_text("utf-8").splitlines()
    ]
    assert (
        build_mix([(_src(), synth_items)], cfg, eval_prompts=clean_eval).stats["contaminated"] == 0
    )


def test_task_statistics_report_answer_positions(synth_items) -> None:  # type: ignore[no-untyped-def]
    stats = task_statistics(synth_items, synth_items[:3])
    mc = stats["task5"]
    assert sum(mc["answer_positions"].values()) == mc["train"] == 60
    assert set(mc["answer_positions"]) == {"0", "1", "2", "3"}
    assert 0.25 <= mc["answer_position_max_share"] <= 0.27
    assert "answer_positions" not in stats["task12"] and stats["task12"]["input_chars_max"] > 0


def test_ec_guide_and_shopbench_sources(ec_guide_fixture: Path) -> None:
    skipped: list[str] = []
    src = MixSource(
        name="ecg",
        kind="ec_guide",
        path=str(ec_guide_fixture / "EC-Guide" / "MCQ" / "QPRJ.json"),
    )
    items = load_source(src, root=REPO, synthetic=None, catalogue=CAT, skipped=skipped)
    assert len(items) == 4 and all(it.dev is None for it in items)  # `bool` rows: no metric
    assert {it.ec["output"] for it in items} <= {"yes", "no"}
    rra = MixSource(
        name="rra",
        kind="ec_guide",
        path=str(ec_guide_fixture / "EC-Guide" / "Retrieval" / "RRA.json"),
    )
    items = load_source(rra, root=REPO, synthetic=None, catalogue=CAT)
    assert items[0].dev is not None and items[0].ec["output"] == ", ".join(
        map(str, items[0].dev["output_field"])
    )
    dev = MixSource(name="dev", kind="shopbench", path=str(DATA / "shopbench_examples.jsonl"))
    items = load_source(dev, root=REPO, synthetic=None, catalogue=CAT)
    assert items[0].ec["instruction"] == CAT.get(items[0].task).instruction
    with pytest.raises(MixError, match="needs `path`"):
        load_source(
            MixSource(name="x", kind="ecinstruct"), root=REPO, synthetic=None, catalogue=CAT
        )
    with pytest.raises(MixError, match="no synthesize stage"):
        load_source(_src(), root=REPO, synthetic=None, catalogue=CAT)


def test_synthesize_and_mix_stages_write_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.core.executor import execute
    from harness.core.plan import build_plan
    from harness.errors import StageError
    from harness.spec import load_spec

    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(tmp_path / "runs"))
    overrides = ["stages=[synthesize,mix]", "tracking.mode=disabled"]
    summary = execute(build_plan(load_spec(TINY, overrides), REPO))
    synth, mix = summary.dir_of("synthesize"), summary.dir_of("mix")
    stats = json.loads((synth / "stats.json").read_text(encoding="utf-8"))
    assert stats["generator"] == "template" and stats["examples"] > 600
    assert set(stats["rejected_per_reason"]) <= {"duplicate"}
    train = [json.loads(x) for x in (mix / "train.jsonl").read_text("utf-8").splitlines()]
    held = [json.loads(x) for x in (mix / "heldout.jsonl").read_text("utf-8").splitlines()]
    assert all(tuple(r) == EC_KEYS for r in train + held)
    assert {r["task_type"] for r in train} == {
        "multiple-choice", "retrieval", "ranking", "named_entity_recognition", "generation"
    }  # fmt: skip
    assert len(load_shopbench(mix / "heldout_shopbench.jsonl")) == len(held)
    mix_stats = json.loads((mix / "stats.json").read_text(encoding="utf-8"))
    assert mix_stats["contamination_checked"] and mix_stats["contaminated"] == 0
    assert mix_stats["tasks"]["task5"]["answer_position_max_share"] < 0.35
    result = summary.outcomes[1].result
    assert result.metrics["train"] == len(train) and result.tables["task_stats"]
    # The same spec again is fully cached; a training prompt as evaluation data is refused.
    again = execute(build_plan(load_spec(TINY, overrides), REPO))
    assert [o.cached for o in again.outcomes] == [True, True]
    leak = tmp_path / "leak.jsonl"
    examples = [json.loads(x) for x in (synth / "examples.jsonl").read_text("utf-8").splitlines()]
    example = next(e for e in examples if e["input_field"] == train[0]["input"])
    example.pop("meta")
    leak.write_text(json.dumps(example) + "\n", encoding="utf-8")
    with pytest.raises(StageError, match="contain an evaluation prompt"):
        execute(build_plan(load_spec(TINY, [*overrides, f"eval.data={leak}"]), REPO))
