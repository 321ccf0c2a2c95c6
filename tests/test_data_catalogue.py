"""The synthesis task catalogue, request building and reply parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data.catalogue import (
    MalformedContent,
    build_messages,
    load_catalogue,
    parse_reply,
)
from harness.data.errors import CatalogueError
from harness.data.sources import load_sources
from harness.data.synthesize import load_few_shot, plan_requests
from harness.shopbench.types import METRIC_TASK_TYPE
from harness.spec.schema import SynthesisConfig
from tests.support.paths import REPO

DATA = REPO / "experiments" / "data"
CAT = REPO / "experiments" / "prompts" / "synth"
PAPER_TASKS = {f"task{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 11)}


def test_catalogue_has_the_papers_tasks_with_consistent_facts() -> None:
    cat = load_catalogue(CAT)
    assert set(cat.tasks) >= PAPER_TASKS
    for t in cat.tasks.values():
        assert METRIC_TASK_TYPE[t.metric] == t.task_type
        assert t.instruction.endswith(".") and "\n" not in t.instruction
    assert [t.name for t in cat.select(None)][:3] == ["task1", "task2", "task3"]
    with pytest.raises(CatalogueError, match=r"unknown task 'task99'.*known: task1, task2"):
        cat.get("task99")


def test_few_shot_file_covers_every_catalogue_task() -> None:
    shots = load_few_shot(DATA / "shopbench_examples.jsonl")
    assert set(load_catalogue(CAT).tasks) <= set(shots)


def test_requests_fill_examples_and_a_batch_of_records() -> None:
    cat = load_catalogue(CAT)
    sources = load_sources(DATA / "products.jsonl", DATA / "categories.csv", DATA / "reviews.jsonl")
    cfg = SynthesisConfig(
        generator="openai", tasks=["task5", "task7"], products_per_task=10, examples_per_product=3
    )
    reqs = plan_requests(sources, cat, cfg, load_few_shot(DATA / "shopbench_examples.jsonl"))
    per_task = {t: [r for r in reqs if r.task.name == t] for t in ("task5", "task7")}
    assert [len(r.records) for r in per_task["task5"]] == [4, 4, 2]
    user = per_task["task5"][0].messages[1]["content"]
    assert "{{" not in user and "write 3 new examples (12 in all)" in user
    assert "Tessaro Lunch Box" in user  # a few-shot example of task5
    for rec in per_task["task5"][0].records:
        assert json.dumps(rec, ensure_ascii=False, sort_keys=True) in user
    review_rec = per_task["task7"][0].records[0]
    assert {"id", "text", "rating", "product_type", "locale"} <= set(review_rec)
    assert per_task["task5"][0].messages[0]["role"] == "system"
    again = plan_requests(sources, cat, cfg, load_few_shot(DATA / "shopbench_examples.jsonl"))
    assert [r.messages for r in again] == [r.messages for r in reqs]


def test_requests_need_few_shot_examples_of_the_task() -> None:
    from harness.data.errors import SourceError

    cat = load_catalogue(CAT)
    sources = load_sources(DATA / "products.jsonl", DATA / "categories.csv")
    cfg = SynthesisConfig(generator="openai", tasks=["task5"])
    with pytest.raises(SourceError, match="task task5: no few-shot example"):
        plan_requests(sources, cat, cfg, {})


def test_build_messages_uses_the_system_message(tmp_path: Path) -> None:
    cat = load_catalogue(CAT)
    msgs = build_messages(
        cat, cat.get("task4"), [{"input_field": "q", "output_field": ["a"]}], [{"id": "x"}], 2
    )
    assert msgs[0]["content"] == cat.system
    assert '{"input_field": "q", "output_field": ["a"]}' in msgs[1]["content"]


@pytest.mark.parametrize(
    ("content", "n"),
    [
        ('[{"id": "a", "input_field": "x", "output_field": 1}]', 1),
        ('Sure!\n```json\n[{"id": "a"}, {"id": "b"}]\n```\nDone.', 2),
        ('Here: [{"id": "a"}] hope it helps', 1),
    ],
)
def test_replies_with_a_json_array_parse(content: str, n: int) -> None:
    assert len(parse_reply(content)) == n


@pytest.mark.parametrize(
    "content",
    ["", "I cannot help with that.", "[1, 2, 3]", "[]", '[{"id": "a",]', '{"id": "a"}'],
)
def test_malformed_replies_raise(content: str) -> None:
    with pytest.raises(MalformedContent):
        parse_reply(content)


def _write_task(d: Path, name: str, front: str, body: str = "{{examples}}\n{{records}}") -> None:
    (d / f"{name}.md").write_text(f"---\n{front}\n---\n{body}\n", encoding="utf-8")


GOOD = (
    "task: task5\ntask_type: multiple-choice\nmetric: accuracy\n"
    "track: amazon-kdd-cup-24-understanding-shopping-concepts\nsource: products\n"
    "instruction: Answer it."
)


@pytest.mark.parametrize(
    ("front", "body", "message"),
    [
        (GOOD.replace("metric: accuracy", "metric: ndcg"), None, "does not score"),
        (GOOD.replace("source: products", "source: stores"), None, "`source` must be one of"),
        (GOOD.replace("task: task5", "task: task6"), None, "does not match the file name"),
        (GOOD + "\nbatch: 0", None, "`batch` must be a positive integer"),
        (GOOD + "\ncolour: red", None, "unknown front matter key `colour`"),
        (GOOD, "{{examples}} {{records}} {{shots}}", r"unknown placeholder \{\{shots\}\}"),
        (GOOD, "{{examples}} only", r"lacks the \{\{records\}\} placeholder"),
    ],
)
def test_malformed_catalogue_files_are_named(
    tmp_path: Path, front: str, body: str | None, message: str
) -> None:
    (tmp_path / "_system.md").write_text("sys", encoding="utf-8")
    _write_task(tmp_path, "task5", front, body or "{{examples}}\n{{records}}")
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(tmp_path)


def test_catalogue_needs_its_directory_and_system_message(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="directory not found"):
        load_catalogue(tmp_path / "nope")
    _write_task(tmp_path, "task5", GOOD)
    with pytest.raises(CatalogueError, match="missing system message"):
        load_catalogue(tmp_path)
    (tmp_path / "task5.md").write_text("no front matter", encoding="utf-8")
    (tmp_path / "_system.md").write_text("sys", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"task5\.md: expected a `---` YAML front matter"):
        load_catalogue(tmp_path)
