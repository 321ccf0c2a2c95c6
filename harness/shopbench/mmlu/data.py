"""Shopping MMLU data: the benchmark's ``data.zip`` layout, read the way its evaluation scripts
read it, and the prompts and decoding caps those scripts use.

Layout (at the top of the archive or directory, or under one folder such as ``data/``)::

    multiple_choice/<task>_dataset.csv            question, choices, answer (CSV, header row)
    retrieval/<task>_dataset.json                 JSON Lines
    ranking/<task>_dataset.json                   JSON Lines
    named_entity_recognition/<task>_dataset.json  JSON Lines
    generation/<task>_dataset.json                JSON Lines
    skills/<skill>.json                           JSON Lines, ShopBench development schema

A task's name is its file stem without ``_dataset``; its type is its folder.

How each file is read (the official scripts use pandas; this module reproduces the result):

* Multiple choice: the first row is the header; columns are read **by position**: the
  question is column 0, the choices column 1 (a Python list literal, parsed with
  :func:`ast.literal_eval`, of which the prompt shows the first four), the answer the last
  column (an integer). Blank lines are skipped. A cell pandas reads as missing (``""``,
  ``NA``, ``None``, ...) makes the row malformed.
* Review-rating tasks (a multiple-choice task whose name contains
  ``review_rating_prediction``): the choices column is not read (the question already lists
  the ratings), the answer is the rating itself (1 to 5) rather than a choice index.
* Other task files: JSON Lines (blank lines skipped, one object per line). The columns are
  the keys in order of first appearance over the file (a pandas frame's columns); the
  prompt is the value of the **first** column and the reference the value of the **last**
  (``input_field`` and ``target_field`` in the released files).
* Skill files: JSON Lines with ``input_field``, ``output_field``, ``task_name``,
  ``task_type`` and ``metric`` (other keys, such as ``track``, are kept out).

A malformed row raises :class:`ShoppingMMLUDataError` naming ``file:line`` (``on_error=
"raise"``, the default) or is recorded in :attr:`TaskData.skipped` (``on_error="skip"``);
no row is dropped silently. Predictions are then one per *loaded* row, in file order.

Not reproduced: pandas turns a JSON column whose every value is a numeric string into
numbers (no released column is such a column); the model-specific prompt suffixes and
sampling settings of the official inference scripts.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import difflib
import functools
import hashlib
import io
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from harness.jsonl import json_type, numbered_json_lines
from harness.shopbench.errors import DataError, ScoringError

TASK_TYPE_DIRS = (
    "multiple_choice",
    "retrieval",
    "ranking",
    "named_entity_recognition",
    "generation",
)
SKILLS_DIR = "skills"
DATA_DIRS = (*TASK_TYPE_DIRS, SKILLS_DIR)
TASK_FILE_SUFFIX = "_dataset"

# sha256 of the released data.zip (KL4805/ShoppingMMLU, added in commit 67c8084).
OFFICIAL_DATA_ZIP_SHA256 = "899bad7b0e30d43bac50d4e110120b009ac39a3a84a4ab92f5db25edd3278cef"

REVIEW_RATING_MARKER = "review_rating_prediction"
SKILL_FIELDS = ("input_field", "output_field", "task_name", "task_type", "metric")

# Task-wise metric of each task folder; generation tasks choose theirs by name.
TASK_METRIC = {
    "multiple_choice": "accuracy",
    "retrieval": "hit rate@3",
    "ranking": "ndcg",
    "named_entity_recognition": "micro f1",
}

# The shared system prompt of the skill-wise scripts and of the task-wise scripts by default.
SYSTEM_PROMPT = (
    "You are a helpful online shopping assistant. Please answer the following question about "
    "online shopping and follow the given instructions.\n\n"
)
NUMBER_CHOICES = ("0", "1", "2", "3")
RATING_CHOICES = ("1", "2", "3", "4", "5")
LETTER_CHOICES = ("A", "B", "C", "D")
SHOWN_CHOICES = 4

# Decoding caps (max new tokens; greedy decoding) of the task-wise scripts, by folder.
TASK_MAX_NEW_TOKENS = {
    "multiple_choice": 4,
    "retrieval": 15,
    "ranking": 20,
    "named_entity_recognition": 20,
    "generation": 128,
}
# The skill-wise script: multiple choice gets ``multi_choice_tokens`` (1 by default).
SKILL_MC_MAX_NEW_TOKENS = 1
SKILL_MAX_NEW_TOKENS = 100

# Cells pandas.read_csv reads as missing (its default ``na_values``).
_PANDAS_NA = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")

OnError = Literal["raise", "skip"]


class ShoppingMMLUDataError(DataError, ScoringError):
    """A Shopping MMLU file or row that cannot be read; the message names ``file:line``."""


@dataclass(frozen=True)
class TaskRow:
    """One question.

    Attributes:
        index: Position among the file's loaded rows (0-based); predictions follow it.
        line: 1-based line of the file where the row starts.
        input: The question (multiple choice) or the prompt body (``input_field``).
        target: The reference: the answer index (multiple choice), the rating
            (review rating), or the JSON value of the last column / ``output_field``.
        choices: Multiple choice (not review rating): the parsed choices, as text.
        task_name: Skill rows: the row's ``task_name``.
        task_type: Skill rows: the row's ``task_type`` (``multiple-choice``...).
        metric: Skill rows: the row's ``metric``.
    """

    index: int
    line: int
    input: str
    target: Any
    choices: tuple[str, ...] | None = None
    task_name: str | None = None
    task_type: str | None = None
    metric: str | None = None


@dataclass(frozen=True)
class SkippedRow:
    """A malformed row left out at load time (``on_error="skip"``)."""

    line: int
    reason: str


@dataclass(frozen=True)
class TaskData:
    """One data file: a task file or a skill file.

    Attributes:
        name: Task name (file stem without ``_dataset``) or skill name (file stem).
        folder: One of :data:`TASK_TYPE_DIRS`, or ``skills``.
        source: Where it was read from (``archive.zip:member`` or a path).
        rows: The loaded rows, in file order.
        skipped: Malformed rows left out (only with ``on_error="skip"``).
    """

    name: str
    folder: str
    source: str
    rows: tuple[TaskRow, ...]
    skipped: tuple[SkippedRow, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def is_skill(self) -> bool:
        """True for a ``skills/`` file (rows carry their own task name and metric)."""
        return self.folder == SKILLS_DIR

    @property
    def is_review_rating(self) -> bool:
        """True for a review-rating multiple-choice task (answers are ratings 1-5)."""
        return self.folder == "multiple_choice" and REVIEW_RATING_MARKER in self.name

    @property
    def metric(self) -> str | None:
        """The task-wise metric of a task file (None for a skill file).

        Generation tasks: ``rougel`` when the name contains ``extraction``, else BLEU when
        it contains ``translation`` (``jp-bleu``, the ja-mecab tokenizer, when it also
        contains ``JP``), else the multilingual embedding similarity when it contains
        ``multilingual``, else the English embedding similarity.
        """
        if self.is_skill:
            return None
        if self.folder != "generation":
            return TASK_METRIC[self.folder]
        if "extraction" in self.name:
            return "rougel"
        if "translation" in self.name:
            return "jp-bleu" if "JP" in self.name else "bleu"
        if "multilingual" in self.name:
            return "multilingual-sent-transformer"
        return "sent-transformer"


@dataclass(frozen=True)
class Benchmark:
    """Every data file of a release.

    Attributes:
        source: The archive or directory.
        tasks: Task files, by folder (in :data:`TASK_TYPE_DIRS` order) then name.
        skills: Skill files, by name.
        ignored: Files of the archive that are not data files.
    """

    source: str
    tasks: tuple[TaskData, ...]
    skills: tuple[TaskData, ...]
    ignored: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[TaskData]:
        yield from self.tasks
        yield from self.skills

    def task(self, name: str) -> TaskData:
        """The task file called ``name``.

        Raises:
            ScoringError: No such task.
        """
        for t in self.tasks:
            if t.name == name:
                return t
        raise ScoringError(f"{self.source}: no task {name!r}")

    def skill(self, name: str) -> TaskData:
        """The skill file called ``name``.

        Raises:
            ScoringError: No such skill.
        """
        for s in self.skills:
            if s.name == name:
                return s
        raise ScoringError(f"{self.source}: no skill {name!r}")


# --------------------------------------------------------------------------- file parsers


class _Rows:
    """Collects loaded and skipped rows, raising or recording malformed ones."""

    def __init__(self, source: str, on_error: OnError) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.source = source
        self.on_error = on_error
        self.rows: list[TaskRow] = []
        self.skipped: list[SkippedRow] = []

    def bad(self, line: int, reason: str) -> None:
        if self.on_error == "raise":
            raise ShoppingMMLUDataError(f"{self.source}:{line}: {reason}")
        self.skipped.append(SkippedRow(line, reason))

    def add(self, line: int, **fields: Any) -> None:
        self.rows.append(TaskRow(index=len(self.rows), line=line, **fields))


def _decode(data: bytes, source: str, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise ShoppingMMLUDataError(
            f"{source}: not UTF-8 text ({e.reason} at byte {e.start})"
        ) from e


def _csv_records(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """(start line, fields) of each CSV record; blank lines are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    end = 0
    while True:
        start = end + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ShoppingMMLUDataError(f"{source}:{reader.line_num}: invalid CSV: {e}") from e
        end = reader.line_num
        if fields:
            yield start, fields


