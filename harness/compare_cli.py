"""``harness compare``: a paired comparison of two prediction sets on the same rows.

    harness compare --data DATA --predictions A.jsonl --predictions B.jsonl
                    [--parser PROFILE] [--resamples N] [--seed S] [--level 0.95]
                    [--out OUT.json] [--sentence-model NAME=PATH ...]
    harness compare RUN_A RUN_B [--parser official|robust] [...]

B is compared against A: ``delta = B - A`` per task, track and overall, with its bootstrap
interval (the same resampled rows for A and B), a paired sign-flip permutation p-value, the
exact McNemar p-value of accuracy tasks and, per task, the ids of the rows that got better
and worse (see :mod:`harness.shopbench.uncertainty`). RUN_A and RUN_B are ``run.json`` files
(or run dirs) of specs scored on the same eval data: their ``score`` stages' rows are read
back, nothing is scored again; ``--parser`` picks the parser mode (default: each spec's
``eval.parser``). Two sets whose rows differ are refused.

OUT.json::

    {"overall": {"a", "b", "delta", "ci": [lo, hi], "stderr", "p_value"},
     "tracks": {track: {...same keys}},
     "tasks": {task: {...same keys, "n", "metric", "better": [ids], "worse": [ids],
                      "mcnemar_p" (accuracy tasks)}},
     "resamples", "seed", "level", "method", "a", "b"}
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from harness.atomic import read_json, write_json
from harness.core.results import score_units
from harness.errors import HarnessError
from harness.public_data import resolve
from harness.shopbench.parsers import MODES
from harness.shopbench.score_cli import (
    SHOPPING_MMLU_PROFILES,
    add_resampling_arguments,
    check_output_file,
    fmt_ci,
    parse_sentence_models,
    short_track,
)
from harness.shopbench.units import Units

BETTER_SHOWN = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``compare`` options to a (sub)parser.

    Args:
        parser: The parser to extend.
    """
    parser.add_argument(
        "runs",
        nargs="*",
        type=Path,
        metavar="RUN",
        help="Two run.json files (or run dirs) to compare, A then B (instead of --data and "
        "--predictions).",
    )
    parser.add_argument(
        "--data", default=None, help="Eval data (as for `score`; a data:// name too)."
    )
    parser.add_argument(
        "--predictions",
        action="append",
        default=[],
        help="Predictions JSONL (or a directory, for a whole Shopping MMLU release); give it "
        "twice, A then B.",
    )
    parser.add_argument(
        "--parser",
        choices=(*MODES, *SHOPPING_MMLU_PROFILES),
        default=None,
        help="Parser mode or scoring profile (default: official; with runs, each spec's "
        "eval.parser).",
    )
    parser.add_argument("--out", type=Path, default=None, help="Write the comparison here.")
    parser.add_argument(
        "--sentence-model",
        dest="sentence_model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="Local directory of a sentence-transformer model (repeatable).",
    )
    parser.add_argument(
        "--no-embedding-cache",
        dest="embedding_cache",
        action="store_false",
        help="Neither read nor write the on-disk embedding cache.",
    )
    add_resampling_arguments(parser)


# --------------------------------------------------------------------------- inputs


def _run_manifest(path: Path) -> tuple[Path, dict[str, Any]]:
    file = path / "run.json" if path.is_dir() else path
    if not file.is_file():
        raise HarnessError(f"{path}: not a run.json file or a run dir holding one")
    try:
        return file, read_json(file)
    except ValueError as e:
        raise HarnessError(f"{file}: not valid JSON ({e})") from e


