"""The synthesis task catalogue: one generation prompt per task, with its ShopBench facts.

Each task is a Markdown file ``<dir>/<task>.md`` with a YAML front matter::

    ---
    task: task5
    task_type: multiple-choice
    metric: accuracy
    track: amazon-kdd-cup-24-understanding-shopping-concepts
    source: products          # what a request is built from: products, reviews, categories
    batch: 4                  # records per request
    instruction: One fixed sentence describing the task (the ECInstruct instruction).
    ---
    The prompt body, with {{examples}}, {{records}}, {{n}} and {{total}} placeholders.

``_system.md`` holds the system message. :func:`build_messages` fills a task's prompt with
few-shot examples of that task (dev format) and a batch of source records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.data.errors import CatalogueError
from harness.shopbench.types import METRIC_TASK_TYPE, METRICS, TASK_TYPES, TRACKS

DEFAULT_DIR = Path("experiments/prompts/synth")
SOURCES = ("products", "reviews", "categories")
PLACEHOLDERS = ("examples", "records", "n", "total")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", re.S)


@dataclass(frozen=True)
class TaskSpec:
    """One catalogue task.

    Attributes:
        name: Task name (``task5``); the ShopBench ``task_name`` of its examples.
        task_type: ShopBench task type.
        metric: ShopBench metric of its examples.
        track: ShopBench track.
        source: ``products``, ``reviews`` or ``categories``.
        batch: Source records per generation request.
        instruction: The fixed ECInstruct instruction sentence of the task.
        prompt: The prompt body with placeholders.
        path: The file it came from.
    """

    name: str
    task_type: str
    metric: str
    track: str
    source: str
    batch: int
    instruction: str
    prompt: str
    path: Path

    @property
    def is_multiple_choice(self) -> bool:
        """Whether the task is multiple-choice."""
        return self.task_type == "multiple-choice"


@dataclass(frozen=True)
class Catalogue:
    """All tasks of a catalogue directory and its system message."""

    tasks: dict[str, TaskSpec]
    system: str
    directory: Path

    def get(self, name: str) -> TaskSpec:
        """A task by name.

        Raises:
            CatalogueError: Unknown task (the message lists the known ones).
        """
        if name not in self.tasks:
            raise CatalogueError(
                f"unknown task {name!r} in the catalogue {self.directory} "
                f"(known: {', '.join(sorted(self.tasks, key=task_sort_key))})"
            )
        return self.tasks[name]

    def select(self, names: list[str] | None) -> list[TaskSpec]:
        """The named tasks (all, in task order, when ``names`` is empty or None)."""
        if not names:
            return [self.tasks[n] for n in sorted(self.tasks, key=task_sort_key)]
        return [self.get(n) for n in names]


def task_sort_key(name: str) -> tuple[int, str]:
    """Sort ``task2`` before ``task10``."""
    m = re.match(r"^task(\d+)$", name)
    return (int(m.group(1)), name) if m else (10**6, name)


def _parse_task(path: Path) -> TaskSpec:
    text = path.read_text(encoding="utf-8")
    m = _FRONT.match(text)
    if not m:
        raise CatalogueError(f"{path}: expected a `---` YAML front matter block, then the prompt")
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as e:
        raise CatalogueError(f"{path}: invalid front matter: {e}") from None
    if not isinstance(meta, dict):
        raise CatalogueError(f"{path}: the front matter must be a mapping")
    required = ("task", "task_type", "metric", "track", "source", "instruction")
    missing = [k for k in required if not meta.get(k)]
    if missing:
        raise CatalogueError(f"{path}: front matter lacks `{missing[0]}`")
    unknown = sorted(set(meta) - {*required, "batch"})
    if unknown:
        raise CatalogueError(f"{path}: unknown front matter key `{unknown[0]}`")
    if meta["task"] != path.stem:
        raise CatalogueError(f"{path}: `task: {meta['task']}` does not match the file name")
    if meta["task_type"] not in TASK_TYPES:
        raise CatalogueError(f"{path}: unknown task_type {meta['task_type']!r}")
    if meta["metric"] not in METRICS:
        raise CatalogueError(f"{path}: unknown metric {meta['metric']!r}")
    if METRIC_TASK_TYPE[meta["metric"]] != meta["task_type"]:
        raise CatalogueError(
            f"{path}: metric {meta['metric']!r} does not score {meta['task_type']!r} tasks"
        )
    if meta["track"] not in TRACKS:
        raise CatalogueError(f"{path}: unknown track {meta['track']!r}")
    if meta["source"] not in SOURCES:
        raise CatalogueError(f"{path}: `source` must be one of {SOURCES}")
    batch = meta.get("batch", 4)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise CatalogueError(f"{path}: `batch` must be a positive integer")
    body = m.group(2).strip() + "\n"
    bad = sorted({p for p in _PLACEHOLDER.findall(body) if p not in PLACEHOLDERS})
    if bad:
        raise CatalogueError(f"{path}: unknown placeholder {{{{{bad[0]}}}}}")
    for p in ("examples", "records"):
        if f"{{{{{p}}}}}" not in body.replace(" ", ""):
            raise CatalogueError(f"{path}: the prompt lacks the {{{{{p}}}}} placeholder")
    return TaskSpec(
        name=meta["task"],
        task_type=meta["task_type"],
        metric=meta["metric"],
        track=meta["track"],
        source=meta["source"],
        batch=batch,
        instruction=str(meta["instruction"]).strip(),
        prompt=body,
        path=path,
    )


def load_catalogue(directory: str | Path = DEFAULT_DIR) -> Catalogue:
    """Read every ``task*.md`` of a catalogue directory.

    Args:
        directory: The catalogue directory (``experiments/prompts/synth``).

    Returns:
        The catalogue.

    Raises:
        CatalogueError: Missing directory or system message, or a malformed task file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CatalogueError(f"{directory}: task catalogue directory not found")
    system_path = directory / "_system.md"
    if not system_path.is_file():
        raise CatalogueError(f"{system_path}: missing system message")
    tasks = {}
    for path in sorted(directory.glob("*.md")):
        if path.name.startswith("_"):
            continue
        spec = _parse_task(path)
        tasks[spec.name] = spec
    if not tasks:
        raise CatalogueError(f"{directory}: no task files")
    return Catalogue(tasks, system_path.read_text(encoding="utf-8").strip(), directory)


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def build_messages(
    catalogue: Catalogue,
    task: TaskSpec,
    examples: list[dict[str, Any]],
    records: list[dict[str, Any]],
    n: int,
) -> list[dict[str, str]]:
    """The chat messages of one generation request.

    Args:
        catalogue: The catalogue (for the system message).
        task: The task.
        examples: Few-shot examples of the task (``input_field``, ``output_field``).
        records: The batch of source records (each with an ``id``).
        n: Examples wanted per record.

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``.
    """
    shots = "\n".join(
        json.dumps(
            {"input_field": e["input_field"], "output_field": e["output_field"]},
            ensure_ascii=False,
        )
        for e in examples
    )
    recs = "\n".join(json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records)
    user = _fill(
        task.prompt,
        {"examples": shots, "records": recs, "n": str(n), "total": str(n * len(records))},
    )
    return [{"role": "system", "content": catalogue.system}, {"role": "user", "content": user}]


class MalformedContent(ValueError):
    """A reply that is not a JSON array of example objects."""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_reply(content: str) -> list[dict[str, Any]]:
    """The example objects of a generation reply.

    The reply must hold a JSON array of objects (optionally inside a code fence, optionally
    with text around it).

    Args:
        content: The reply text.

    Returns:
        The objects, in reply order.

    Raises:
        MalformedContent: No JSON array of objects could be read.
    """
    text = content.strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        raise MalformedContent("no JSON array in the reply")
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError as e:
        raise MalformedContent(f"invalid JSON: {e.msg}") from None
    if not isinstance(value, list) or not value:
        raise MalformedContent("the reply is not a non-empty JSON array")
    if not all(isinstance(v, dict) for v in value):
        raise MalformedContent("the array holds something other than objects")
    return value
