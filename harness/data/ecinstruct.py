"""ECInstruct format: conversion from ShopBench dev-format rows, import of ECInstruct files,
and conversion back to dev format for evaluation.

An ECInstruct training item (the mix contract) has ``instruction`` (one fixed sentence per
task), ``input``, ``options`` (list, possibly empty), ``output`` (the answer text a model
should produce), ``task`` and ``task_type``. A dev-format row becomes one with its whole
prompt as ``input`` (options stay inside the prompt, as the model sees them at evaluation)
and the answer in the format the parsers read: ``2``; ``6, 9, 15``; the ideal permutation
``1, 4, 3, 2, 5`` of a ranking's relevance weights; ``brand, color``; or the text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.data.clean import ranking_permutation
from harness.data.errors import MixError
from harness.jsonl import numbered_json_lines
from harness.shopbench.types import METRIC_TASK_TYPE, Record

EC_KEYS = ("instruction", "input", "options", "output", "task", "task_type")
SETTING = "IND_Single_Instruction"

DEFAULT_INSTRUCTIONS = {
    "multiple-choice": "Answer the multiple-choice question with the index of the correct option.",
    "retrieval": "Select the items of the numbered list that the question asks for.",
    "ranking": "Rank the numbered items as the question asks.",
    "named_entity_recognition": "Extract the entities of the requested type from the text.",
    "generation": "Answer the question about online shopping.",
}
_LETTER_OPTION = re.compile(r"^\s*\(?([A-Z])\)?\s*[:.)]\s*(.*)$", re.S)


def answer_text(task_type: str, output: Any) -> str:
    """A dev-format answer as the text a model should generate for it."""
    if isinstance(output, str):
        return output
    if task_type == "multiple-choice":
        return str(output)
    if task_type == "ranking":
        return ", ".join(str(i) for i in ranking_permutation(list(output)))
    if task_type == "retrieval":
        return ", ".join(str(i) for i in output)
    if task_type == "named_entity_recognition":
        return ", ".join(str(e) for e in output)
    if isinstance(output, list) and output:
        return str(output[0])
    return str(output)


def record_to_dev(r: Record) -> dict[str, Any]:
    """A loaded ShopBench/EC-Guide record as a dev-format dict."""
    return {
        "input_field": r.input_field,
        "output_field": r.output_field,
        "task_name": r.task_name,
        "task_type": r.task_type,
        "metric": r.metric,
        "is_multiple_choice": r.is_multiple_choice,
        "track": r.track,
    }


def dev_to_ec(row: dict[str, Any], instruction: str | None = None) -> dict[str, Any]:
    """A dev-format row as an ECInstruct item.

    Args:
        row: Dev-format row (``input_field``, ``output_field``, ``task_name``, ``task_type``).
        instruction: The task's fixed instruction sentence (default: one per task type).

    Returns:
        The item with the contract's keys.
    """
    task_type = row["task_type"]
    return {
        "instruction": instruction or DEFAULT_INSTRUCTIONS[task_type],
        "input": row["input_field"],
        "options": [],
        "output": answer_text(task_type, row["output_field"]),
        "task": row["task_name"],
        "task_type": task_type,
    }


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file()
        )
        if not files:
            raise MixError(f"{path}: no .json/.jsonl files")
        return files
    if not path.is_file():
        raise MixError(f"{path}: file not found")
    return [path]


def _rows(path: Path) -> list[tuple[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            return [(f"{path}[{i}]", r) for i, r in enumerate(json.loads(text))]
        except json.JSONDecodeError as e:
            raise MixError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    return [
        (f"{path}:{lineno}", row)
        for lineno, row in numbered_json_lines(text.splitlines(), path, MixError)
    ]


def load_ecinstruct(
    path: str | Path, split: str | None = "train", setting: str | None = SETTING
) -> list[dict[str, Any]]:
    """Read ECInstruct records (JSON array or JSON Lines; a file or a directory of them).

    Rows whose ``split``/``setting`` differ from the filters are skipped (a None filter keeps
    all). The task becomes ``ecinstruct/<task>``; the task type is multiple-choice when the
    record has options, else generation. Only the contract's keys are kept.

    Args:
        path: File or directory.
        split: Split to keep (``train``).
        setting: Setting to keep (``IND_Single_Instruction``).

    Returns:
        The items.

    Raises:
        MixError: Unreadable file or a record without ``instruction``/``output``.
    """
    out = []
    for file in _files(Path(path)):
        for where, row in _rows(file):
            if not isinstance(row, dict):
                raise MixError(f"{where}: expected a JSON object")
            if split is not None and row.get("split", split) != split:
                continue
            if setting is not None and row.get("setting", setting) != setting:
                continue
            for key in ("instruction", "output"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise MixError(f"{where}: missing string field `{key}`")
            options = row.get("options") or []
            if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
                raise MixError(f"{where}: field `options` must be a list of strings or null")
            inp = row.get("input") or ""
            if not isinstance(inp, str):
                raise MixError(f"{where}: field `input` must be a string")
            out.append(
                {
                    "instruction": row["instruction"].strip(),
                    "input": inp,
                    "options": list(options),
                    "output": row["output"],
                    "task": f"ecinstruct/{row.get('task') or file.stem}",
                    "task_type": "multiple-choice" if options else "generation",
                }
            )
    return out


def _option_text(option: str) -> tuple[str | None, str]:
    m = _LETTER_OPTION.match(option)
    return (m.group(1), m.group(2).strip()) if m else (None, option.strip())


def mc_answer_index(item: dict[str, Any]) -> int | None:
    """The option index an item's output names (a digit, a letter, or the option text)."""
    out = item["output"].strip()
    if item["task_type"] != "multiple-choice":
        return None
    options = item.get("options") or []
    if not options:
        m = re.match(r"^\d+", out)
        return int(m.group(0)) if m else None
    parsed = [_option_text(o) for o in options]
    label, text = _option_text(out)
    if label is None and len(out) == 1 and out.isalpha():
        label = out.upper()
    for i, (lab, opt_text) in enumerate(parsed):
        if (label and lab == label) or opt_text == text or options[i].strip() == out:
            return i
    if out.isdigit() and int(out) < len(options):
        return int(out)
    return None


def ec_to_dev(item: dict[str, Any]) -> dict[str, Any] | None:
    """An imported ECInstruct item as a ShopBench dev-format row (for held-out evaluation).

    Multiple-choice items become a prompt with ``0. ...`` options ending ``Answer: `` and the
    option index; others a generation prompt ending ``Output: `` scored with ROUGE-L. None
    when the answer cannot be mapped to an option.
    """
    body = item["instruction"] + ("\n" + item["input"] if item["input"] else "")
    if item["task_type"] == "multiple-choice":
        idx = mc_answer_index(item)
        if idx is None:
            return None
        opts = "".join(f"{i}. {_option_text(o)[1]}\n" for i, o in enumerate(item["options"]))
        prompt, output, metric = f"{body}\n{opts}Answer: ", idx, "accuracy"
    else:
        prompt, output, metric = f"{body}\nOutput: ", item["output"], "rougel"
    return {
        "input_field": prompt,
        "output_field": output,
        "task_name": item["task"],
        "task_type": METRIC_TASK_TYPE[metric],
        "metric": metric,
        "is_multiple_choice": metric == "accuracy",
        "track": None,
    }