def _parse_multiple_choice(text: str, source: str, review: bool, on_error: OnError) -> _Rows:
    out = _Rows(source, on_error)
    records = _csv_records(text, source)
    header = next(records, None)
    if header is None:
        return out
    width = len(header[1])
    needed = 2 if review else 3
    if width < needed:
        what = "question, answer" if review else "question, choices, answer"
        raise ShoppingMMLUDataError(
            f"{source}:{header[0]}: the header has {width} column(s); expected at least "
            f"{needed} ({what}, read by position)"
        )
    for line, fields in records:
        if len(fields) != width:
            out.bad(line, f"{len(fields)} fields, the header has {width}")
            continue
        question, answer = fields[0], fields[-1]
        if question in _PANDAS_NA:
            out.bad(line, f"the question {question!r} reads as missing")
            continue
        if not _INTEGER.fullmatch(answer):
            out.bad(line, f"the answer {answer!r:.60} is not an integer")
            continue
        choices: tuple[str, ...] | None = None
        if not review:
            try:
                literal = ast.literal_eval(fields[1])
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                out.bad(line, f"the choices {fields[1]!r:.60} are not a Python literal")
                continue
            if not isinstance(literal, list | tuple) or len(literal) < SHOWN_CHOICES:
                out.bad(line, f"the choices must be a list of at least {SHOWN_CHOICES} items")
                continue
            choices = tuple(str(c) for c in literal)
        out.add(line, input=question, target=int(answer), choices=choices)
    return out


