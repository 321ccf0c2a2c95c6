"""Fine-tuning data: ECInstruct parsing, ShopBench-style user turns, answer-only labels, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.shopbench.prompt_info import numbered_items
from harness.training.data import (
    IGNORE_INDEX,
    EcRecord,
    FinetuneDataError,
    build_examples,
    build_messages,
    check_special_tokens,
    format_user_turn,
    load_ecinstruct,
    parse_record,
    tokenize_record,
)
from tests.support import paths
from tests.support.infer import SYSTEM

DATA = paths.DATA / "finetune"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny model's tokenizer (ChatML template, eos <|im_end|>, pad <|endoftext|>)."""
    from transformers import AutoTokenizer

    from harness.tiny_model import corpus_files, train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(corpus_files([DATA / "corpus.txt"]), 512, out)
    return AutoTokenizer.from_pretrained(str(out))


def _record(**kw: Any) -> EcRecord:
    base: dict[str, Any] = {
        "instruction": "Which category does the product belong to?",
        "input": "Product: red yoga mat",
        "options": ("kitchen", "sports", "garden"),
        "output": "1",
        "task": "category_mc",
        "task_type": "multiple-choice",
        "where": "x.jsonl:1",
    }
    base.update(kw)
    return EcRecord(**base)


def test_multiple_choice_turn_looks_like_a_shopbench_prompt() -> None:
    text = format_user_turn(
        "Which category does the product belong to?",
        "Product: red yoga mat",
        ["kitchen", "sports", "garden"],
        "multiple-choice",
    )
    assert text == (
        "Which category does the product belong to?\nProduct: red yoga mat\n"
        "0. kitchen\n1. sports\n2. garden\nAnswer: "
    )
    # The evaluation core reads the same options back from it.
    assert numbered_items(text) == {0: "kitchen", 1: "sports", 2: "garden"}


def test_other_turns_number_from_one_and_end_with_output() -> None:
    text = format_user_turn("Pick the best two.", "", ["a mat", "a pan", "a pot"], "retrieval")
    assert text == "Pick the best two.\n1. a mat\n2. a pan\n3. a pot\nOutput: "
    plain = format_user_turn("Extract the color.", "Title: red pan", [], "named_entity_recognition")
    assert plain == "Extract the color.\nTitle: red pan\nOutput: "


def test_letter_labels_are_renumbered_and_existing_trailers_kept() -> None:
    text = format_user_turn("Choose.", "", ["A: red", "(B) blue"], "multiple-choice")
    assert text == "Choose.\n0. red\n1. blue\nAnswer: "
    ends = "Choose the colour.\nAnswer:"
    assert format_user_turn(ends, "", [], "generation") == ends


def test_a_shopbench_prompt_in_the_input_is_the_user_turn_verbatim(dev_fixture: Path) -> None:
    from harness.data.ecinstruct import dev_to_ec

    rows = [json.loads(line) for line in dev_fixture.read_text().splitlines()]
    for row in rows:
        item = dev_to_ec(row)
        rec = parse_record(item, "dev")
        # What the infer stage sends (plain variant) is what training conditions on.
        assert (
            format_user_turn(rec.instruction, rec.input, rec.options, rec.task_type)
            == (row["input_field"])
        )


def test_imported_ecinstruct_items_match_their_heldout_prompts() -> None:
    from harness.data.ecinstruct import ec_to_dev

    items = [
        {
            "instruction": "Which option describes the product?",
            "input": "Product: red yoga mat",
            "options": ["A: kitchen tool", "B: sports gear", "C: garden hose"],
            "output": "B",
            "task": "ecinstruct/PRP",
            "task_type": "multiple-choice",
        },
        {
            "instruction": "Write a short title.",
            "input": "A red yoga mat, 6 mm thick.",
            "options": [],
            "output": "Red yoga mat",
            "task": "ecinstruct/title",
            "task_type": "generation",
        },
    ]
    for item in items:
        dev = ec_to_dev(item)
        assert dev is not None
        rec = parse_record(item, "ec")
        assert (
            format_user_turn(rec.instruction, rec.input, rec.options, rec.task_type)
            == (dev["input_field"])
        )


