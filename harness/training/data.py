"""Training data: ECInstruct records -> chat messages -> token ids with answer-only labels.

A record (one JSON object per line of the mix stage's ``train.jsonl``) has ``instruction``,
``input``, ``options`` (list of strings, possibly empty), ``output``, ``task`` and
``task_type``. It becomes a conversation: the spec's system prompt, a user turn laid out the
way ShopBench prompts are (so training matches inference), and the answer as the assistant
turn. Tokens get the label ``-100`` everywhere except the assistant's answer and the
end-of-turn token that follows it: the model learns the answers and to stop, not to recite
prompts.

Nothing here imports torch; the tokenizer is passed in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.errors import HarnessError
from harness.jsonl import numbered_json_lines
from harness.shopbench.types import TASK_TYPES

IGNORE_INDEX = -100
# A letter label on an option, as ECInstruct writes them: "A: red", "(B) blue", "C. green".
_LETTER_LABEL = re.compile(r"^\s*\(?[A-Z]\)?\s*[:.)]\s*")
# The last line of a ShopBench prompt: "Answer: ", "Output:", "Output (answer in ...): ".
_TRAILER_LINE = re.compile(r"^[ \t]*(?:Answer|Output)\b[^\n]*:[ \t]*$")


class FinetuneDataError(HarnessError):
    """Bad training data; the message names ``file:line``."""


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the data pipeline uses."""

    eos_token: str | None
    eos_token_id: int | None
    pad_token: str | None
    pad_token_id: int | None

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        """Render a conversation with the model's chat template."""

    def __call__(self, text: str, **kwargs: Any) -> Any:
        """Tokenise text."""


@dataclass(frozen=True)
class EcRecord:
    """One ECInstruct-format training record.

    Attributes:
        instruction: The task instruction.
        input: The task input (may be empty).
        options: Answer options of a multiple-choice item (empty otherwise).
        output: The reference answer.
        task: Task name (statistics only).
        task_type: ShopBench task type; decides the prompt trailer.
        where: ``file:line`` of the record, for error messages.
    """

    instruction: str
    input: str
    options: tuple[str, ...]
    output: str
    task: str
    task_type: str
    where: str


@dataclass(frozen=True)
class Example:
    """A tokenised training example.

    Attributes:
        input_ids: Prompt and answer token ids.
        labels: ``input_ids`` with every prompt position set to ``-100``.
        where: ``file:line`` of the source record.
    """

    input_ids: list[int]
    labels: list[int]
    where: str

    @property
    def answer_tokens(self) -> int:
        """Number of positions that carry loss."""
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def _str(row: dict[str, Any], key: str, where: str, *, required: bool, nonempty: bool) -> str:
    if key not in row or row[key] is None:
        if required:
            raise FinetuneDataError(f"{where}: record has no `{key}`")
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise FinetuneDataError(
            f"{where}: field `{key}` must be a string, got {type(value).__name__}"
        )
    if nonempty and not value.strip():
        raise FinetuneDataError(f"{where}: field `{key}` is empty")
    return value


def parse_record(row: Any, where: str) -> EcRecord:
    """Validate one decoded JSON object as an ECInstruct record.

    ``instruction``, ``output`` and ``task_type`` are required; a missing ``input`` or
    ``options`` (or ECInstruct's ``""`` for no options) means empty, a missing ``task``
    means the task type.

    Args:
        row: The decoded object.
        where: ``file:line`` for messages.

    Returns:
        The record.

    Raises:
        FinetuneDataError: A missing or ill-typed field.
    """
    if not isinstance(row, dict):
        raise FinetuneDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    instruction = _str(row, "instruction", where, required=True, nonempty=True)
    output = _str(row, "output", where, required=True, nonempty=True)
    task_type = _str(row, "task_type", where, required=True, nonempty=True)
    if task_type not in TASK_TYPES:
        raise FinetuneDataError(
            f"{where}: unknown task_type {task_type!r} (expected one of {', '.join(TASK_TYPES)})"
        )
    text_input = _str(row, "input", where, required=False, nonempty=False)
    task = _str(row, "task", where, required=False, nonempty=False) or task_type
    options = row.get("options")
    if options is None or options == "":
        options = []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise FinetuneDataError(f"{where}: field `options` must be a list of strings")
    return EcRecord(
        instruction=instruction,
        input=text_input,
        options=tuple(options),
        output=output,
        task=task,
        task_type=task_type,
        where=where,
    )