def _jsonl_objects(text: str, source: str) -> Iterator[tuple[int, Any]]:
    # Split on "\n" only, as pandas does: U+2028 and friends may sit inside a JSON string.
    return numbered_json_lines(text.split("\n"), source, ShoppingMMLUDataError)


def _parse_positional(text: str, source: str, on_error: OnError) -> _Rows:
    out = _Rows(source, on_error)
    objects = list(_jsonl_objects(text, source))
    columns: dict[str, None] = {}
    for lineno, obj in objects:
        if not isinstance(obj, dict):
            raise ShoppingMMLUDataError(
                f"{source}:{lineno}: expected a JSON object, got {json_type(obj)}"
            )
        columns.update(dict.fromkeys(obj))
    names = list(columns)
    if objects and len(names) < 2:
        raise ShoppingMMLUDataError(
            f"{source}: {len(names)} column(s); expected an input and a target column"
        )
    for lineno, obj in objects:
        first, last = names[0], names[-1]
        if obj.get(first) is None:
            out.bad(lineno, f"no value for the first column `{first}` (the prompt)")
        elif not isinstance(obj[first], str):
            out.bad(lineno, f"the prompt `{first}` must be a string")
        elif obj.get(last) is None:
            out.bad(lineno, f"no value for the last column `{last}` (the reference)")
        else:
            out.add(lineno, input=obj[first], target=obj[last])
    return out


