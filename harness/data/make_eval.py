"""Build the CPU default's evaluation set (``experiments/data/eval_tiny.jsonl``).

The rows come from the template generator run on the *held-out* records
(``experiments/data/heldout/``: brands and products that never appear in
``experiments/data/products.jsonl``, which the ``synthesize`` stage trains on), so no
evaluation prompt can be a training prompt. They are ShopBench dev-format rows over the
five task types, scored only with metrics that need no downloaded model.

Deterministic: ``python -m harness.data.make_eval`` rewrites the file byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.data.catalogue import DEFAULT_DIR, load_catalogue
from harness.data.clean import clean
from harness.data.sources import load_sources
from harness.data.template import generate_template

DEV_KEYS = (
    "input_field",
    "output_field",
    "task_name",
    "task_type",
    "metric",
    "is_multiple_choice",
    "track",
)
EVAL_METRICS = ("accuracy", "hit rate@3", "ndcg", "micro f1", "rougel", "bleu")
DEFAULT_COUNTS: dict[str, int] = {
    "task4": 10,
    "task5": 10,
    "task6": 8,
    "task7": 8,
    "task11": 6,
    "task12": 10,
    "task14": 6,
    "task15": 8,
    "task16": 6,
    "task17": 8,
    "task18": 6,
}
DATA = Path("experiments/data")


def make_eval(
    products: Path,
    categories: Path,
    reviews: Path,
    counts: dict[str, int] | None = None,
    seed: int = 0,
    catalogue_dir: Path = DEFAULT_DIR,
) -> list[dict[str, Any]]:
    """Evaluation rows built by the template generator from the given records.

    Args:
        products: Held-out products.
        categories: Product categories.
        reviews: Reviews of the held-out products.
        counts: Rows per task (default :data:`DEFAULT_COUNTS`).
        seed: Generator seed.
        catalogue_dir: The task catalogue.

    Returns:
        Dev-format rows, tasks in ``counts`` order.

    Raises:
        SystemExit: A task yields fewer rows than asked for.
    """
    counts = dict(counts or DEFAULT_COUNTS)
    sources = load_sources(products, categories, reviews)
    catalogue = load_catalogue(catalogue_dir)
    rows = generate_template(sources, catalogue, list(counts), 10**6, 1, seed)
    kept = [r for r in clean(rows).kept if r["metric"] in EVAL_METRICS]
    out: list[dict[str, Any]] = []
    for task, n in counts.items():
        mine = [r for r in kept if r["task_name"] == task][:n]
        if len(mine) < n:
            raise SystemExit(f"task {task}: only {len(mine)} rows from the held-out records")
        out += [{k: r[k] for k in DEV_KEYS} for r in mine]
    return out


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write JSON Lines atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    os.replace(tmp, path)


def _counts(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, n = part.partition("=")
        out[name.strip()] = int(n)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m harness.data.make_eval", description=__doc__)
    ap.add_argument("--products", type=Path, default=DATA / "heldout" / "products.jsonl")
    ap.add_argument("--reviews", type=Path, default=DATA / "heldout" / "reviews.jsonl")
    ap.add_argument("--categories", type=Path, default=DATA / "categories.csv")
    ap.add_argument("--out", type=Path, default=DATA / "eval_tiny.jsonl")
    ap.add_argument("--counts", help="rows per task, e.g. task4=10,task5=10 (default: built in)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = make_eval(args.products, args.categories, args.reviews, _counts(args.counts), args.seed)
    write_rows(args.out, rows)
    print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