def load_ecinstruct(path: str | Path) -> list[EcRecord]:
    """Read an ECInstruct-format JSONL file.

    Args:
        path: The file (one JSON object per line; blank lines are skipped).

    Returns:
        The records in file order.

    Raises:
        FinetuneDataError: Missing file, invalid JSON, a bad record (named ``file:line``), or
            no records at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FinetuneDataError(f"{path}: training data file not found")
    out: list[EcRecord] = []
    with path.open(encoding="utf-8") as f:
        for lineno, row in numbered_json_lines(f, path, FinetuneDataError):
            out.append(parse_record(row, f"{path}:{lineno}"))
    if not out:
        raise FinetuneDataError(f"{path}: no training records (the dataset is empty)")
    return out


def is_shopbench_prompt(text: str) -> bool:
    """Whether ``text`` is a complete ShopBench prompt: its last non-blank line is a trailer
    such as ``Answer:``, ``Output:`` or ``Output (answer in three comma-separated numbers):``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return bool(lines) and bool(_TRAILER_LINE.match(lines[-1]))


def format_user_turn(
    instruction: str, text_input: str, options: Sequence[str], task_type: str
) -> str:
    """The user turn of a record, laid out like a ShopBench prompt.

    * A record whose ``input`` is already a complete ShopBench prompt (the mix stage stores
      ShopBench-format items so, beside a generic per-task-type instruction) and that has no
      separate options becomes that prompt verbatim: at inference the model sees exactly it.
    * Otherwise the lines are the instruction, the input (when not empty), the options as a
      numbered list (from 0 for multiple-choice, as ShopBench numbers options, from 1 for other
      candidate lists; ECInstruct's letter labels ``A:`` are replaced by the numbers), then the
      trailer ShopBench prompts end with: ``Answer: `` for multiple-choice, ``Output: ``
      otherwise. This is the layout the mix stage gives held-out ECInstruct items for
      evaluation. No trailer is added to text that already ends with one.

    Args:
        instruction: The instruction.
        text_input: The input (may be empty).
        options: Options (may be empty).
        task_type: ShopBench task type.

    Returns:
        The user turn's text.
    """
    if not options and is_shopbench_prompt(text_input):
        return text_input
    lines = [instruction]
    if text_input:
        lines.append(text_input)
    start = 0 if task_type == "multiple-choice" else 1
    lines += [
        f"{i}. {_LETTER_LABEL.sub('', o, count=1).strip()}" for i, o in enumerate(options, start)
    ]
    text = "\n".join(lines)
    if is_shopbench_prompt(text):
        return text
    return text + ("\nAnswer: " if task_type == "multiple-choice" else "\nOutput: ")


def build_messages(record: EcRecord, system: str | None) -> list[dict[str, str]]:
    """The conversation of a record: optional system turn, user turn, assistant answer.

    Args:
        record: The record.
        system: The system prompt (``prompts.system``), or None for no system turn.

    Returns:
        Chat messages (``role``/``content`` dicts).
    """
    messages = [{"role": "system", "content": system}] if system else []
    user = format_user_turn(record.instruction, record.input, record.options, record.task_type)
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": record.output.strip()})
    return messages