def _parse_skill(text: str, source: str, on_error: OnError) -> _Rows:
    out = _Rows(source, on_error)
    for lineno, obj in _jsonl_objects(text, source):
        if not isinstance(obj, dict):
            out.bad(lineno, f"expected a JSON object, got {json_type(obj)}")
            continue
        missing = [k for k in SKILL_FIELDS if obj.get(k) is None]
        wrong = [k for k in SKILL_FIELDS if k != "output_field" and k not in missing]
        wrong = [k for k in wrong if not isinstance(obj[k], str)]
        if missing:
            out.bad(lineno, "missing field(s) " + ", ".join(f"`{k}`" for k in missing))
        elif wrong:
            out.bad(lineno, "field(s) " + ", ".join(f"`{k}`" for k in wrong) + " must be strings")
        else:
            out.add(
                lineno,
                input=obj["input_field"],
                target=obj["output_field"],
                task_name=obj["task_name"],
                task_type=obj["task_type"],
                metric=obj["metric"],
            )
    return out


def _classify(relpath: str) -> tuple[str, str] | None:
    """(folder, name) of a data file given as ``<folder>/<file>``, else None."""
    p = PurePosixPath(relpath)
    if len(p.parts) != 2:
        return None
    folder = p.parts[0]
    if folder == SKILLS_DIR:
        return (folder, p.stem) if p.suffix == ".json" and p.stem else None
    if folder not in TASK_TYPE_DIRS:
        return None
    ext = ".csv" if folder == "multiple_choice" else ".json"
    if p.suffix != ext or not p.stem.endswith(TASK_FILE_SUFFIX):
        return None
    name = p.stem[: -len(TASK_FILE_SUFFIX)]
    return (folder, name) if name else None


def _parse_file(folder: str, name: str, data: bytes, source: str, on_error: OnError) -> TaskData:
    if folder == "multiple_choice":
        # pandas.read_csv drops a UTF-8 byte-order mark; read_json does not.
        text = _decode(data, source, "utf-8-sig")
        review = REVIEW_RATING_MARKER in name
        rows = _parse_multiple_choice(text, source, review, on_error)
    elif folder == SKILLS_DIR:
        rows = _parse_skill(_decode(data, source, "utf-8"), source, on_error)
    else:
        rows = _parse_positional(_decode(data, source, "utf-8"), source, on_error)
    return TaskData(name, folder, source, tuple(rows.rows), tuple(rows.skipped))


def load_task_file(path: str | Path, *, on_error: OnError = "raise") -> TaskData:
    """Load one task or skill file; its folder names its type.

    Args:
        path: ``.../<folder>/<task>_dataset.(csv|json)`` or ``.../skills/<skill>.json``.
        on_error: ``raise`` on a malformed row, or ``skip`` it (recorded in ``skipped``).

    Returns:
        The :class:`TaskData`.

    Raises:
        ShoppingMMLUDataError: Unreadable file, a name outside the layout, malformed row.
    """
    path = Path(path)
    found = _classify(f"{path.parent.name}/{path.name}")
    if found is None:
        raise ShoppingMMLUDataError(
            f"{path}: not a Shopping MMLU data file (expected <type>/<task>_dataset.csv|json "
            f"with <type> one of {', '.join(TASK_TYPE_DIRS)}, or skills/<skill>.json)"
        )
    if not path.is_file():
        raise ShoppingMMLUDataError(f"{path}: file not found")
    return _parse_file(*found, path.read_bytes(), str(path), on_error)


@contextlib.contextmanager
def _members(root: Path) -> Iterator[list[tuple[str, Callable[[], bytes]]]]:
    """(relative path, reader) of every regular file of a zip archive or a directory."""
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file())
        yield [(p.relative_to(root).as_posix(), p.read_bytes) for p in files]
        return
    if not root.is_file():
        raise ShoppingMMLUDataError(f"{root}: no such file or directory")
    try:
        archive = zipfile.ZipFile(root)
    except zipfile.BadZipFile as e:
        raise ShoppingMMLUDataError(f"{root}: not a zip archive ({e})") from e
    with archive:
        yield [
            (info.filename, functools.partial(archive.read, info.filename))
            for info in archive.infolist()
            if not info.is_dir()
        ]


