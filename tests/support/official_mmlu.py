"""Shopping MMLU's own evaluation scripts, run from a checkout on given model outputs.

* Task-wise (``task_wise_eval/hf_*.py``): each script runs as ``__main__`` in a directory
  whose ``../data`` is the release, with :class:`tests.support.official_run.Replay` in place
  of ``utils.load_tokenizer_and_model`` (it "generates" the given outputs). The script keeps
  its running totals in module variables; the task score is the expression the script
  prints (``%.4f``), taken from those variables at full precision (``correct /
  all_samples``, ``total_hit / all_samples``, ``total_ndcg / all_samples``, ``f1``,
  ``total_score / all_samples``). Per-row values are read from the script's variables
  between rows (at each ``generate`` call the previous row is complete): ``hit``,
  ``ndcg_val``, ``current_score``, and the change of ``correct`` and of the entity counts.
  Prompts are built by the scripts' own ``utils.gen_system_prompt`` and
  ``utils.format_example`` for every row (a script that raises never reaches its later
  rows) and checked against the prompts the runs produced.
* Skill-wise: ``skill_wise_eval/hf_skill_inference.py`` runs with the replay model and
  writes the outputs file (and gives each row's prompt and ``max_new_tokens``); then
  ``skill_evaluation.py`` scores it. The outputs file is read back with ``dtype=False``:
  pandas would otherwise turn an all-numeric output column into integers, which the
  official metrics cannot read (model outputs are strings). Per-row values are recorded by
  wrapping the official metric functions the script calls, which still compute them.
* Embeddings: ``SentenceTransformer`` stands as :mod:`tests.support.fake_embedder`'s models
  (``all-MiniLM-L6-v2`` -> ``EN``, ``paraphrase-multilingual-MiniLM-L12-v2`` -> ``MULTI``),
  the deterministic hashed bag of words the Shopping MMLU tests give the harness.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.support.fake_embedder import BY_MODEL_NAME
from tests.support.official_run import (
    Replay,
    error_text,
    official_modules,
    offline_evaluate,
    patched,
    plain,
    quiet,
    run_script,
)

SCRIPTS = {
    "multiple_choice": "hf_multi_choice.py",
    "retrieval": "hf_retrieval.py",
    "ranking": "hf_ranking.py",
    "named_entity_recognition": "hf_ner.py",
    "generation": "hf_generation.py",
}
# The metric functions ``skill_evaluation.py`` calls (bound by its ``from metrics import *``).
SKILL_METRICS = ("accuracy", "hit_rate", "rougel", "sent_transformer", "tp_fp_fn", "ndcg_eval")
SKILL_METRICS_BLEU = ("bleu",)
MODEL_NAME = "vicuna2"  # the scripts' default; it selects no model-specific branch
NEVER_PRINT = str(10**9)  # --print_interval


def data_file(folder: str, name: str) -> str:
    """A task file's path in the release."""
    return f"{folder}/{name}_dataset.{'csv' if folder == 'multiple_choice' else 'json'}"


def _fake_sentence_transformer(name: str, *_: Any, **__: Any) -> Any:
    return BY_MODEL_NAME[name]


