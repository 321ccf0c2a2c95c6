"""``harness score``: score a predictions file against ShopBench (or EC-Guide) data, or
Shopping MMLU data the way its official code does.

    harness score --data DATA --predictions PRED [--parser PROFILE]
                  [--out scores.json] [--rows rows.jsonl] [--sentence-model NAME=PATH ...]
                  [--ci [--resamples N] [--seed S] [--level 0.95]]

PRED is JSON Lines with one object per DATA row, same order, key ``prediction`` (raw text).
PROFILE is ``official`` or ``robust`` (ShopBench data), or ``shopping-mmlu-skill`` /
``shopping-mmlu-task`` (Shopping MMLU): then DATA is a skills file or one task file of the
release's layout (``multiple_choice/<task>_dataset.csv``, ...), or the whole release (its
``data.zip`` or extracted dir) with PRED a directory of ``<file name>.jsonl`` predictions.

``--ci`` adds stratified bootstrap intervals (:mod:`harness.shopbench.uncertainty`): ``ci``
and ``stderr`` in each task, ``tracks_ci`` ({track: {"ci", "stderr"}}), ``overall_ci`` and
``overall_stderr``, and the settings under ``uncertainty``; the tables gain a CI column.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from harness.atomic import write_json, write_jsonl
from harness.errors import HarnessError
from harness.public_data import resolve
from harness.shopbench.data import load_eval_data, load_predictions
from harness.shopbench.errors import ScoringError, SentenceModelNotFoundError
from harness.shopbench.evaluate import EvalResult, evaluate, units_of
from harness.shopbench.parsers import MODES
from harness.shopbench.types import ALL_TRACKS
from harness.shopbench.uncertainty import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    intervals,
    json_safe,
)

SHOPPING_MMLU_PROFILES = ("shopping-mmlu-skill", "shopping-mmlu-task")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``score`` options to a (sub)parser.

    Args:
        parser: The parser to extend.
    """
    parser.add_argument(
        "--data",
        required=True,
        help="ShopBench JSONL (with answers), EC-Guide JSON, or with a shopping-mmlu "
        "profile: a Shopping MMLU task file, skills file, or the release (zip or dir); a "
        "file or a named dataset, data://NAME[/inner/path].",
    )
    parser.add_argument(
        "--predictions",
        required=True,
        help="JSONL, one object per data row in data order, raw text under `prediction`.",
    )
    parser.add_argument(
        "--parser",
        choices=(*MODES, *SHOPPING_MMLU_PROFILES),
        default="official",
        help="Parser mode or scoring profile (default: official).",
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
    parser.add_argument(
        "--missing-sentence-model",
        dest="missing_sentence_model",
        choices=("error", "nan"),
        default="error",
        help="With a shopping-mmlu profile, when an embedding metric's sentence model is not "
        "available offline: error (default), or nan: its tasks score NaN with a warning "
        "(smoke runs; the spec's shopping_mmlu.missing_sentence_model).",
    )
    parser.add_argument(
        "--no-embedding-cache",
        dest="embedding_cache",
        action="store_false",
        help="Neither read nor write the on-disk embedding cache ($HARNESS_EMBEDDING_CACHE, "
        "default $XDG_CACHE_HOME/shopbench-harness/embeddings, ~/.cache when unset).",
    )
    parser.add_argument(
        "--ci",
        action="store_true",
        help="Add bootstrap confidence intervals and standard errors (rows resampled within "
        "tasks).",
    )
    add_resampling_arguments(parser)


def add_resampling_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--resamples``, ``--seed`` and ``--level`` to a (sub)parser.

    Args:
        parser: The parser to extend.
    """
    parser.add_argument(
        "--resamples",
        type=int,
        default=DEFAULT_RESAMPLES,
        help=f"Bootstrap resamples (default {DEFAULT_RESAMPLES}).",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"Resampling seed (default {DEFAULT_SEED})."
    )
    parser.add_argument(
        "--level",
        type=float,
        default=DEFAULT_LEVEL,
        help=f"Confidence level of the intervals (default {DEFAULT_LEVEL}).",
    )


def fmt_ci(ci: list[float | None] | None, signed: bool = False) -> str:
    """``[lo, hi]`` with 3 decimals (``-`` when unknown).

    Args:
        ci: The interval.
        signed: Show the sign (differences).

    Returns:
        The text.
    """
    if not ci or ci[0] is None or ci[1] is None or ci[0] != ci[0] or ci[1] != ci[1]:
        return "-"
    f = "+.3f" if signed else ".3f"
    return f"[{ci[0]:{f}}, {ci[1]:{f}}]"


def short_track(name: str) -> str:
    """A track's name without ``amazon-kdd-cup-24-`` and ``shopping-`` (tables fit 80
    columns)."""
    return name.removeprefix("amazon-kdd-cup-24-").replace("shopping-", "")


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


def check_output_file(option: str, path: Path | None) -> None:
    """Fail before any work when an output option cannot name a file to write.

    Args:
        option: The option, for the message (``--out``).
        path: Its value (None: not given).

    Raises:
        HarnessError: ``path`` is a directory, or a parent of it is a file.
    """
    if path is None:
        return
    if path.is_dir():
        raise HarnessError(f"{option} {path}: is a directory; name a file to write")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise HarnessError(f"{option} {path}: {parent} is a file, not a directory")


def render(result: EvalResult, ci: dict[str, Any] | None = None) -> list[Table]:
    """Rich tables of a result: per task, then per track and overall.

    Args:
        result: The evaluation.
        ci: Its :func:`~harness.shopbench.uncertainty.intervals` (adds a CI column).

    Returns:
        The tables.
    """
    parsed: dict[str, list[bool]] = {}
    for row in result.rows:
        parsed.setdefault(row.task_name, []).append(row.parse_ok)
    tasks = Table(title=f"ShopBench scores ({result.mode} parser)", box=box.SIMPLE_HEAD)
    for col, justify in (
        ("task", "left"),
        ("type", "left"),
        ("metric", "left"),
        ("n", "right"),
        ("parsed", "right"),
        ("score", "right"),
        *([(f"{ci['level']:.0%} CI", "right")] if ci else []),
    ):
        tasks.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for name, t in result.scores["tasks"].items():
        oks = parsed.get(name, [])
        rate = sum(oks) / len(oks) if oks else 0.0
        extra = [fmt_ci(ci["tasks"][name]["ci"])] if ci else []
        tasks.add_row(
            name,
            t["task_type"],
            t["metric"],
            str(t["n"]),
            f"{rate:.0%}",
            f"{t['score']:.4f}",
            *extra,
        )
    summary = Table(title="Tracks", box=box.SIMPLE_HEAD)
    summary.add_column("track", overflow="fold")
    summary.add_column("score", justify="right")
    if ci:
        summary.add_column(f"{ci['level']:.0%} CI", justify="right")
    for track, score in result.scores["tracks"].items():
        label = f"[bold]{track}[/bold]" if track == ALL_TRACKS else short_track(track)
        extra = [fmt_ci(ci["groups"][track]["ci"])] if ci else []
        summary.add_row(label, f"{score:.4f}", *extra)
    extra = [fmt_ci(ci["overall"]["ci"])] if ci else []
    summary.add_row(
        "[bold]overall (mean of tasks)[/bold]", f"{result.scores['overall']:.4f}", *extra
    )
    return [tasks, summary]


def with_intervals(scores: dict[str, Any], ci: dict[str, Any]) -> dict[str, Any]:
    """A ShopBench scores dict with the intervals of :func:`intervals` added (new keys
    only: ``ci``/``stderr`` per task, ``tracks_ci``, ``overall_ci``, ``overall_stderr``,
    ``uncertainty``).

    Args:
        scores: The scores dict.
        ci: Its intervals.

    Returns:
        A new dict.
    """
    out = dict(scores)
    out["tasks"] = {
        n: {**t, "ci": ci["tasks"][n]["ci"], "stderr": ci["tasks"][n]["stderr"]}
        for n, t in scores["tasks"].items()
    }
    out["tracks_ci"] = {g: {"ci": e["ci"], "stderr": e["stderr"]} for g, e in ci["groups"].items()}
    out["overall_ci"] = ci["overall"]["ci"]
    out["overall_stderr"] = ci["overall"]["stderr"]
    out["uncertainty"] = {k: ci[k] for k in ("resamples", "seed", "level", "method")}
    return json_safe(out)


def shopbench_result(
    data: Path,
    predictions: Path,
    parser: str,
    models: dict[str, str],
    embedding_cache: bool = True,
) -> EvalResult:
    """Load and score one ShopBench predictions file.

    Raises:
        HarnessError: Bad data or predictions (Shopping MMLU data among them), or a count
            mismatch.
    """
    if Path(data).suffix == ".csv" or Path(data).name == "data.zip":
        raise HarnessError(
            f"{data}: this looks like Shopping MMLU data (a task file or the release), "
            "not ShopBench JSONL; score it with --parser shopping-mmlu-task (or "
            "shopping-mmlu-skill)"
        )
    records = load_eval_data(data)
    preds = load_predictions(predictions)
    if len(preds) != len(records):
        raise ScoringError(
            f"{predictions}: {len(preds)} predictions but {data} has "
            f"{len(records)} rows (one prediction object per data row, in data order)"
        )
    return evaluate(records, preds, parser, models, embedding_cache=embedding_cache)


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
    args.data, args.predictions = resolve(args.data), resolve(args.predictions)
    for option, path in (("--out", args.out), ("--rows", args.rows)):
        check_output_file(option, path)
    try:
        if args.parser in SHOPPING_MMLU_PROFILES:
            return _shopping_mmlu(args, models, console)
        return _shopbench(args, models, console)
    except SentenceModelNotFoundError as e:
        if e.model is None:
            raise
        nan = (
            ", or --missing-sentence-model nan to score its tasks NaN (a smoke run)"
            if args.parser in SHOPPING_MMLU_PROFILES
            else ""
        )
        raise SentenceModelNotFoundError(
            f"sentence-transformer model {e.model!r} was not found offline (not given with "
            "--sentence-model, not in the Hugging Face cache): give its local directory "
            f"(safetensors weights) with --sentence-model {e.model}=PATH{nan}",
            model=e.model,
        ) from None


def _shopbench(args: argparse.Namespace, models: dict[str, str], console: Console) -> int:
    """Score ShopBench (or EC-Guide) data."""
    result = shopbench_result(
        args.data, args.predictions, args.parser, models, args.embedding_cache
    )
    ci = None
    scores = result.scores
    if getattr(args, "ci", False):
        ci = intervals(units_of(result), resamples=args.resamples, seed=args.seed, level=args.level)
        scores = with_intervals(scores, ci)
    if args.out is not None:
        write_json(args.out, scores, sort_keys=False, allow_nan=False)
    if args.rows is not None:
        write_jsonl(args.rows, (r.to_json() for r in result.rows), allow_nan=False)
    for table in render(result, ci):
        console.print(table)
    return 0


def _prediction_files(folder: Path) -> dict[str, list[str]]:
    """``<file name>.jsonl`` (``_dataset`` suffix optional) -> predictions."""
    if not folder.is_dir():
        raise HarnessError(
            f"--predictions {folder}: scoring a whole release takes a directory of "
            "<task or skill name>.jsonl files"
        )
    out: dict[str, list[str]] = {}
    for f in sorted(folder.glob("*.jsonl")):
        name = f.stem.removesuffix("_dataset")
        if name in out:
            raise HarnessError(f"{folder}: two prediction files for `{name}`")
        out[name] = load_predictions(f)
    return out


def mmlu_result(
    data: Path,
    predictions: Path,
    profile: str,
    models: dict[str, str],
    missing_sentence_model: str = "error",
) -> dict[str, Any]:
    """Score Shopping MMLU data (a task file, a skill file or the release) with a profile.

    A sentence model that is not available raises, or with ``missing_sentence_model="nan"``
    scores its tasks NaN (named in the result's warnings).

    Returns:
        The result; its ``tasks`` hold every task's result under either profile.
    """
    from harness.shopbench.mmlu import (
        load_benchmark,
        load_task_file,
        score_benchmark,
        score_skill,
        score_task,
        task_results,
    )
    from harness.shopbench.mmlu.profiles import nan_embedders, unavailable_models

    data = Path(data)
    whole = data.is_dir() or data.suffix == ".zip"
    release = load_benchmark(data) if whole else None
    task = None if whole else load_task_file(data)
    predicted = _prediction_files(Path(predictions)) if whole else {}
    scored = [f for f in release if f.name in predicted] if release is not None else [task]
    missing = unavailable_models(scored, models)  # type: ignore[arg-type]
    if missing and missing_sentence_model == "error":
        raise next(iter(missing.values()))
    embed = nan_embedders(missing) or None
    notes = [f"metric {m!r}: sentence model not available, its tasks score NaN" for m in missing]
    if release is not None:
        result = score_benchmark(release, predicted, profile, embed=embed, sentence_models=models)
    else:
        assert task is not None
        preds = load_predictions(predictions)
        if task.is_skill:
            one = score_skill(task, preds, profile, embed=embed, sentence_models=models)
            result = {
                "profile": profile,
                "source": task.source,
                "tasks": one["tasks"],
                "skills": {one["skill"]: {k: v for k, v in one.items() if k != "tasks"}},
                "warnings": one["warnings"],
            }
        else:
            one = score_task(task, preds, profile, embed=embed, sentence_models=models)
            result = {
                "profile": profile,
                "source": task.source,
                "tasks": {one["task"]: one},
                "warnings": one["warnings"],
            }
    result["warnings"] = notes + list(result.get("warnings", []))
    # OUT["tasks"] holds every task's result under either profile (the skill profile's
    # whole-release result has them inside its skills).
    result["tasks"] = task_results(result)
    return result


def mmlu_intervals(result: dict[str, Any], ci: dict[str, Any]) -> None:
    """Add a Shopping MMLU result's intervals in place: ``ci``/``stderr`` in each task,
    ``skills_ci`` ({skill or leaderboard column: {"ci", "stderr"}}), ``overall_ci``,
    ``overall_stderr`` and ``uncertainty``."""
    for name, t in result["tasks"].items():
        t["ci"], t["stderr"] = ci["tasks"][name]["ci"], ci["tasks"][name]["stderr"]
    result["skills_ci"] = {
        g: {"ci": e["ci"], "stderr": e["stderr"]} for g, e in ci["groups"].items()
    }
    result["overall_ci"] = ci["overall"]["ci"]
    result["overall_stderr"] = ci["overall"]["stderr"]
    result["uncertainty"] = {k: ci[k] for k in ("resamples", "seed", "level", "method")}


def _shopping_mmlu(args: argparse.Namespace, models: dict[str, str], console: Console) -> int:
    """Score Shopping MMLU data with one of its official profiles."""
    from harness.shopbench.mmlu import leaderboard_table
    from harness.shopbench.mmlu.units import mmlu_units

    result = mmlu_result(
        args.data, args.predictions, args.parser, models, args.missing_sentence_model
    )
    tasks = result["tasks"]
    ci = None
    if getattr(args, "ci", False):
        ci = intervals(
            mmlu_units(result), resamples=args.resamples, seed=args.seed, level=args.level
        )
        mmlu_intervals(result, ci)
    if args.rows is not None:
        rows = [{"task": name, **row} for name, t in tasks.items() for row in t.get("rows", [])]
        write_jsonl(args.rows, rows, allow_nan=True)
    if args.out is not None:
        write_json(args.out, result, sort_keys=False, allow_nan=True)
    table = Table(title=f"Shopping MMLU task scores ({args.parser}), 0-1")
    for col in ("task", "metric", "n", "score (0-1)", *([f"{args.level:.0%} CI"] if ci else [])):
        left = col in ("task", "metric")
        table.add_column(col, justify="left" if left else "right", overflow="fold")
    for name, t in tasks.items():
        extra = [fmt_ci(t["ci"])] if ci else []
        table.add_row(
            name, str(t.get("metric", "")), str(t.get("n", "")), f"{t['score']:.4f}", *extra
        )
    console.print(table)
    if ci is not None and ci["groups"]:
        skills = Table(title="Skills")
        for col in ("skill", "score", f"{args.level:.0%} CI"):
            skills.add_column(col, justify="left" if col == "skill" else "right")
        for g, e in ci["groups"].items():
            skills.add_row(g, f"{e['score']:.4f}", fmt_ci(e["ci"]))
        skills.add_row("Overall", f"{ci['overall']['score']:.4f}", fmt_ci(ci["overall"]["ci"]))
        console.print(skills)
    if "leaderboard" in result:
        console.print(
            "Leaderboard (skill scores x 100, 0-100, as the official leaderboard shows them):",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        console.print(
            leaderboard_table({args.parser: result}, intervals=ci), soft_wrap=True, markup=False
        )
    for w in result.get("warnings", []):
        console.print(f"warning: {w}", soft_wrap=True, markup=False, highlight=False)
    return 0