def _is_junk(relpath: str) -> bool:
    parts = PurePosixPath(relpath).parts
    return "__MACOSX" in parts or any(p.startswith(".") for p in parts)


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_benchmark(
    path: str | Path, *, on_error: OnError = "raise", expected_sha256: str | None = None
) -> Benchmark:
    """Load every task and skill file of a release: ``data.zip`` or an extracted directory.

    The data folders may sit at the top or under one common folder (``data/``);
    ``__MACOSX`` entries and hidden files are ignored.

    Args:
        path: The archive or directory.
        on_error: ``raise`` on a malformed row, or ``skip`` it (recorded per file).
        expected_sha256: Check the archive against this digest first (for example
            :data:`OFFICIAL_DATA_ZIP_SHA256`); only for an archive.

    Returns:
        The :class:`Benchmark`.

    Raises:
        ShoppingMMLUDataError: Unreadable archive, digest mismatch, no data files, data
            files under several roots, or a malformed file or row.
    """
    root = Path(path)
    if expected_sha256 is not None:
        if not root.is_file():
            raise ShoppingMMLUDataError(f"{root}: a digest can only be checked for an archive")
        digest = sha256_of(root)
        if digest != expected_sha256.lower():
            raise ShoppingMMLUDataError(
                f"{root}: sha256 {digest} differs from the expected {expected_sha256}"
            )
    label = str(root)
    with _members(root) as members:
        return _load_members(members, label, on_error)


def _load_members(
    members: list[tuple[str, Callable[[], bytes]]], label: str, on_error: OnError
) -> Benchmark:
    found: dict[str, list[tuple[str, str, str, Callable[[], bytes]]]] = {}
    ignored: list[str] = []
    for relpath, read in members:
        if _is_junk(relpath):
            continue
        parts = PurePosixPath(relpath).parts
        hit = None
        if len(parts) >= 2 and parts[-2] in DATA_DIRS:
            hit = _classify("/".join(parts[-2:]))
        if hit is None:
            ignored.append(relpath)
            continue
        prefix = "/".join(parts[:-2])
        found.setdefault(prefix, []).append((relpath, *hit, read))
    if not found:
        raise ShoppingMMLUDataError(
            f"{label}: no Shopping MMLU data files (expected {', '.join(DATA_DIRS)} folders)"
        )
    if len(found) > 1:
        roots = ", ".join(repr(p or ".") for p in sorted(found))
        raise ShoppingMMLUDataError(f"{label}: data folders under several roots: {roots}")
    tasks: list[TaskData] = []
    skills: list[TaskData] = []
    for relpath, folder, name, read in next(iter(found.values())):
        data = _parse_file(folder, name, read(), f"{label}:{relpath}", on_error)
        (skills if folder == SKILLS_DIR else tasks).append(data)
    tasks.sort(key=lambda t: (TASK_TYPE_DIRS.index(t.folder), t.name))
    skills.sort(key=lambda s: s.name)
    return Benchmark(label, tuple(tasks), tuple(skills), tuple(sorted(ignored)))


def file_names(path: str | Path, files: Literal["skills", "tasks"]) -> list[str]:
    """The names of a release's skill or task files, from its listing alone (no file is
    read).

    Args:
        path: The archive or directory.
        files: ``skills`` or ``tasks``.

    Raises:
        ShoppingMMLUDataError: Not an archive or directory.
    """
    names = []
    with _members(Path(path)) as members:
        for relpath, _ in members:
            parts = PurePosixPath(relpath).parts
            if _is_junk(relpath) or len(parts) < 2 or parts[-2] not in DATA_DIRS:
                continue
            hit = _classify("/".join(parts[-2:]))
            if hit is not None and (hit[0] == SKILLS_DIR) == (files == "skills"):
                names.append(hit[1])
    return sorted(names)


def select_files(
    benchmark: Benchmark,
    files: Literal["skills", "tasks"],
    names: Sequence[str] | None = None,
    limit_per_file: int | None = None,
) -> Benchmark:
    """The part of a release an evaluation covers.

    Args:
        benchmark: The release.
        files: ``skills`` (the skill files) or ``tasks`` (the task files); the others are
            left out.
        names: Only these files (every name must exist); None: all of them.
        limit_per_file: Only the first N rows of each file.

    Returns:
        A :class:`Benchmark` with the chosen files only.

    Raises:
        ShoppingMMLUDataError: A name that is no file of the kind, with the closest one.
    """
    chosen = list(benchmark.skills if files == "skills" else benchmark.tasks)
    if names is not None:
        known = [f.name for f in chosen]
        missing = [n for n in names if n not in known]
        if missing:
            kind = "skill" if files == "skills" else "task"
            hints = "; ".join(
                f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                for n in missing
                for close in [difflib.get_close_matches(n, known, n=1)]
            )
            raise ShoppingMMLUDataError(
                f"{benchmark.source}: no {kind} file {hints} (known: {', '.join(known)})"
            )
        wanted = set(names)
        chosen = [f for f in chosen if f.name in wanted]
    if limit_per_file is not None:
        chosen = [replace(f, rows=f.rows[:limit_per_file]) for f in chosen]
    if files == "skills":
        return replace(benchmark, skills=tuple(chosen), tasks=())
    return replace(benchmark, tasks=tuple(chosen), skills=())


