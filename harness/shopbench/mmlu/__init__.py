"""Shopping MMLU (KL4805/ShoppingMMLU, NeurIPS 2024 Datasets and Benchmarks; Apache-2.0): the
public release of the KDD Cup 2024 ShopBench, 57 tasks and about 20.8k questions over four
skills, loaded and scored the way its official evaluation code does it.

Public API::

    load_task_file(path, *, on_error="raise") -> TaskData
    load_benchmark(zip_or_dir, *, on_error="raise", expected_sha256=None) -> Benchmark
    build_prompt(task, index, *, task_specific_prompt=False, letter_choices=False) -> str
    max_new_tokens(task, index=0, *, multi_choice_tokens=1) -> int
    evaluated_files(zip_or_dir, "skill"|"task", names=None, limit_per_file=None) -> Benchmark
    select_files(benchmark, "skills"|"tasks", names=None, limit_per_file=None) -> Benchmark
    score_task(task, predictions, profile="shopping-mmlu-task", *, embed=None,
               sentence_models=None, letter_choices=False) -> dict
    score_skill(skill, predictions, profile="shopping-mmlu-skill", *, embed=None,
                sentence_models=None) -> dict
    score_benchmark(benchmark, predictions, profile, *, embed=None, sentence_models=None,
                    letter_choices=False, task_skills=None) -> dict
    leaderboard({skill: score}) -> (columns, warnings)
    leaderboard_row(result) -> dict[str, float]
    task_results(result) -> {task: result}  (either profile)
    leaderboard_table({model: result}, *, scale=100.0, digits=2) -> str
    sentence_embedder(model, sentence_models=None, *, per_text=True) -> embed function

Predictions are raw model outputs, one string per loaded row in file order. ``embed`` is a
function from a list of texts to their vectors (or a mapping from metric or model name to
one); tests pass a fake one, the default loads the official sentence-transformers models
offline. Scores are floats; NaN where the official code raises or computes NaN, with a
warning in the result naming the rows and the cause.

:mod:`harness.shopbench.mmlu.data` documents how files are read,
:mod:`harness.shopbench.mmlu.official` the per-row semantics of the two evaluators and
:mod:`harness.shopbench.mmlu.scoring` the profiles and aggregation. Nothing here imports
torch or sentence-transformers until an embedding model is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve on first use (PEP 562): loading data or building prompts does not import
# the scorers, so a stage that only reads the release does not depend on their code.
_EXPORTS = {
    "Benchmark": "data",
    "Embedder": "scoring",
    "LEADERBOARD_COLUMNS": "scoring",
    "OFFICIAL_DATA_ZIP_SHA256": "data",
    "OVERALL_COLUMN": "scoring",
    "PROFILES": "scoring",
    "SKILL_PROFILE": "scoring",
    "ShoppingMMLUDataError": "data",
    "SkippedRow": "data",
    "TASK_PROFILE": "scoring",
    "TASK_TYPE_DIRS": "data",
    "TaskData": "data",
    "TaskRow": "data",
    "build_prompt": "data",
    "evaluated_files": "data",
    "leaderboard": "scoring",
    "leaderboard_row": "scoring",
    "leaderboard_table": "scoring",
    "load_benchmark": "data",
    "load_task_file": "data",
    "max_new_tokens": "data",
    "score_benchmark": "scoring",
    "score_skill": "scoring",
    "score_task": "scoring",
    "select_files": "data",
    "sentence_embedder": "scoring",
    "skill_column": "scoring",
    "task_results": "scoring",
}

__all__ = [
    "LEADERBOARD_COLUMNS",
    "OFFICIAL_DATA_ZIP_SHA256",
    "OVERALL_COLUMN",
    "PROFILES",
    "SKILL_PROFILE",
    "TASK_PROFILE",
    "TASK_TYPE_DIRS",
    "Benchmark",
    "Embedder",
    "ShoppingMMLUDataError",
    "SkippedRow",
    "TaskData",
    "TaskRow",
    "build_prompt",
    "evaluated_files",
    "leaderboard",
    "leaderboard_row",
    "leaderboard_table",
    "load_benchmark",
    "load_task_file",
    "max_new_tokens",
    "score_benchmark",
    "score_skill",
    "score_task",
    "select_files",
    "sentence_embedder",
    "skill_column",
    "task_results",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
