"""Run several engine configurations on the same prompts, one engine at a time.

``python -m harness.inference.compare CONFIG.json OUT.json`` — used to check that engines
agree (vLLM TP 1 vs TP 2, vLLM vs transformers), to measure parse rates with and without
constraints, and to benchmark engines against each other. Engines start one after the other
(each is closed before the next starts) in this process, which has the ``__main__`` guard
vLLM's spawned workers need.

CONFIG::

    {"model_dir": "...", "data": "rows.jsonl", "rows": 256,      # rows: cycle/cut the data
     "prompts": {...PromptsConfig}, "decoding": {...DecodingConfig},
     "runs": [{"name": "vllm_tp1", "infer": {...InferConfig},
               "passes": [{"name": "free", "constrained": false,
                           "decoding": {...DecodingConfig, optional}},
                          {"name": "forced", "score": "vllm_tp1/free"}, ...]}]}

A pass's decoding may edit logits (``logit_bias``, ``allowed_tokens``, ...): the token texts
are resolved with the model's tokenizer as the infer stage does. A ``score`` pass generates
nothing: the engine scores, teacher-forced, each row's prompt
followed by the output tokens of the named earlier pass (``run/pass``), so that engines are
compared on the very same tokens (see :mod:`harness.inference.agreement`).

OUT: ``{"runs": {name: {"start_s", "passes": {pass: {"texts", "token_ids",
"finish_reasons", "metrics", "parse_rate_official"} | {"sequences", "logprobs"}}}}}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from harness.atomic import write_json
from harness.spec.schema import DecodingConfig, InferConfig, PromptsConfig


def compare(config: dict[str, Any], root: Path) -> dict[str, Any]:
    """Run every configured engine and pass.

    Args:
        config: See the module docstring.
        root: Project root (prompt variants).

    Returns:
        The results (see the module docstring).
    """
    from transformers import AutoTokenizer

    from harness.inference.decoding import eos_token_ids, resolve_token_edits
    from harness.inference.engines.base import EngineSpec, make_engine
    from harness.inference.prompts import load_prompt_set
    from harness.inference.runner import (
        PromptBuilder,
        build_requests,
        generate_all,
        to_rows,
    )
    from harness.shopbench.data import load_shopbench
    from harness.shopbench.parsers import parse_rates

    records = load_shopbench(config["data"])
    n = int(config.get("rows", len(records)))
    records = [records[i % len(records)] for i in range(n)]
    rows = to_rows(records)
    prompts = PromptsConfig.model_validate(config.get("prompts", {}))
    decoding = DecodingConfig.model_validate(config.get("decoding", {}))
    model_dir = str(config["model_dir"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    eos = eos_token_ids(tokenizer, Path(model_dir))
    builder = PromptBuilder(prompts, load_prompt_set(prompts.variant, root), tokenizer)
    out: dict[str, Any] = {"rows": n, "task_types": [r.task_type for r in rows], "runs": {}}
    for run in config["runs"]:
        infer = InferConfig.model_validate(run["infer"])
        t0 = time.perf_counter()
        engine = make_engine(EngineSpec(infer, model_dir, chat=prompts.chat_template))
        entry: dict[str, Any] = {"start_s": time.perf_counter() - t0, "passes": {}}
        try:
            for p in run.get("passes", [{"name": "default", "constrained": infer.constrained}]):
                if "score" in p:
                    ref_run, ref_pass = p["score"].split("/")
                    done = out["runs"].get(ref_run, entry)["passes"][ref_pass]
                    requests, _ = build_requests(
                        rows, builder, decoding, constrained=False, seed=infer.seed
                    )
                    seqs = [
                        [*r.token_ids, *t]
                        for r, t in zip(requests, done["token_ids"], strict=True)
                        if r.token_ids is not None
                    ]
                    entry["passes"][p["name"]] = {"sequences": seqs, "logprobs": engine.score(seqs)}
                    continue
                dec = DecodingConfig.model_validate(p["decoding"]) if "decoding" in p else decoding
                requests, _ = build_requests(
                    rows,
                    builder,
                    dec,
                    constrained=bool(p["constrained"]),
                    seed=infer.seed,
                    edits=resolve_token_edits(dec, tokenizer, eos),
                )
                results, stats = generate_all(requests, engine)
                entry["passes"][p["name"]] = {
                    "texts": [r.text for r in results],
                    "token_ids": [list(r.token_ids) for r in results],
                    "finish_reasons": [r.finish_reason for r in results],
                    "metrics": stats.metrics(),
                    "parse_rate_official": parse_rates(
                        [r.task_type for r in rows], [r.text for r in results], "official"
                    ),
                }
        finally:
            engine.close()
        out["runs"][run["name"]] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry: ``CONFIG.json OUT.json`` (OUT written atomically)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m harness.inference.compare CONFIG.json OUT.json", file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = compare(config, Path(config.get("root", Path.cwd())))
    write_json(Path(argv[1]), result, indent=None, sort_keys=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