def evaluated_files(
    path: str | Path,
    mode: Literal["skill", "task"],
    names: Sequence[str] | None = None,
    limit_per_file: int | None = None,
) -> Benchmark:
    """Load a release and keep what an evaluation covers: the skill files (``skill`` mode)
    or the task files (``task`` mode), see :func:`select_files`."""
    files: Literal["skills", "tasks"] = "skills" if mode == "skill" else "tasks"
    return select_files(load_benchmark(path), files, names, limit_per_file)


# --------------------------------------------------------------------------- prompts


def _subject_words(name: str) -> str:
    # The task-specific prompts spell a task name as words, each after a space ("pt" is
    # "product type"), so the text that follows "of"/"about" starts with two spaces.
    return "".join(" " + ("product type" if w == "pt" else w) for w in name.split("_"))


def build_prompt(
    task: TaskData,
    index: int,
    *,
    task_specific_prompt: bool = False,
    letter_choices: bool = False,
) -> str:
    """The prompt the official scripts give the model for one row.

    Skill files: the system prompt then ``input_field``. Task files: a system prompt (the
    shared one, or with ``task_specific_prompt`` one naming the task), then the input; a
    multiple-choice question is followed by its first four choices (``"\\n0. text"``, or
    ``"\\n(A) text"`` with ``letter_choices``; none for review rating), the letter
    instruction when ``letter_choices``, and ``"\\nAnswer: "``. The model-specific suffixes
    of the official inference scripts are not added.

    Args:
        task: The file.
        index: Row index.
        task_specific_prompt: The task-wise scripts' ``--use_task_specific_prompt``.
        letter_choices: The multiple-choice script's ``--use_letter_choices``.

    Returns:
        The prompt text.
    """
    row = task.rows[index]
    if task.is_skill:
        return SYSTEM_PROMPT + row.input
    if task.folder != "multiple_choice":
        if task_specific_prompt:
            head = (
                f"You are required to perform the task of {_subject_words(task.name)}. "
                "Please follow the given instructions.\n\n"
            )
        else:
            head = SYSTEM_PROMPT
        return head + row.input
    if not task_specific_prompt:
        head = SYSTEM_PROMPT
    elif task.name == REVIEW_RATING_MARKER:
        head = "The following is a review rating prediction question.\n\n"
    else:
        head = f"The following is a multiple choice question about {_subject_words(task.name)}.\n\n"
    body = row.input
    if not task.is_review_rating:
        assert row.choices is not None
        for j in range(SHOWN_CHOICES):
            if letter_choices:
                body += f"\n({LETTER_CHOICES[j]}) {row.choices[j]}"
            else:
                body += f"\n{NUMBER_CHOICES[j]}. {row.choices[j]}"
    if letter_choices:
        body += "\n\nPlease answer the question with a single letter indicating the choice. "
    return head + body + "\nAnswer: "


def max_new_tokens(
    task: TaskData, index: int = 0, *, multi_choice_tokens: int = SKILL_MC_MAX_NEW_TOKENS
) -> int:
    """The official decoding cap (new tokens, greedy) for one row.

    Args:
        task: The file.
        index: Row index (skill files cap each row by its ``task_type``).
        multi_choice_tokens: The skill-wise script's ``--multi_choice_tokens``.

    Returns:
        The cap.
    """
    if task.is_skill:
        mc = task.rows[index].task_type == "multiple-choice"
        return multi_choice_tokens if mc else SKILL_MAX_NEW_TOKENS
    return TASK_MAX_NEW_TOKENS[task.folder]