def check_special_tokens(tokenizer: ChatTokenizer) -> None:
    """Require an eos token and a pad token distinct from it.

    With pad == eos the collator's padding mask hides every eos from the loss and the model
    never learns to stop.

    Raises:
        HarnessError: No eos, no pad, or pad equal to eos.
    """
    if tokenizer.eos_token_id is None:
        raise HarnessError("the model's tokenizer has no eos token")
    if tokenizer.pad_token_id is None:
        raise HarnessError(
            "the model's tokenizer has no pad token; set one distinct from eos "
            f"({tokenizer.eos_token!r}) in its tokenizer_config.json"
        )
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise HarnessError(
            f"the model's pad token {tokenizer.pad_token!r} is its eos token: fine-tuning would "
            "never learn to stop; set a distinct pad token in its tokenizer_config.json"
        )


def _ids(tokenizer: ChatTokenizer, text: str) -> list[int]:
    # The chat template already renders any BOS text; add no special tokens twice.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_record(record: EcRecord, tokenizer: ChatTokenizer, system: str | None) -> Example:
    """Render a record with the chat template and tokenise it with answer-only labels.

    The prompt (everything up to and including the assistant header) is tokenised alone,
    exactly as at inference, and the answer after it; the answer part must contain eos.

    Args:
        record: The record.
        tokenizer: The model's tokenizer (with a chat template).
        system: The system prompt or None.

    Returns:
        The example.

    Raises:
        FinetuneDataError: The template renders the prompt differently alone and with the
            answer, or the answer part has no eos token.
    """
    messages = build_messages(record, system)
    prompt = tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise FinetuneDataError(
            f"{record.where}: the chat template renders the prompt differently with and "
            "without the answer; cannot mask the prompt from the loss"
        )
    prompt_ids = _ids(tokenizer, prompt)
    answer_ids = _ids(tokenizer, full[len(prompt) :])
    if tokenizer.eos_token_id not in answer_ids:
        raise FinetuneDataError(
            f"{record.where}: the chat template does not end the assistant turn with the eos "
            f"token {tokenizer.eos_token!r}; the model would not learn to stop"
        )
    return Example(
        input_ids=prompt_ids + answer_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
        where=record.where,
    )


def build_examples(
    records: Sequence[EcRecord],
    tokenizer: ChatTokenizer,
    system: str | None,
    max_seq_length: int,
) -> list[Example]:
    """Tokenise every record and enforce the maximum sequence length.

    Over-long records are an error, not silently truncated: a truncated example loses its
    answer or its end-of-turn token.

    Args:
        records: The records.
        tokenizer: The model's tokenizer.
        system: The system prompt or None.
        max_seq_length: ``finetune.max_seq_length``.

    Returns:
        One example per record, in order.

    Raises:
        FinetuneDataError: No records, or a record longer than ``max_seq_length`` tokens (the
            first one is named, with the count of all of them).
        HarnessError: The tokenizer's pad token is missing or equals eos.
    """
    if not records:
        raise FinetuneDataError("no training records (the dataset is empty)")
    check_special_tokens(tokenizer)
    examples = [tokenize_record(r, tokenizer, system) for r in records]
    too_long = [e for e in examples if len(e.input_ids) > max_seq_length]
    if too_long:
        first = too_long[0]
        more = f" ({len(too_long)} records in all)" if len(too_long) > 1 else ""
        raise FinetuneDataError(
            f"{first.where}: record is {len(first.input_ids)} tokens, longer than "
            f"finetune.max_seq_length {max_seq_length}{more}; raise max_seq_length or "
            "shorten the record"
        )
    return examples


def data_stats(records: Sequence[EcRecord], examples: Sequence[Example]) -> dict[str, Any]:
    """Counts for the manifest: records per task and task type, token totals."""
    lengths = [len(e.input_ids) for e in examples]
    return {
        "records": len(records),
        "tasks": dict(sorted(Counter(r.task for r in records).items())),
        "task_types": dict(sorted(Counter(r.task_type for r in records).items())),
        "tokens": sum(lengths),
        "answer_tokens": sum(e.answer_tokens for e in examples),
        "max_tokens": max(lengths, default=0),
        "mean_tokens": sum(lengths) / len(lengths) if lengths else 0.0,
    }