def test_messages_have_system_user_and_answer_turns() -> None:
    msgs = build_messages(_record(), SYSTEM)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[0]["content"] == SYSTEM
    assert msgs[2]["content"] == "1"
    assert [m["role"] for m in build_messages(_record(), None)] == ["user", "assistant"]


def test_loss_is_on_the_answer_and_end_of_turn_only(tokenizer: Any) -> None:
    ex = tokenize_record(_record(output="sports"), tokenizer, SYSTEM)
    assert len(ex.input_ids) == len(ex.labels)
    first = next(i for i, t in enumerate(ex.labels) if t != IGNORE_INDEX)
    # Everything before the answer is masked, everything from it on is trained.
    assert all(t == IGNORE_INDEX for t in ex.labels[:first])
    assert ex.labels[first:] == ex.input_ids[first:]
    assert tokenizer.decode(ex.labels[first:]) == "sports<|im_end|>\n"
    # The masked prefix is exactly what the model sees at inference.
    prompt = tokenizer.apply_chat_template(
        build_messages(_record(output="sports"), SYSTEM)[:-1],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert tokenizer.decode(ex.input_ids[:first]) == prompt
    assert tokenizer.eos_token_id in ex.labels


def test_fixture_mix_loads_and_tokenizes(tokenizer: Any) -> None:
    records = load_ecinstruct(DATA / "mix" / "train.jsonl")
    assert len(records) == 96
    assert records[0].where.endswith("train.jsonl:1")
    examples = build_examples(records, tokenizer, SYSTEM, 256)
    assert all(e.answer_tokens >= 2 for e in examples)


def test_empty_dataset_is_an_error() -> None:
    with pytest.raises(FinetuneDataError, match=r"empty/train\.jsonl: no training records"):
        load_ecinstruct(DATA / "bad" / "empty" / "train.jsonl")


def test_missing_output_names_the_record() -> None:
    with pytest.raises(
        FinetuneDataError, match=r"missing_output/train\.jsonl:2: record has no `output`"
    ):
        load_ecinstruct(DATA / "bad" / "missing_output" / "train.jsonl")


def test_too_long_record_names_the_record(tokenizer: Any) -> None:
    records = load_ecinstruct(DATA / "bad" / "too_long" / "train.jsonl")
    with pytest.raises(
        FinetuneDataError, match=r"too_long/train\.jsonl:3: record is \d+ tokens, longer than"
    ):
        build_examples(records, tokenizer, SYSTEM, 256)
    # A limit that fits every record is accepted.
    longest = max(len(tokenize_record(r, tokenizer, SYSTEM).input_ids) for r in records)
    assert len(build_examples(records, tokenizer, SYSTEM, longest)) == 3


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"instruction": "x", "output": "y"}, "record has no `task_type`"),
        ({"instruction": "x", "output": "", "task_type": "generation"}, "field `output` is empty"),
        ({"instruction": "x", "output": 3, "task_type": "generation"}, "`output` must be a string"),
        ({"instruction": "x", "output": "y", "task_type": "chat"}, "unknown task_type 'chat'"),
        (
            {"instruction": "x", "output": "y", "task_type": "generation", "options": "a"},
            "`options` must be a list of strings",
        ),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path: Path, row: Any, message: str) -> None:
    good = {"instruction": "x", "input": "", "options": [], "output": "y", "task": "t"}
    path = tmp_path / "train.jsonl"
    path.write_text(
        json.dumps({**good, "task_type": "generation"}) + "\n\n" + json.dumps(row) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(FinetuneDataError, match=rf"train\.jsonl:3: .*{message}"):
        load_ecinstruct(path)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"instruction": "x",\n', encoding="utf-8")
    with pytest.raises(FinetuneDataError, match=r"train\.jsonl:1: invalid JSON"):
        load_ecinstruct(path)


def test_optional_fields_default_to_empty(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    row = {"instruction": "x", "output": "y", "task_type": "generation", "options": ""}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (rec,) = load_ecinstruct(path)
    assert (rec.input, rec.options, rec.task) == ("", (), "generation")


def test_pad_token_must_differ_from_eos(tokenizer: Any) -> None:
    check_special_tokens(tokenizer)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    same = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    same.pad_token = same.eos_token
    with pytest.raises(HarnessError, match="never learn to stop"):
        build_examples([_record()], same, SYSTEM, 256)
