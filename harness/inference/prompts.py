"""Prompting: named per-task template sets, the non-multiple-choice suffix, the chat template.

A prompt set is a YAML file ``experiments/prompts/<variant>.yaml`` (the spec's
``prompts.variant`` names it, so a sweep can switch variants)::

    name: taskwise                 # must equal the file's stem
    description: One line on what the variant is for.
    templates:                     # per ShopBench task type, or `default`
      default: "{input}"
      multiple-choice: "Reply with the number of the correct option only.\\n\\n{input}"
    tasks:                         # optional, per task name (dev data only: test rows have none)
      task17: "{input}"
    system: "The task is {task_type}."   # optional: the system turn, naming the row's type
    task_type_names:               # optional: how {task_type} is written, per task type
      multiple-choice: multiple-choice question answering
    tidy_user: true                # optional: no spaces before line breaks, stripped

Each template holds the placeholder ``{input}`` exactly once; it is replaced (plain text
substitution, not ``str.format``: prompts contain braces) by the ShopBench prompt. A row's
template is its task name's, else its task type's, else ``default``. A ``system`` template
replaces ``prompts.system`` for every row of the variant; its ``{task_type}`` placeholders
(any number) become the row's (routed) task type, written as ``task_type_names`` says (the
type itself by default).

The user message of a row is built in this order:

1. ``prompts.non_mc_suffix`` (when set) replaces the trailing ``Output:`` of a
   non-multiple-choice ShopBench prompt: when the prompt's last non-blank line is exactly
   ``Output:`` (trailing spaces and newlines ignored), that line becomes the suffix. Prompts
   ending otherwise, e.g. task13's ``Output (answer in three comma-separated numbers):``, are
   left unchanged, as are multiple-choice prompts (they end with ``Answer:``).
2. The variant's template wraps the result; with ``tidy_user`` the spaces and tabs before
   each line break of the result are removed and it is stripped.
3. With ``prompts.chat_template`` the model's chat template renders the system prompt (the
   variant's ``system``, else ``prompts.system``, when set) and the user message, with the
   generation prompt; otherwise the raw text is the system prompt (when set), a blank line,
   and the user message.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.inference.errors import PromptSetError
from harness.shopbench.types import TASK_TYPES

PROMPTS_DIR = Path("experiments") / "prompts"
PLACEHOLDER = "{input}"
TASK_TYPE_PLACEHOLDER = "{task_type}"
DEFAULT_KEY = "default"
_TOP_KEYS = (
    "name",
    "description",
    "templates",
    "tasks",
    "system",
    "tidy_user",
    "task_type_names",
)
_SPACES_BEFORE_NEWLINE = re.compile(r"[ \t]+(?=\r?\n)")
_TRAILING_OUTPUT = re.compile(r"(^|\n)[ \t]*Output:[ \t]*(?:\n[ \t]*)*\Z")


@dataclass(frozen=True)
class PromptSet:
    """One validated prompt variant.

    Attributes:
        name: The variant name (the file's stem).
        description: What the variant is for.
        templates: Task type (or ``default``) -> template.
        tasks: Task name -> template (overrides the task type's).
        path: The file it was read from.
        system: The system-turn template (``{task_type}`` placeholders), or None: the
            spec's ``prompts.system``.
        tidy_user: Remove spaces and tabs before line breaks of the user message, strip it.
        task_type_names: How the system turn's ``{task_type}`` is written, per task type.
    """

    name: str
    description: str
    templates: dict[str, str]
    tasks: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    system: str | None = None
    tidy_user: bool = False
    task_type_names: dict[str, str] = field(default_factory=dict)

    def template_for(self, task_type: str, task_name: str | None = None) -> str:
        """The template of a row: its task name's, its task type's, else ``default``.

        Args:
            task_type: The (routed) ShopBench task type.
            task_name: The task name, when known.

        Returns:
            The template text.
        """
        if task_name is not None and task_name in self.tasks:
            return self.tasks[task_name]
        if task_type in self.templates:
            return self.templates[task_type]
        return self.templates[DEFAULT_KEY]

    def render(self, prompt: str, task_type: str, task_name: str | None = None) -> str:
        """Wrap a prompt with the row's template.

        Args:
            prompt: The ShopBench prompt (after the non-MC suffix).
            task_type: The (routed) task type.
            task_name: The task name, when known.

        Returns:
            The user message (tidied with ``tidy_user``).
        """
        user = self.template_for(task_type, task_name).replace(PLACEHOLDER, prompt)
        return _SPACES_BEFORE_NEWLINE.sub("", user).strip() if self.tidy_user else user

    def system_for(self, task_type: str, default: str | None) -> str | None:
        """The system prompt of a row.

        Args:
            task_type: The (routed) task type.
            default: ``prompts.system``.

        Returns:
            The variant's ``system`` with the task type filled in, else ``default``.
        """
        if self.system is None:
            return default
        name = self.task_type_names.get(task_type, task_type)
        return self.system.replace(TASK_TYPE_PLACEHOLDER, name)


def _key_lines(text: str) -> dict[str, int]:
    """``dotted key -> 1-based line`` of every mapping key of a YAML document."""
    out: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    dotted = f"{prefix}.{k.value}" if prefix else str(k.value)
                    out[dotted] = k.start_mark.line + 1
                    walk(v, dotted)

    with contextlib.suppress(yaml.YAMLError):  # the caller reports invalid YAML
        walk(yaml.compose(text), "")
    return out


def _parse(path: Path) -> PromptSet:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PromptSetError(f"{path}: cannot read prompt set: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PromptSetError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    lines = _key_lines(text)

    def where(key: str) -> str:
        line = lines.get(key)
        return f"{path}:{line}: `{key}`" if line else f"{path}: `{key}`"

    if not isinstance(data, dict):
        raise PromptSetError(f"{path}: a prompt set must be a mapping at the top level")
    problems: list[str] = []
    for key in data:
        if key not in _TOP_KEYS:
            problems.append(f"{where(str(key))}: unknown key (expected one of {_TOP_KEYS})")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{where('name')}: required, a non-empty string")
    elif name != path.stem:
        problems.append(f"{where('name')}: {name!r} does not match the file name {path.stem!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append(f"{where('description')}: must be a string")
    templates = data.get("templates")
    if not isinstance(templates, dict) or not templates:
        problems.append(f"{where('templates')}: required, a mapping of task type -> template")
        templates = {}
    tasks = data.get("tasks") or {}
    if not isinstance(tasks, dict):
        problems.append(f"{where('tasks')}: must be a mapping of task name -> template")
        tasks = {}
    allowed = (DEFAULT_KEY, *TASK_TYPES)
    for key, value in templates.items():
        dotted = f"templates.{key}"
        if key not in allowed:
            problems.append(f"{where(dotted)}: unknown task type (expected one of {allowed})")
        problems += _template_problems(value, where(dotted))
    for key, value in tasks.items():
        problems += _template_problems(value, where(f"tasks.{key}"))
    system = data.get("system")
    if system is not None and (not isinstance(system, str) or not system.strip()):
        problems.append(f"{where('system')}: must be a non-empty string (or absent)")
    tidy_user = data.get("tidy_user", False)
    if not isinstance(tidy_user, bool):
        problems.append(f"{where('tidy_user')}: must be true or false")
    names = data.get("task_type_names") or {}
    if not isinstance(names, dict):
        problems.append(f"{where('task_type_names')}: must be a mapping of task type -> name")
        names = {}
    for key, value in names.items():
        dotted = f"task_type_names.{key}"
        if key not in TASK_TYPES:
            problems.append(f"{where(dotted)}: unknown task type (expected one of {TASK_TYPES})")
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where(dotted)}: must be a non-empty string")
    if templates and DEFAULT_KEY not in templates:
        missing = [t for t in TASK_TYPES if t not in templates]
        if missing:
            problems.append(
                f"{where('templates')}: no `default` template and none for {', '.join(missing)}"
            )
    if problems:
        raise PromptSetError("invalid prompt set:\n" + "\n".join(f"  - {p}" for p in problems))
    return PromptSet(
        name=str(name),
        description=str(description),
        templates={str(k): str(v) for k, v in templates.items()},
        tasks={str(k): str(v) for k, v in tasks.items()},
        path=path,
        system=system if isinstance(system, str) else None,
        tidy_user=tidy_user is True,
        task_type_names={str(k): str(v) for k, v in names.items()},
    )


def _template_problems(value: Any, where: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{where}: a template must be a string"]
    n = value.count(PLACEHOLDER)
    if n != 1:
        return [f"{where}: a template must contain {PLACEHOLDER} exactly once (found {n})"]
    return []


def validate_prompt_set(path: str | Path) -> None:
    """Check a prompt-set file; every problem is reported with ``file:line: `key```.

    Args:
        path: The YAML file.

    Raises:
        PromptSetError: The file is unreadable, not YAML, or malformed.
    """
    _parse(Path(path))


def variant_path(variant: str, root: Path) -> Path:
    """The file of a prompt variant.

    Args:
        variant: The variant name (``prompts.variant``).
        root: The project root.

    Returns:
        ``<root>/experiments/prompts/<variant>.yaml``.
    """
    return root / PROMPTS_DIR / f"{variant}.yaml"


def list_variants(root: Path) -> list[str]:
    """The names of the prompt variants in the registry, sorted."""
    return sorted(p.stem for p in (root / PROMPTS_DIR).glob("*.yaml"))


def load_prompt_set(variant: str, root: Path) -> PromptSet:
    """Load and validate a prompt variant by name.

    Args:
        variant: The variant name (``prompts.variant``).
        root: The project root.

    Returns:
        The prompt set.

    Raises:
        PromptSetError: No such variant (the message lists the known ones), or a bad file.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", variant):
        raise PromptSetError(f"`prompts.variant`: {variant!r} is not a valid variant name")
    path = variant_path(variant, root)
    if not path.is_file():
        known = ", ".join(list_variants(root)) or "none"
        raise PromptSetError(
            f"`prompts.variant`: no prompt set {variant!r} ({path} not found; known: {known})"
        )
    return _parse(path)


def apply_non_mc_suffix(prompt: str, task_type: str, suffix: str | None) -> tuple[str, bool]:
    """Replace the trailing ``Output:`` line of a non-multiple-choice prompt with ``suffix``.

    Args:
        prompt: The ShopBench prompt.
        task_type: The (routed) task type.
        suffix: ``prompts.non_mc_suffix`` (None: no change).

    Returns:
        The prompt and whether it was changed.
    """
    if suffix is None or task_type == "multiple-choice":
        return prompt, False
    m = _TRAILING_OUTPUT.search(prompt)
    if m is None:
        return prompt, False
    return prompt[: m.start()] + m.group(1) + suffix, True


def build_messages(user: str, system: str | None) -> list[dict[str, str]]:
    """Chat messages: the system turn (when set) and the user turn."""
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": user}]


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Render messages with the tokenizer's chat template, ready for the assistant's reply.

    Args:
        tokenizer: A transformers tokenizer with a chat template.
        messages: From :func:`build_messages`.

    Returns:
        The prompt text.

    Raises:
        PromptSetError: The tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise PromptSetError(
            "`prompts.chat_template` is on but the model's tokenizer has no chat template "
            "(set `prompts.chat_template: false` to send raw prompts)"
        )
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
