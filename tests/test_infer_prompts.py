"""Prompt sets (the variant registry), the non-MC suffix and the prompt builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.inference.prompts import (
    PromptSet,
    apply_non_mc_suffix,
    list_variants,
    load_prompt_set,
    validate_prompt_set,
)
from harness.inference.runner import PromptBuilder, build_requests, group_by_task, to_rows
from harness.shopbench.data import load_shopbench
from harness.shopbench.types import TASK_TYPES
from harness.spec.schema import DecodingConfig, PromptsConfig
from tests.support.infer import SUFFIX, SYSTEM
from tests.support.paths import EVAL, EVAL_TEST_FORMAT, REPO


def test_shipped_variants_are_valid_and_registered() -> None:
    names = list_variants(REPO)
    assert {"plain", "taskwise"} <= set(names)
    for name in names:
        validate_prompt_set(REPO / "experiments" / "prompts" / f"{name}.yaml")
    taskwise = load_prompt_set("taskwise", REPO)
    assert set(taskwise.templates) == set(TASK_TYPES)
    plain = load_prompt_set("plain", REPO)
    assert plain.render("Q?\nAnswer: ", "multiple-choice") == "Q?\nAnswer: "


def test_unknown_variant_lists_the_known_ones() -> None:
    with pytest.raises(HarnessError, match=r"no prompt set 'nope'.*known: .*plain"):
        load_prompt_set("nope", REPO)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: bad\ntemplates:\n  default: 'no placeholder'\n",
            r"bad\.yaml:3: `templates.default`",
        ),
        ("name: bad\ntemplates:\n  mcq: '{input}'\n", r"bad\.yaml:3: `templates.mcq`: unknown"),
        ("name: other\ntemplates:\n  default: '{input}'\n", r"bad\.yaml:1: `name`"),
        ("name: bad\ntemplates:\n  ranking: '{input}'\n", r"no `default` template"),
        ("name: bad\ntemplates: {default: '{input}'}\nextra: 1\n", r"bad\.yaml:3: `extra`"),
        ("name: bad\ntemplates:\n  default: '{input} {input}'\n", r"exactly once \(found 2\)"),
        ("name: bad\ntemplates: [\n", r"bad\.yaml:\d+: invalid YAML"),
        (
            "name: bad\ntemplates: {default: '{input}'}\ntasks:\n  task1: 3\n",
            r"bad\.yaml:4: `tasks.task1`: a template must be a string",
        ),
    ],
)
def test_malformed_prompt_sets_name_file_line_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HarnessError, match=message):
        validate_prompt_set(path)


def test_task_name_template_overrides_task_type() -> None:
    ps = PromptSet(
        "x", "", {"default": "D {input}", "ranking": "R {input}"}, {"task12": "T {input}"}
    )
    assert ps.render("p", "ranking", "task12") == "T p"
    assert ps.render("p", "ranking", "task1") == "R p"
    assert ps.render("p", "generation") == "D p"
    # Plain substitution: braces in prompts are not format fields.
    assert ps.render("{a} {0}", "generation") == "D {a} {0}"


def test_suffix_replaces_only_a_trailing_output_line() -> None:
    cases = {
        "Input: Handbag\nOutput:": "Input: Handbag\n" + SUFFIX,
        "Query: x\nOutput: ": "Query: x\n" + SUFFIX,
        "Aspect: comfort\nOutput: \n": "Aspect: comfort\n" + SUFFIX,
        "list\nOutput (answer in three comma-separated numbers): ": None,
        "Output: shown mid-prompt\nthen more": None,
        "Review text.\nOutput:\nAnswer: ": None,
    }
    for prompt, want in cases.items():
        got, changed = apply_non_mc_suffix(prompt, "generation", SUFFIX)
        assert changed == (want is not None), prompt
        assert got == (want if want is not None else prompt)
    assert apply_non_mc_suffix("Q\nOutput:", "multiple-choice", SUFFIX) == ("Q\nOutput:", False)
    assert apply_non_mc_suffix("Q\nOutput:", "generation", None) == ("Q\nOutput:", False)


def test_suffix_on_the_shopbench_dev_set(dev_fixture: Path) -> None:
    records = load_shopbench(dev_fixture)
    changed = {}
    for r in records:
        assert r.task_type is not None
        new, did = apply_non_mc_suffix(r.input_field, r.task_type, SUFFIX)
        if r.task_type == "multiple-choice":
            assert not did and new == r.input_field
            continue
        changed.setdefault(r.task_name, set()).add(did)
        if did:
            assert new.endswith("\n" + SUFFIX)
            # Everything before the `Output:` line is kept verbatim.
            head = r.input_field[: r.input_field.rstrip().rfind("Output:")]
            assert new == head + SUFFIX
    # Every non-MC task but task13 (whose prompt ends "Output (answer in three ...): ") ends
    # with a bare `Output:` line.
    assert changed.pop("task13") == {False}
    assert changed and all(v == {True} for v in changed.values()), changed


def test_builder_routes_templates_and_applies_the_chat_template(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    dev = load_shopbench(EVAL)
    rows = to_rows(load_shopbench(EVAL_TEST_FORMAT))
    assert all(r.routed for r in rows)
    assert [r.task_type for r in rows] == [r.task_type for r in dev]
    prompts = PromptsConfig(system=SYSTEM, variant="taskwise", non_mc_suffix=SUFFIX)
    builder = PromptBuilder(prompts, load_prompt_set("taskwise", REPO), tok)
    decoding = DecodingConfig()
    requests, built = build_requests(rows, builder, decoding, constrained=True, seed=7)
    for row, req, b in zip(rows, requests, built, strict=True):
        assert req.index == row.index
        assert req.seed == 7 + row.index
        assert req.params == decoding.for_task(row.task_type)
        assert b.text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
        assert b.text.endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert b.token_ids == tuple(tok(b.text, add_special_tokens=False)["input_ids"])
        assert b.messages[1]["content"].startswith(
            load_prompt_set("taskwise", REPO).templates[row.task_type].split("{input}")[0]
        )
        assert (req.constraint is not None) == (
            row.task_type in ("multiple-choice", "ranking", "retrieval")
        )
        assert b.suffixed == (row.task_type != "multiple-choice")
    groups = group_by_task(requests)
    assert [g[0].task_type for g in groups] == [
        t for t in TASK_TYPES if any(r.task_type == t for r in rows)
    ]
    assert all(len({r.task_type for r in g}) == 1 for g in groups)
    assert all([r.index for r in g] == sorted(r.index for r in g) for g in groups)
    # Without the chat template the raw prompt (after the system line) is sent.
    raw = PromptBuilder(
        PromptsConfig(system=None, variant="plain", chat_template=False),
        load_prompt_set("plain", REPO),
        tok,
    ).build(rows[0])
    assert raw.text == rows[0].prompt


def test_max_model_len_overflow_names_the_row(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    rows = to_rows(load_shopbench(EVAL))
    builder = PromptBuilder(
        PromptsConfig(), load_prompt_set("plain", REPO), AutoTokenizer.from_pretrained(tiny_model)
    )
    with pytest.raises(HarnessError, match=r"eval row 0: \d+ prompt tokens \+ max_tokens"):
        build_requests(rows, builder, DecodingConfig(), constrained=False, seed=0, max_model_len=32)
