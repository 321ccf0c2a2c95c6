"""The template generator and the evaluation set built from held-out records."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from harness.data.catalogue import load_catalogue
from harness.data.clean import clean, normalize_prompt
from harness.data.errors import SourceError
from harness.data.make_eval import DEV_KEYS, EVAL_METRICS, make_eval
from harness.data.sources import load_sources
from harness.data.template import TEMPLATE_TASKS, World, generate_template
from harness.shopbench.data import load_shopbench
from harness.shopbench.prompt_info import mc_option_texts, numbered_items
from harness.shopbench.router import route
from harness.shopbench.types import TASK_TYPES
from tests.support.paths import REPO

DATA = REPO / "experiments" / "data"
CAT = load_catalogue(REPO / "experiments" / "prompts" / "synth")


@pytest.fixture(scope="module")
def sources():  # type: ignore[no-untyped-def]
    return load_sources(DATA / "products.jsonl", DATA / "categories.csv", DATA / "reviews.jsonl")


@pytest.fixture(scope="module")
def rows(sources) -> list[dict]:  # type: ignore[no-untyped-def]
    return generate_template(sources, CAT, None, 40, 2, seed=0)


def test_deterministic_per_seed(sources, rows) -> None:  # type: ignore[no-untyped-def]
    assert generate_template(sources, CAT, None, 40, 2, seed=0) == rows
    other = generate_template(sources, CAT, None, 40, 2, seed=1)
    assert other != rows and len(other) > 0.8 * len(rows)


def test_every_task_type_is_built_and_every_row_is_clean(rows) -> None:  # type: ignore[no-untyped-def]
    assert {r["task_type"] for r in rows} == set(TASK_TYPES)
    assert {r["task_name"] for r in rows} == set(TEMPLATE_TASKS)
    res = clean(rows)
    assert set(res.reasons) <= {"duplicate"}, res.reasons
    assert len(res.kept) > 0.97 * len(rows)
    for r in rows:
        assert route(r["input_field"]) == r["task_type"], r["input_field"]


def test_counts_follow_products_per_task_and_examples_per_product(sources) -> None:  # type: ignore[no-untyped-def]
    rows = generate_template(sources, CAT, ["task5", "task12"], 7, 2, seed=3)
    per_task = Counter(r["task_name"] for r in rows)
    assert per_task == {"task5": 14, "task12": 14}
    anchors = Counter(r["meta"]["source_ids"][0] for r in rows if r["task_name"] == "task5")
    assert len(anchors) == 7 and set(anchors.values()) == {2}


def test_multiple_choice_answer_positions_are_balanced(rows) -> None:  # type: ignore[no-untyped-def]
    for task in ("task2", "task5", "task16", "task18"):
        pos = Counter(r["output_field"] for r in rows if r["task_name"] == task)
        assert set(pos) == {0, 1, 2, 3}
        assert max(pos.values()) - min(pos.values()) <= 1, (task, pos)


def test_answers_are_grounded_in_the_records(sources, rows) -> None:  # type: ignore[no-untyped-def]
    w = World(sources)
    for r in rows:
        prompt, out = r["input_field"], r["output_field"]
        if r["task_name"] == "task5":
            title = re.search(r"The product '(.*)' appears", prompt).group(1)  # type: ignore[union-attr]
            assert mc_option_texts(prompt)[out].lower() in title.lower()
        elif r["task_name"] == "task4":
            query = prompt.split("Query: ")[1].split("\n")[0]
            assert all(e in query for e in out)
        elif r["task_name"] == "task6":
            assert out in prompt.split("Review: ")[1]
        elif r["task_name"] == "task12":
            items = numbered_items(prompt)
            query = re.search(r"keyword '(.*?)'", prompt).group(1)  # type: ignore[union-attr]
            best = items[out.index(1) + 1].lower()
            assert query.split()[0] in best
        elif r["task_name"] == "task17":
            ids = r["meta"]["source_ids"]
            src, tgt = sources.product(ids[0]), sources.product(ids[1])
            assert out == tgt.title and w.family_key(src) == w.family_key(tgt)
        elif r["task_name"] == "task18":
            model = sources.product(r["meta"]["source_ids"][0]).model
            assert model in mc_option_texts(prompt)[out]
            assert sum(model in t for t in mc_option_texts(prompt).values()) == 1


def test_unknown_task_and_missing_sources_are_errors(sources) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SourceError, match="cannot build 'task8'"):
        generate_template(sources, CAT, ["task8"], 5, 1, 0)
    no_cats = load_sources(DATA / "products.jsonl")
    with pytest.raises(SourceError, match=r"task task4 needs `data\.sources\.categories`"):
        generate_template(no_cats, CAT, ["task4"], 5, 1, 0)
    no_reviews = load_sources(DATA / "products.jsonl", DATA / "categories.csv")
    with pytest.raises(SourceError, match=r"task task6 needs `data\.sources\.reviews`"):
        generate_template(no_reviews, CAT, ["task6"], 5, 1, 0)


def test_eval_tiny_is_reproducible_valid_and_in_the_required_shape() -> None:
    path = DATA / "eval_tiny.jsonl"
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    regenerated = make_eval(
        DATA / "heldout" / "products.jsonl",
        DATA / "categories.csv",
        DATA / "heldout" / "reviews.jsonl",
    )
    assert regenerated == rows, "eval_tiny.jsonl is stale: run python -m harness.data.make_eval"
    assert 60 <= len(rows) <= 100 and len(load_shopbench(path)) == len(rows)
    assert all(tuple(r) == DEV_KEYS for r in rows)
    assert {r["task_type"] for r in rows} == set(TASK_TYPES)
    assert {r["metric"] for r in rows} <= set(EVAL_METRICS)
    assert "amazon-kdd-cup-24-multi-lingual-abilities" in {r["track"] for r in rows}
    for r in rows:
        want = "Answer: " if r["is_multiple_choice"] else "Output:"
        assert r["input_field"].endswith(want) or r["input_field"].rstrip().endswith(want.strip())
        assert route(r["input_field"], r["is_multiple_choice"]) == r["task_type"]


def test_eval_prompts_never_appear_in_training_data(sources) -> None:  # type: ignore[no-untyped-def]
    evals = [json.loads(x) for x in (DATA / "eval_tiny.jsonl").read_text("utf-8").splitlines()]
    every = generate_template(sources, CAT, None, 10**6, 4, seed=0)
    train_prompts = {normalize_prompt(r["input_field"]) for r in every}
    assert not [e for e in evals if normalize_prompt(e["input_field"]) in train_prompts]
    train_brands = {p.brand.lower() for p in sources.products if p.brand}
    for e in evals:
        text = e["input_field"].lower()
        assert not [b for b in train_brands if b in text], e["input_field"]


@pytest.mark.slow
def test_training_examples_fit_the_tiny_models_sequence_length(tmp_path: Path, sources) -> None:  # type: ignore[no-untyped-def]
    """Every example the CPU default trains on, as a chat with its system prompt, fits
    ``finetune.max_seq_length`` in the tiny model's tokenizer."""
    from transformers import AutoTokenizer

    from harness.data.ecinstruct import dev_to_ec
    from harness.spec import load_spec
    from harness.tiny_model import corpus_files, train_tokenizer

    spec = load_spec(REPO / "experiments" / "tiny_cpu.yaml").spec
    assert spec.model.tiny is not None and spec.finetune is not None
    assert spec.data.synthesis is not None
    files = corpus_files([REPO / p for p in spec.model.tiny.corpus])
    train_tokenizer(files, spec.model.tiny.vocab_size, tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    syn = spec.data.synthesis
    rows = clean(
        generate_template(
            sources, CAT, syn.tasks, syn.products_per_task, syn.examples_per_product, syn.seed
        )
    ).kept
    longest = 0
    for r in rows:
        ec = dev_to_ec(r, CAT.get(r["task_name"]).instruction)
        messages = [
            {"role": "system", "content": spec.prompts.system or ""},
            {"role": "user", "content": f"{ec['instruction']}\n\n{ec['input']}"},
            {"role": "assistant", "content": ec["output"]},
        ]
        ids = tok.apply_chat_template(messages, tokenize=True)
        n = len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        longest = max(longest, n)
    assert longest <= spec.finetune.max_seq_length, longest


def test_template_tasks_are_a_registry_with_suggestions() -> None:
    from harness.data.errors import SourceError

    assert "task1" in TEMPLATE_TASKS and TEMPLATE_TASKS["task5"].anchor == "products"
    with pytest.raises(SourceError, match=r"unknown template task `task01` \(did you mean"):
        TEMPLATE_TASKS.get("task01")