def _eval_of(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest.get("spec") or {}
    ev = spec.get("eval") or {}
    return {
        "data": ev.get("data"),
        "tracks": ev.get("tracks"),
        "limit": (spec.get("infer") or {}).get("limit"),
    }


def _runs_units(args: argparse.Namespace) -> tuple[Units, Units, dict[str, str]]:
    (file_a, run_a), (file_b, run_b) = (_run_manifest(p) for p in args.runs)
    eval_a, eval_b = _eval_of(run_a), _eval_of(run_b)
    if eval_a != eval_b:
        raise HarnessError(
            f"{file_a} and {file_b} are not scored on the same eval data "
            f"(eval.data, eval.tracks, infer.limit: {eval_a} vs {eval_b})"
        )
    units = []
    for file, run in ((file_a, run_a), (file_b, run_b)):
        stage = (run.get("stages") or {}).get("score")
        if not stage:
            raise HarnessError(f"{file}: the run has no finished `score` stage")
        mode = args.parser or ((run.get("spec") or {}).get("eval") or {}).get("parser", "official")
        if mode not in MODES:
            raise HarnessError(f"--parser {mode}: runs are compared under official or robust")
        units.append(score_units(Path(stage["dir"]), mode))
    return units[0], units[1], {"a": str(file_a), "b": str(file_b)}


def _files_units(args: argparse.Namespace) -> tuple[Units, Units, dict[str, str]]:
    from harness.shopbench.evaluate import units_of
    from harness.shopbench.mmlu.units import mmlu_units
    from harness.shopbench.score_cli import mmlu_result, shopbench_result

    models = parse_sentence_models(args.sentence_model)
    parser = args.parser or "official"
    units = []
    for pred in args.predictions:
        if parser in SHOPPING_MMLU_PROFILES:
            units.append(mmlu_units(mmlu_result(args.data, pred, parser, models)))
        else:
            result = shopbench_result(args.data, pred, parser, models, args.embedding_cache)
            units.append(units_of(result))
    a, b = args.predictions
    return units[0], units[1], {"a": str(a), "b": str(b)}


# --------------------------------------------------------------------------- output


def _p(p: float | None) -> str:
    if p is None or p != p:
        return "-"
    return f"{p:.4f}" if p >= 0.0001 else "<0.0001"


def excludes_zero(entry: dict[str, Any]) -> bool:
    """Whether a comparison entry's interval excludes 0."""
    lo, hi = entry["ci"]
    return lo is not None and hi is not None and (lo > 0 or hi < 0)


def render(result: dict[str, Any]) -> list[Table]:
    """Tables of a comparison (fit 80 columns): tasks, then tracks and overall.

    Args:
        result: From :func:`harness.shopbench.uncertainty.compare`.

    Returns:
        The tables.
    """
    level = f"{result['level']:.0%} CI"

    def table(title: str, first: str) -> Table:
        t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        t.add_column(first, no_wrap=True)
        for col in ("A", "B", "B-A", level, "p"):
            t.add_column(col, justify="right", no_wrap=True)
        return t

    def cells(e: dict[str, Any]) -> list[str]:
        mark = "*" if excludes_zero(e) else " "
        return [
            f"{e['a']:.3f}",
            f"{e['b']:.3f}",
            f"{e['delta']:+.3f}{mark}",
            fmt_ci(e["ci"], signed=True),
            _p(e["p_value"]),
        ]

    tasks = table("Paired comparison, B - A (* : CI excludes 0)", "task (n, +/-)")
    for name, e in result["tasks"].items():
        label = f"{name} ({e['n']}, +{len(e['better'])}/-{len(e['worse'])})"
        tasks.add_row(label, *cells(e))
    tracks = table("Tracks and overall", "track")
    for name, e in result["tracks"].items():
        tracks.add_row(short_track(name), *cells(e))
    tracks.add_row("overall", *cells(result["overall"]))
    return [tasks, tracks]


def main(args: argparse.Namespace, console: Console | None = None) -> int:
    """Run ``harness compare``.

    Args:
        args: Parsed options (see :func:`add_arguments`).
        console: Where the tables go (default: stdout).

    Returns:
        0 on success.

    Raises:
        HarnessError: Wrong arguments, unreadable inputs, or rows that differ.
    """
    from harness.shopbench.uncertainty import compare, json_safe

    console = console or Console()
    check_output_file("--out", args.out)
    if args.runs:
        if len(args.runs) != 2 or args.data is not None or args.predictions:
            raise HarnessError(
                "compare takes two runs (RUN_A RUN_B), or --data with two --predictions"
            )
        a, b, names = _runs_units(args)
    else:
        if args.data is None or len(args.predictions) != 2:
            raise HarnessError(
                "compare takes --data DATA --predictions A --predictions B (or two runs)"
            )
        # data:// names resolve as in specs and `harness score`.
        args.data = resolve(args.data)
        args.predictions = [resolve(p) for p in args.predictions]
        a, b, names = _files_units(args)
    result = compare(a, b, resamples=args.resamples, seed=args.seed, level=args.level)
    result.update(names)
    if args.out is not None:
        write_json(args.out, json_safe(result), sort_keys=False, allow_nan=False)
    for t in render(result):
        console.print(t)
    changed = {n: e for n, e in result["tasks"].items() if e["better"] or e["worse"]}
    for name, e in list(changed.items())[:20]:
        better = ", ".join(e["better"][:BETTER_SHOWN]) + ("..." if len(e["better"]) > 3 else "")
        worse = ", ".join(e["worse"][:BETTER_SHOWN]) + ("..." if len(e["worse"]) > 3 else "")
        mc = f"; McNemar p {_p(e['mcnemar_p'])}" if "mcnemar_p" in e else ""
        console.print(
            f"{name}: better {better or '-'}; worse {worse or '-'}{mc}",
            soft_wrap=False,
            markup=False,
            highlight=False,
        )
    return 0
