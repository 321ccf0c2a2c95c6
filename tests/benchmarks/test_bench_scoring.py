"""Benchmark: scoring 20,000 ShopBench rows with the real metric mix, embeddings batched per
task (the harness) against one embedding call per text (the official kit), in one run.

Rows are sampled with replacement from the 96-row dev set (so the metric mix is the dev
set's: accuracy, hit rate@3, micro F1, NDCG, ROUGE-L, BLEU, jp-BLEU and all-MiniLM
embeddings) with perturbed predictions (right and wrong answers, varied formats, edited
generations so most generated texts are distinct). The model is loaded before either timing.
torch runs with ``BENCH_TORCH_THREADS`` threads (default 1) in both runs: on a shared 2-core
machine, two OpenMP threads per single-text call wait on each other far longer than they
compute.
Asserts that both runs give the same scores (task by task, to 1e-6, and row by row) and
writes ``bench-results/scoring.json`` with both timings and their ratio, for the whole
evaluation and for the embedding metric alone.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from pathlib import Path

import pytest

from harness.atomic import write_json
from harness.shopbench import metrics
from harness.shopbench.data import load_shopbench
from harness.shopbench.errors import SentenceModelNotFoundError
from harness.shopbench.evaluate import evaluate
from harness.shopbench.prompt_info import mc_options
from harness.shopbench.types import Record
from tests.support.paths import REPO

THREADS = int(os.environ.get("BENCH_TORCH_THREADS", "1"))
RESULTS = REPO / "bench-results" / "scoring.json"
ROWS = 20_000
SEED = 20240


def _prediction(rng: random.Random, r: Record) -> str:
    o = r.output_field
    if r.task_type == "multiple-choice":
        answer = o if rng.random() < 0.6 else rng.choice(mc_options(r.input_field) or [0])
        return rng.choice([f"{answer}", f"Answer: {answer}", f"{answer}. because", ""])
    if r.task_type == "ranking":
        order = list(range(1, len(o) + 1))
        rng.shuffle(order)
        return rng.choice([", ".join(map(str, order)), " > ".join(map(str, order))])
    if r.task_type == "retrieval":
        picks = rng.sample(range(1, 16), 3) if rng.random() < 0.5 else list(o)
        return ", ".join(map(str, picks))
    if r.task_type == "named_entity_recognition":
        return ", ".join(o) if rng.random() < 0.7 else "something else"
    text = o if isinstance(o, str) else o[0]
    words = text.split()
    kept = [w for w in words if rng.random() < 0.8] or words[:1]
    if rng.random() < 0.3:
        rng.shuffle(kept)
    return rng.choice(["", "Output: "]) + " ".join(kept)


def _rows(dev: list[Record]) -> tuple[list[Record], list[str]]:
    rng = random.Random(SEED)
    records = [rng.choice(dev) for _ in range(ROWS)]
    return records, [_prediction(rng, r) for r in records]


@pytest.mark.bench
def test_bench_batched_vs_per_row_embeddings(real_dev_set: Path) -> None:
    dev = load_shopbench(real_dev_set)
    records, predictions = _rows(dev)
    try:
        model = metrics.load_sentence_model("all-MiniLM-L6-v2")
    except SentenceModelNotFoundError as e:
        pytest.skip(str(e))
    import torch

    torch.set_num_threads(THREADS)
    # Warm everything (imports, tokenizers, mecab) outside the timings.
    evaluate(dev, [_prediction(random.Random(0), r) for r in dev], "official")

    t0 = time.perf_counter()
    batched = evaluate(records, predictions, "official")
    batched_s = time.perf_counter() - t0
    print(f"evaluate, batched embeddings: {batched_s:.1f} s", flush=True)
    t0 = time.perf_counter()
    per_row = evaluate(records, predictions, "official", per_row_embeddings=True)
    per_row_s = time.perf_counter() - t0
    print(f"evaluate, one embedding call per text: {per_row_s:.1f} s", flush=True)

    task_diff = max(
        abs(t["score"] - per_row.scores["tasks"][n]["score"])
        for n, t in batched.scores["tasks"].items()
    )
    row_diff = max(abs(a.score - b.score) for a, b in zip(batched.rows, per_row.rows, strict=True))

    emb = [
        i
        for i, r in enumerate(records)
        if r.metric in metrics.EMBEDDING_METRICS and batched.rows[i].parse_ok
    ]
    preds = [batched.rows[i].parsed for i in emb]
    truths = [records[i].output_field for i in emb]
    t0 = time.perf_counter()
    emb_batched = metrics.embedding_similarities(model, preds, truths)  # type: ignore[arg-type]
    emb_batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb_per_row = metrics.embedding_similarities(model, preds, truths, per_row=True)  # type: ignore[arg-type]
    emb_per_row_s = time.perf_counter() - t0
    emb_diff = max(abs(a - b) for a, b in zip(emb_batched, emb_per_row, strict=True))

    result = {
        "rows": ROWS,
        "embedding_rows": sum(1 for r in records if r.metric in metrics.EMBEDDING_METRICS),
        "distinct_embedding_texts": len(
            {*preds, *(t if isinstance(t, str) else t[0] for t in truths)}
        ),
        "metric_mix": {m: sum(1 for r in records if r.metric == m) for m in metrics.METRICS},
        "evaluate_batched_s": round(batched_s, 3),
        "evaluate_per_row_s": round(per_row_s, 3),
        "evaluate_speedup": round(per_row_s / batched_s, 2),
        "embedding_batched_s": round(emb_batched_s, 3),
        "embedding_per_row_s": round(emb_per_row_s, 3),
        "embedding_speedup": round(emb_per_row_s / emb_batched_s, 2),
        "max_task_score_diff": task_diff,
        "max_row_score_diff": row_diff,
        "max_embedding_score_diff": emb_diff,
        "overall_batched": batched.scores["overall"],
        "overall_per_row": per_row.scores["overall"],
        "torch_threads": THREADS,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, result, sort_keys=False)
    print(json.dumps(result, indent=2))
    # Same scores: batching changes float32 rounding in the last bits only.
    assert task_diff <= 1e-6 and row_diff <= 1e-6 and emb_diff <= 1e-6
    assert per_row_s > batched_s
