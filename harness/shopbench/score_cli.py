"""``harness score``: score a predictions file against ShopBench (or EC-Guide) data.

    harness score --data DATA --predictions PRED [--parser official|robust]
                  [--out scores.json] [--rows rows.jsonl] [--sentence-model NAME=PATH ...]

PRED is JSON Lines with one object per DATA row, same order, key ``prediction`` (raw text).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.errors import HarnessError
from harness.shopbench.data import load_eval_data, load_predictions
from harness.shopbench.errors import ScoringError
from harness.shopbench.evaluate import EvalResult, evaluate, write_json_atomic, write_jsonl_atomic
from harness.shopbench.parsers import MODES
from harness.shopbench.types import ALL_TRACKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``score`` options to a (sub)parser.

    Args:
        parser: The parser to extend.
    """
    parser.add_argument(
        "--data", required=True, type=Path, help="ShopBench JSONL (with answers) or EC-Guide JSON."
    )
    parser.add_argument(
        "--predictions",
        required=True,
        type=Path,
        help="JSONL, one object per data row in data order, raw text under `prediction`.",
    )
    parser.add_argument(
        "--parser", choices=MODES, default="official", help="Parser mode (default: official)."
    )
    parser.add_argument("--out", type=Path, default=None, help="Write scores.json here.")
    parser.add_argument("--rows", type=Path, default=None, help="Write per-row rows.jsonl here.")
    parser.add_argument(
        "--sentence-model",
        dest="sentence_model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="Local directory of a sentence-transformer model (repeatable), e.g. "
        "paraphrase-multilingual-MiniLM-L12-v2=/models/pmml12.",
    )


def parse_sentence_models(items: list[str]) -> dict[str, str]:
    """``["NAME=PATH", ...]`` -> ``{NAME: PATH}``.

    Args:
        items: The ``--sentence-model`` values.

    Returns:
        The mapping.

    Raises:
        HarnessError: An item without ``=`` or with an empty side.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise HarnessError(f"--sentence-model expects NAME=PATH, got {item!r}")
        out[name.strip()] = path.strip()
    return out


def render(result: EvalResult) -> list[Table]:
    """Rich tables of a result: per task, then per track and overall.

    Args:
        result: The evaluation.

    Returns:
        The tables.
    """
    parsed: dict[str, list[bool]] = {}
    for row in result.rows:
        parsed.setdefault(row.task_name, []).append(row.parse_ok)
    tasks = Table(title=f"ShopBench scores ({result.mode} parser)")
    for col, justify in (
        ("task", "left"),
        ("type", "left"),
        ("metric", "left"),
        ("n", "right"),
        ("parsed", "right"),
        ("score", "right"),
    ):
        tasks.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, t in result.scores["tasks"].items():
        oks = parsed.get(name, [])
        rate = sum(oks) / len(oks) if oks else 0.0
        tasks.add_row(
            name, t["task_type"], t["metric"], str(t["n"]), f"{rate:.0%}", f"{t['score']:.4f}"
        )
    summary = Table(title="Tracks")
    summary.add_column("track")
    summary.add_column("score", justify="right")
    for track, score in result.scores["tracks"].items():
        label = f"[bold]{track}[/bold]" if track == ALL_TRACKS else track
        summary.add_row(label, f"{score:.4f}")
    summary.add_row("[bold]overall (mean of tasks)[/bold]", f"{result.scores['overall']:.4f}")
    return [tasks, summary]


def main(args: argparse.Namespace, console: Console | None = None) -> int:
    """Run ``harness score``.

    Args:
        args: Parsed options (see :func:`add_arguments`).
        console: Where the tables go (default: stdout).

    Returns:
        0 on success.

    Raises:
        HarnessError: Bad data, predictions, count mismatch, unknown names or a missing
            embedding model; the message names the file/line at fault.
    """
    console = console or Console()
    models = parse_sentence_models(args.sentence_model)
    records = load_eval_data(args.data)
    predictions = load_predictions(args.predictions)
    if len(predictions) != len(records):
        raise ScoringError(
            f"{args.predictions}: {len(predictions)} predictions but {args.data} has "
            f"{len(records)} rows (one prediction object per data row, in data order)"
        )
    result = evaluate(records, predictions, args.parser, models)
    if args.out is not None:
        write_json_atomic(args.out, result.scores)
    if args.rows is not None:
        write_jsonl_atomic(args.rows, (r.to_json() for r in result.rows))
    for table in render(result):
        console.print(table)
    return 0
