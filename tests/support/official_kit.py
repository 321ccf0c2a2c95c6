"""The Amazon KDD Cup 2024 starter kit's own parsers and evaluation, run from a checkout.

Imports ``parsers.py``, ``metrics.py`` and ``local_evaluation.py`` from the checkout and calls
``local_evaluation.get_task_parsers``, ``load_development_data``, ``evaluate_outputs`` and
``aggregate_scores``. The model outputs are put in the ``model_output_str`` column that the
kit's ``main`` fills from its model (``main`` joins them on the prompt text; here they are
set row by row, so repeated prompts cannot mix). Sentence models: the kit's own model cache
is filled with local copies (:func:`tests.support.official_run.sentence_models`);
``evaluate.load("sacrebleu")``: :class:`tests.support.official_run.SacreBleuMetric`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.official_run import (
    error_text,
    official_modules,
    offline_evaluate,
    plain,
    quiet,
)


@contextlib.contextmanager
def kit_modules(kit: Path, models: dict[str, Any]) -> Iterator[Any]:
    """The kit's ``local_evaluation`` module, its ``metrics`` and ``parsers`` imported from
    ``kit``, with ``models`` (name -> loaded model) in the kit's model cache."""
    with (
        offline_evaluate(),
        official_modules(
            {
                "parsers": kit / "parsers.py",
                "metrics": kit / "metrics.py",
                "local_evaluation": kit / "local_evaluation.py",
            }
        ) as mods,
    ):
        mods["metrics"].sentence_transformer_model_cache.update(models)
        yield mods["local_evaluation"]


def parse_all(local_evaluation: Any, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kit's parse of every ``{"raw", "task_types"}`` case under each of its task types.

    Returns:
        Per case, in order: ``{task type: value, or {"raises": "Type: message"}}``.
    """
    parsers = local_evaluation.get_task_parsers()
    out = []
    with quiet():
        for case in cases:
            parsed: dict[str, Any] = {}
            for task_type in case["task_types"]:
                try:
                    parsed[task_type] = plain(parsers[task_type].parse(case["raw"]))
                except Exception as e:
                    parsed[task_type] = {"raises": error_text(e)}
            out.append(parsed)
    return out


def evaluate_predictions(
    local_evaluation: Any, data: Path, predictions: list[str]
) -> dict[str, Any]:
    """The kit's evaluation of one development-format file.

    Args:
        local_evaluation: The kit's module (:func:`kit_modules`).
        data: Development-format JSON Lines.
        predictions: Raw model outputs, one per row.

    Returns:
        ``{"tasks": {task: score}, "rows": [per-row metric value]}`` (micro-F1 rows as
        ``[tp, fp, fn]``), or ``{"raises": "Type: message"}``.
    """
    with quiet():
        df = local_evaluation.load_development_data(str(data))
        if len(df) != len(predictions):
            raise ValueError(f"{len(predictions)} predictions for {len(df)} rows of {data}")
        df["model_output_str"] = predictions
        try:
            per_task = local_evaluation.evaluate_outputs(df, log_every_n_steps=len(df) + 1)
            overall = local_evaluation.aggregate_scores(per_task)
        except Exception as e:
            return {"raises": error_text(e)}
    per_row = {name: iter(v["sample_score"]) for name, v in per_task.items()}
    rows = [plain(next(per_row[name])) for name in df["task_name"]]
    tasks = {
        name: plain(score)
        for name, score in zip(overall["task_name"], overall["overall_score"], strict=True)
    }
    return {"tasks": tasks, "rows": rows}