class Runner:
    """Runs the official scripts of a checkout on a copy of a release.

    Args:
        mmlu: The checkout.
        release: The extracted release (``multiple_choice/``, ``skills/``, ...).
    """

    def __init__(self, mmlu: Path, release: Path) -> None:
        self.mmlu = mmlu
        self.release = release
        self._stack = contextlib.ExitStack()
        self.root = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
        self.data = self.root / "data"
        shutil.copytree(release, self.data)
        self.work = self.root / "work"
        self.work.mkdir()

    def __enter__(self) -> Runner:
        import sentence_transformers

        self._stack.enter_context(offline_evaluate())
        self._stack.enter_context(
            patched(sentence_transformers, "SentenceTransformer", _fake_sentence_transformer)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    # ----------------------------------------------------------------------- task-wise

    @contextlib.contextmanager
    def _task_utils(self, replay: Replay | None = None) -> Iterator[Any]:
        with official_modules({"utils": self.mmlu / "task_wise_eval" / "utils.py"}) as mods:
            utils = mods["utils"]
            if replay is None:
                yield utils
                return
            with patched(utils, "load_tokenizer_and_model", replay.load):
                yield utils

    def task_prompts(
        self, folder: str, name: str, task_specific: bool = False, letters: bool = False
    ) -> list[str]:
        """Every row's prompt, from the scripts' ``gen_system_prompt`` + ``format_example``."""
        import pandas as pd

        path = self.data / data_file(folder, name)
        mc = folder == "multiple_choice"
        args = argparse.Namespace(
            test_subject=name, use_task_specific_prompt=task_specific, use_letter_choices=letters
        )
        with self._task_utils() as utils, quiet():
            df = pd.read_csv(path) if mc else pd.read_json(path, lines=True)
            if mc:
                return [
                    utils.gen_system_prompt(args, is_multiple_choice=True)
                    + utils.format_example(df, i, is_multi_choice=True, args=args)
                    for i in range(df.shape[0])
                ]
            return [
                utils.gen_system_prompt(args) + utils.format_example(df, i)
                for i in range(df.shape[0])
            ]

    def run_task(
        self,
        folder: str,
        name: str,
        outputs: list[str],
        task_specific: bool = False,
        letters: bool = False,
    ) -> tuple[dict[str, Any], Replay]:
        """One task-wise script on ``outputs``.

        Returns:
            (``{"score", "rows", "ill_format"}`` or ``{"raises"}``, the replay model);
            ``ill_format`` is None for the scripts that count none (entities, generation).
        """
        ns: dict[str, Any] = {}
        states: list[Any] = []
        replay = Replay(outputs, on_generate=lambda _k: states.append(_row_state(folder, ns)))
        argv = ["--test_subject", name, "--model_name", MODEL_NAME, "--print_interval"]
        argv.append(NEVER_PRINT)
        if task_specific:
            argv.append("--use_task_specific_prompt")
        if letters:
            argv.append("--use_letter_choices")
        script = self.mmlu / "task_wise_eval" / SCRIPTS[folder]
        with self._task_utils(replay), quiet():
            ns, err = run_script(script, argv, self.work, ns)
        if err is not None:
            return {"raises": error_text(err)}, replay
        states.append(_row_state(folder, ns))
        n = ns["all_samples"]
        if len(replay.prompts) != n:
            raise RuntimeError(f"{script.name} on {name}: {len(replay.prompts)} rows of {n}")
        return {
            "score": plain(_task_score(folder, ns)),
            "rows": [plain(_row_value(folder, states[i], states[i + 1])) for i in range(n)],
            "ill_format": plain(ns.get("ill_format")),
        }, replay

    # ----------------------------------------------------------------------- skill-wise

    def skill_inference(
        self, skill: str, outputs: list[str], multi_choice_tokens: int = 1
    ) -> Replay:
        """``hf_skill_inference.py`` on ``outputs``: writes the outputs file the evaluation
        reads; the replay holds each row's prompt and ``max_new_tokens``."""
        replay = Replay(outputs)
        argv = ["--filename", skill, "--model_name", MODEL_NAME, "--print_interval"]
        argv += [NEVER_PRINT, "--output_filename", "golden"]
        argv += ["--multi_choice_tokens", str(multi_choice_tokens)]
        script = self.mmlu / "skill_wise_eval" / "hf_skill_inference.py"
        utils_py = self.mmlu / "skill_wise_eval" / "utils.py"
        with (
            official_modules({"utils": utils_py}) as mods,
            patched(mods["utils"], "load_tokenizer_and_model", replay.load),
            quiet(),
        ):
            _, err = run_script(script, argv, self.work)
        if err is not None:
            raise RuntimeError(f"{script.name} on {skill}: {error_text(err)}")
        return replay

    def skill_evaluation(self, skill: str, outputs: list[str]) -> dict[str, Any]:
        """Inference then ``skill_evaluation.py`` on one skill file (under ``skills/``).

        Returns:
            ``{"track_wise", "tasks": {task: score}, "rows": [value or None]}`` (micro-F1
            rows as ``[tp, fp, fn]``; None where the script scores no value), or
            ``{"raises"}``.
        """
        import pandas as pd

        self.skill_inference(skill, outputs)
        ns: dict[str, Any] = {}
        calls: list[tuple[int, Any]] = []
        script = self.mmlu / "skill_wise_eval" / "skill_evaluation.py"
        argv = ["--data_filename", skill, "--output_filename", f"{MODEL_NAME}_golden"]
        argv += ["--print_interval", NEVER_PRINT]
        with (
            official_modules({"metrics": self.mmlu / "skill_wise_eval" / "metrics.py"}) as mods,
            contextlib.ExitStack() as stack,
        ):
            metrics = mods["metrics"]
            for fn in (*SKILL_METRICS, *SKILL_METRICS_BLEU):
                stack.enter_context(
                    patched(metrics, fn, _recording(getattr(metrics, fn), ns, calls))
                )
            stack.enter_context(patched(pd, "read_json", _outputs_as_strings(pd.read_json)))
            stack.enter_context(quiet())
            ns, err = run_script(script, argv, self.work, ns)
        if err is not None:
            return {"raises": error_text(err)}
        rows: list[Any] = [None] * len(outputs)
        for i, value in calls:
            rows[i] = plain(value)
        return {
            "track_wise": plain(ns["track_wise_score"]),
            "tasks": {k: plain(v["overall_metric"]) for k, v in ns["per_task_metrics"].items()},
            "rows": rows,
        }

    def write_skill_subset(self, skill: str, task: str) -> tuple[str, list[int]]:
        """A skill file holding only ``task``'s rows: (its name, the picked row indices)."""
        lines = [
            line
            for line in (self.data / "skills" / f"{skill}.json").read_text("utf-8").split("\n")
            if line.strip()
        ]
        records = [json.loads(line) for line in lines]
        picked = [i for i, r in enumerate(records) if r["task_name"] == task]
        name = f"{skill}--{task}"
        text = "".join(json.dumps(records[i]) + "\n" for i in picked)
        (self.data / "skills" / f"{name}.json").write_text(text, encoding="utf-8")
        return name, picked


def _row_state(folder: str, ns: dict[str, Any]) -> Any:
    if folder == "multiple_choice":
        return ns.get("correct", 0)
    if folder == "retrieval":
        return ns.get("hit")
    if folder == "ranking":
        return ns.get("ndcg_val")
    if folder == "named_entity_recognition":
        return tuple(ns.get(k, 0) for k in ("true_positive", "false_positive", "false_negative"))
    return ns.get("current_score")


def _row_value(folder: str, before: Any, after: Any) -> Any:
    if folder == "multiple_choice":
        return after - before
    if folder == "named_entity_recognition":
        return tuple(a - b for a, b in zip(after, before, strict=True))
    return after


def _task_score(folder: str, ns: dict[str, Any]) -> Any:
    if folder == "multiple_choice":
        return ns["correct"] / ns["all_samples"]
    if folder == "retrieval":
        return ns["total_hit"] / ns["all_samples"]
    if folder == "ranking":
        return ns["total_ndcg"] / ns["all_samples"]
    if folder == "named_entity_recognition":
        return ns["f1"]
    return ns["total_score"] / ns["all_samples"]


def _recording(
    fn: Callable[..., Any], ns: dict[str, Any], calls: list[tuple[int, Any]]
) -> Callable[..., Any]:
    """``fn``, also recording (the script's current row ``i``, the value) of each call."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value = fn(*args, **kwargs)
        calls.append((ns["i"], value))
        return value

    return wrapper


def _outputs_as_strings(read_json: Callable[..., Any]) -> Callable[..., Any]:
    """``pandas.read_json`` that reads the outputs file without dtype inference."""

    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path).startswith("skill_inference_results/"):
            kwargs.setdefault("dtype", False)
        return read_json(path, *args, **kwargs)

    return wrapper
