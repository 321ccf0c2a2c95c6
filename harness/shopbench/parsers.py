"""Raw model output -> typed answer, as a registry of parsers keyed by (mode, task type).

``official`` reproduces the starter kit's ``ShoppingBenchTaskParsers`` (parsers version
0.1.1) exactly, including its quirks: the first 5000 characters only; multiple-choice is the
int of the first non-space character (-1 on failure); ranking keeps digits, commas and
spaces, splits on commas, drops ints > 5, keeps five and empties the list on any duplicate;
retrieval keeps the first three ints; NER is a Python list literal of strings or else the
comma-split; generation is stripped.

``robust`` recovers answers that the official parser throws away ("Answer: 2", "**1**",
"The correct option is 3.", "Ranking: 2 > 1 > 3 > 5 > 4", one number per line, code fences,
JSON lists, echoed "Output:" prefixes, quoted generations) and never invents one: output
that asserts several different answers, or none, is unparsed (``ok=False``) and scores 0.
Lists written as Markdown bullets or one item per line (``- a``, ``* a``, ``• a``,
``1. a``, ``1) a``, an optional "Here are the entities:" line first) parse to their items
for NER, ranking and retrieval; a ranking/retrieval item is the number it starts with
("- Product 3: fits best" is 3), the number of its line when the list echoes candidates in
its own order ("3. Hiking boots\n1. Sandals" is 3, 1), or the candidate whose text it
repeats.

Parsers never raise on any string.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.jsonl import json_type
from harness.registry import Registry
from harness.shopbench import prompt_info
from harness.shopbench.errors import DataError, UnknownNameError
from harness.shopbench.types import CONSTRAINED_TYPES, TASK_TYPES

OFFICIAL_PARSERS_VERSION = "0.1.1"
MAX_RESPONSE_CHARACTERS = 5000
MODES = ("official", "robust")

ParsedValue = int | list[int] | list[str] | str

# The declared type of each task type's parsed value, and its "nothing" value.
EMPTY: dict[str, ParsedValue] = {
    "multiple-choice": -1,
    "ranking": [],
    "retrieval": [],
    "named_entity_recognition": [],
    "generation": "",
}


@dataclass(frozen=True)
class ParseResult:
    """A parsed answer.

    Attributes:
        value: int (multiple-choice), list[int] (ranking, retrieval), list[str] (NER) or str
            (generation). Official mode always scores ``value``; robust mode scores 0 when
            ``ok`` is False.
        ok: False when nothing usable was found ("unparsed").
        reason: Why it is unparsed (None when ``ok``).
    """

    value: ParsedValue
    ok: bool
    reason: str | None = None


ParserFn = Callable[[str, str | None], ParseResult]
PARSER_MODES: Registry[dict[str, ParserFn]] = Registry("parser mode", error=UnknownNameError)
"""Parser modes by name (``official``, ``robust``, ...): each maps task types to parsers."""


def register(mode: str, task_type: str) -> Callable[[ParserFn], ParserFn]:
    """Register a parser for (mode, task type) (decorator).

    Args:
        mode: Parser mode name (a new name adds a mode).
        task_type: One of :data:`TASK_TYPES`.

    Returns:
        The decorator.
    """
    if task_type not in TASK_TYPES:
        raise UnknownNameError(f"unknown task type {task_type!r}")

    def deco(fn: ParserFn) -> ParserFn:
        if mode not in PARSER_MODES:
            PARSER_MODES.add(mode, {})
        PARSER_MODES.get(mode)[task_type] = fn
        return fn

    return deco


def registered() -> dict[tuple[str, str], ParserFn]:
    """Every registered parser: (mode, task type) -> parser."""
    return {(m, t): fn for m in PARSER_MODES for t, fn in PARSER_MODES.get(m).items()}


def parse(
    raw: str, task_type: str, mode: str = "official", prompt: str | None = None
) -> ParseResult:
    """Parse one raw model output.

    Args:
        raw: The model's text.
        task_type: One of :data:`TASK_TYPES`.
        mode: ``official`` or ``robust`` (or any registered mode).
        prompt: The prompt, when known; robust mode uses it to read options and candidate
            counts. Official mode ignores it.

    Returns:
        The :class:`ParseResult`.

    Raises:
        UnknownNameError: Unknown mode or task type.
        DataError: ``raw`` is not a string.
    """
    if task_type not in TASK_TYPES:
        raise UnknownNameError(
            f"unknown task type {task_type!r} (expected one of {', '.join(TASK_TYPES)})"
        )
    table = PARSER_MODES.get(mode)
    fn = table.get(task_type)
    if fn is None:
        raise UnknownNameError(f"parser mode `{mode}` has no parser for {task_type!r}")
    if not isinstance(raw, str):
        raise DataError(f"a prediction must be a string, got {json_type(raw)}")
    return fn(raw[:MAX_RESPONSE_CHARACTERS], prompt)


# --------------------------------------------------------------------------- official (0.1.1)


def _official_clean_ints(response: str) -> list[str]:
    cleaned = "".join(c for c in response if c.isnumeric() or c in [",", " "])
    return cleaned.split(",")


@register("official", "multiple-choice")
def official_multiple_choice(response: str, prompt: str | None = None) -> ParseResult:
    """int of the first non-space character; -1 when that fails."""
    try:
        value = int(response.strip()[0])
    except Exception:
        return ParseResult(-1, False, "first character is not a digit")
    return ParseResult(value, True)


@register("official", "ranking")
def official_ranking(response: str, prompt: str | None = None) -> ParseResult:
    """Comma-split ints <= 5, first five, ``[]`` on any duplicate."""
    items: list[int] = []
    for item in _official_clean_ints(response):
        try:
            value = int(item)
        except ValueError:
            continue
        if value <= 5:
            items.append(value)
    items = items[:5]
    if len(items) != len(set(items)):
        return ParseResult([], False, "duplicate items")
    return ParseResult(items, bool(items), None if items else "no comma-separated numbers")


@register("official", "retrieval")
def official_retrieval(response: str, prompt: str | None = None) -> ParseResult:
    """Comma-split ints (no range check, no dedupe), first three."""
    items: list[int] = []
    for item in _official_clean_ints(response):
        try:
            items.append(int(item))
        except ValueError:
            continue
    items = items[:3]
    return ParseResult(items, bool(items), None if items else "no comma-separated numbers")


@register("official", "named_entity_recognition")
def official_ner(response: str, prompt: str | None = None) -> ParseResult:
    """A Python list literal of strings, else the comma-split (stripped, empties dropped)."""
    entities: list[str] | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            literal = ast.literal_eval(response)
        if isinstance(literal, list) and all(isinstance(item, str) for item in literal):
            entities = literal
    except Exception:
        entities = None
    if entities is None:
        entities = [e.strip() for e in response.split(",") if e.strip() != ""]
    return ParseResult(entities, bool(entities), None if entities else "no entities")


@register("official", "generation")
def official_generation(response: str, prompt: str | None = None) -> ParseResult:
    """Stripped text."""
    text = response.strip()
    return ParseResult(text, bool(text), None if text else "empty output")


# --------------------------------------------------------------------------- robust helpers

_FENCE = re.compile(r"```[^\n`]*\n?|```")
_TAG = re.compile(r"</?[A-Za-z_][\w-]*>")
_LABEL = re.compile(
    r"^\s*(?:final\s+answer|correct\s+answer|the\s+answer\s+is|answer|output|response|result"
    r"|ranking|ranked\s+list|rank|entities|entity|selected(?:\s+\w+)?|selection|indices"
    r"|prediction|solution)\s*(?:[:：=-]|\s+is\b)\s*",
    re.I,
)
_QUOTES = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("「", "」"), ("『", "』"), ("«", "»"))


def _strip_labels(text: str) -> str:
    while True:
        m = _LABEL.match(text)
        if not m or m.end() == 0:
            return text.strip()
        text = text[m.end() :]


def _clean(raw: str) -> str:
    """Code fences, tags and bold markers removed; echoed labels dropped."""
    text = _FENCE.sub("\n", raw)
    text = _TAG.sub(" ", text)
    # Replaced by spaces, not deleted: "1**2" must not become the number 12.
    text = text.replace("**", " ").replace("__", " ")
    return _strip_labels(text.strip())


def _strip_quotes(text: str) -> str:
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            inner = text[len(left) : -len(right)]
            if left not in inner and right not in inner:
                return inner.strip()
    return text


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


# --------------------------------------------------------------------------- robust: MC

_MC_WHOLE = re.compile(r"^[^\w]*(\d{1,2})[^\w]*$")
_MC_LEADING = re.compile(r"^[(\[{<]?\s*(\d{1,2})(?![\d.,]\d)\s*(?:[)\]}>.:;/-]|\s|$)")
_MC_ASSERT = (
    re.compile(
        r"\b(?:answer|option|choice|rating|score|selected|select|choose|chose|pick|picked)"
        r"(?:\s+(?:is|would\s+be|should\s+be|will\s+be|=))?\s*[:=-]?\s*"
        r"(?:option\s+|number\s+|choice\s+|no\.?\s*)?[(\[]?(\d{1,2})(?![\d.,]\d)",
        re.I,
    ),
    re.compile(
        r"\b(?:rate|rated|give|gave)\s+(?:it|this(?:\s+\w+)?)\s+(?:an?\s+|a\s+score\s+of\s+)?"
        r"(\d{1,2})(?![\d.,]\d)",
        re.I,
    ),
    re.compile(r"(?<![\d.])(\d)\s*(?:/\s*5|out\s+of\s+5|stars?)\b", re.I),
)
# "1 or 2", "1, 2", "2 and 3": alternatives, each asserted.
_MC_ALTERNATIVES = re.compile(
    r"(?<![\d.])(\d{1,2})\s*(?:,|\bor\b|\band\b|&)\s*(?:option\s+)?(\d{1,2})(?![\d.]\d)", re.I
)


@register("robust", "multiple-choice")
def robust_multiple_choice(response: str, prompt: str | None = None) -> ParseResult:
    """The one option the output asserts; unparsed when it asserts none or several."""
    text = _clean(response)
    if not text:
        return ParseResult(-1, False, "empty output")
    whole = _MC_WHOLE.match(text)
    if whole:
        return ParseResult(int(whole.group(1)), True)
    options = prompt_info.mc_option_texts(prompt) if prompt else {}
    leading = _MC_LEADING.match(text)
    if leading:
        n = int(leading.group(1))
        rest = _norm(text[leading.end() :])
        if n in options and rest and _norm(options[n]).startswith(rest[:200]):
            return ParseResult(n, True)
    asserted = {int(m.group(1)) for p in _MC_ASSERT for m in p.finditer(text)}
    alt = _MC_ALTERNATIVES.match(text)
    if alt:
        asserted |= {int(alt.group(1)), int(alt.group(2))}
    if leading:
        asserted.add(int(leading.group(1)))
    if len(asserted) == 1:
        return ParseResult(asserted.pop(), True)
    if len(asserted) > 1:
        return ParseResult(-1, False, f"several answers asserted: {sorted(asserted)}")
    if options:
        target = _norm(_strip_quotes(text))
        matches = [i for i, t in options.items() if _norm(t) and _norm(t) == target]
        if len(matches) == 1:
            return ParseResult(matches[0], True)
    return ParseResult(-1, False, "no option found")


# --------------------------------------------------------------------------- robust: lists

_DECIMAL = re.compile(r"\d+\.\d+")
_TOKEN = re.compile(r"\d+|[^\W\d_]+")
# Words that may sit inside a list of numbers without breaking it.
_RUN_WORDS = {"and", "then", "product", "products", "item", "items", "no", "number", "rank"}
_RANK_LINE = re.compile(
    r"^\s*(?:rank\s*)?(\d{1,2})\s*[.):-]\s*(?:product|item|candidate)?\s*(?:no\.?\s*|#\s*)?(\d{1,3})\b",
    re.I,
)


def _json_ints(text: str) -> list[int] | None:
    m = re.search(r"\[[^\[\]]*\]", text)
    if not m:
        return None
    try:
        value = json.loads(m.group(0))
    except (json.JSONDecodeError, RecursionError):
        return None
    if isinstance(value, list) and value and all(_is_int(v) for v in value):
        return list(value)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str) and v.strip().isdigit() and v.strip().isascii() for v in value)
    ):
        return [int(v) for v in value]
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _rank_lines(text: str) -> list[int] | None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    pairs = [m for m in (_RANK_LINE.match(ln) for ln in lines) if m]
    if len(pairs) < 2 or len(pairs) != len(lines):
        return None
    ranks = [int(m.group(1)) for m in pairs]
    if ranks != list(range(1, len(ranks) + 1)):
        return None
    return [int(m.group(2)) for m in pairs]


def _number_runs(text: str, ordered: bool) -> list[list[int]] | None:
    """Maximal runs of integers separated only by punctuation, spaces or filler words.

    A number repeated after a filler word starts a new run ("3, 1, 2, 5, 4 -- product 3 is
    best" is a list followed by a mention). Repeated back to back ("3, 3, 1") it is a
    duplicate: None for an ordered list (an inconsistent ranking), skipped for a set.
    """
    text = _DECIMAL.sub(" x ", text)  # "2.5 inch" is a word, not the numbers 2 and 5
    runs: list[list[int]] = [[]]
    after_number = False
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        if tok.isdigit() and tok.isascii() and len(tok) <= 4:
            value = int(tok)
            if value in runs[-1]:
                if after_number:
                    if ordered:
                        return None
                    continue
                runs.append([])
            runs[-1].append(value)
            after_number = True
        elif tok.lower() in _RUN_WORDS:
            after_number = False
        else:
            after_number = False
            if runs[-1]:
                runs.append([])
    return [r for r in runs if r]


# A list item's marker: "- ", "* ", "+ ", "• ", "1. ", "1) ", "(1) " (not "2.5 inch").
_BULLET = re.compile(r"^\s*(?:(?P<sym>[-*+•·‣◦▪–—])|\(?(?P<num>\d{1,2})[.)])\s+(?=\S)")
# The candidate number a list item starts with: "3", "Product 3: fits best", "#3 (best)";
# not a list on one line ("3, 1"), an alternative ("1 or 2"), a range or a decimal.
_ITEM_NUMBER = re.compile(
    r"^(?:(?:product|item|candidate|snippet|passage|document|option|query|result)\s*)?"
    r"(?:no\.?\s*|number\s*|#\s*)?(\d{1,3})(?!\d)(?![.,]\d)"
    r"(?!\s*(?:[,;/>&+~-]|\band\b|\bor\b|\bto\b|\bthen\b)\s*\d)",
    re.I,
)


def _item_number(item: str) -> int | None:
    m = _ITEM_NUMBER.match(item.strip())
    return int(m.group(1)) if m else None


def _candidate_of(item: str, candidates: dict[int, str]) -> int | None:
    """The one candidate whose text the item repeats (case, punctuation and quotes aside)."""
    target = _norm(_strip_quotes(item.strip().rstrip(".")))
    hits = [n for n, text in candidates.items() if target and _norm(text) == target]
    return hits[0] if len(hits) == 1 else None


def _block_numbers(block: list[str], prompt: str | None) -> list[int] | None:
    """The candidate numbers a block of two or more list lines names, or None.

    Symbol bullets and enumerations ("1.", "2.", ...) name the number each item starts
    with, or the candidate whose text it repeats. Numbered lines that are not an
    enumeration ("3. Hiking boots", "1. Sandals") are echoed candidates: their numbers.
    """
    matches = [_BULLET.match(line) for line in block]
    if len(block) < 2 or not all(matches):
        return None
    items = [line[m.end() :].strip() for line, m in zip(block, matches, strict=True) if m]
    markers = [m.group("num") for m in matches if m]
    numbered = all(x is not None for x in markers)
    if not numbered and any(x is not None for x in markers):
        return None
    enumeration = numbered and [int(x) for x in markers if x] == list(range(1, len(block) + 1))
    numbers = [_item_number(item) for item in items]
    if all(n is not None for n in numbers) and (enumeration or not numbered):
        return [n for n in numbers if n is not None]
    if numbered and not enumeration and not all(n is not None for n in numbers):
        return [int(x) for x in markers if x]
    candidates = prompt_info.numbered_items(prompt) if prompt else {}
    mapped = [_candidate_of(item, candidates) for item in items]
    if candidates and all(n is not None for n in mapped):
        return [n for n in mapped if n is not None]
    return None


def _flatten_lists(text: str, prompt: str | None) -> str:
    """Each bulleted or numbered list of candidates as one comma-separated line.

    A whole output of two or more lines that each start with a candidate number ("3 - best
    fit", "1 - good value") is such a list too. Lines that name no candidate are left as
    they are, for :func:`_extract_list` to read.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    found = False
    while i < len(lines):
        if not _BULLET.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and (_BULLET.match(lines[j]) or not lines[j].strip()):
            j += 1
        numbers = _block_numbers([ln for ln in lines[i:j] if ln.strip()], prompt)
        if numbers is None:
            out.extend(lines[i:j])
        else:
            out.append(", ".join(map(str, numbers)))
            found = True
        i = j
    rows = [ln for ln in lines if ln.strip()]
    if rows and rows[0].rstrip().endswith(":"):
        rows = rows[1:]  # "Here is the ranking:"
    if not found and len(rows) >= 2 and not any(_BULLET.match(ln) for ln in rows):
        numbers = [_item_number(ln) for ln in rows]
        if all(n is not None for n in numbers):
            return ", ".join(str(n) for n in numbers)
    return "\n".join(out)


def _extract_list(text: str, ordered: bool) -> tuple[list[int] | None, str | None]:
    """The one list of numbers the text asserts, or (None, reason).

    The first run of two or more numbers is the answer. Another such run makes the output
    ambiguous when it differs (ordered lists) or brings new numbers (sets). Lone numbers
    after a list are explanation.
    """
    found = _json_ints(text)
    if found is not None:
        return found, None
    found = _rank_lines(text)
    if found is not None:
        return found, None
    runs = _number_runs(text, ordered)
    if runs is None:
        return None, "duplicate items"
    if not runs:
        return None, "no numbers"
    long_runs = [r for r in runs if len(r) >= 2]
    if long_runs:
        main = long_runs[0]
        for other in long_runs[1:]:
            differs = other != main[: len(other)] if ordered else not set(other) <= set(main)
            if differs:
                return None, "several different lists asserted"
        return main, None
    singles = {r[0] for r in runs}
    if len(singles) == 1:
        return [singles.pop()], None
    return None, "several separate numbers, no list"


@register("robust", "ranking")
def robust_ranking(response: str, prompt: str | None = None) -> ParseResult:
    """The one list of distinct candidate numbers the output gives, in order."""
    text = _clean(response)
    if not text:
        return ParseResult([], False, "empty output")
    found, reason = _extract_list(_flatten_lists(text, prompt), ordered=True)
    if found is None:
        return ParseResult([], False, reason)
    if len(found) != len(set(found)):
        return ParseResult([], False, "duplicate items")
    n = (prompt_info.candidate_count(prompt) if prompt else None) or 5
    # Numbers that name no candidate are dropped, as the official parser drops ints > 5.
    found = [v for v in found if 1 <= v <= n]
    if not found:
        return ParseResult([], False, f"no item within 1..{n}")
    return ParseResult(found[:n], True)


@register("robust", "retrieval")
def robust_retrieval(response: str, prompt: str | None = None) -> ParseResult:
    """The one list of candidate indices the output gives; first three distinct valid ones."""
    text = _clean(response)
    if not text:
        return ParseResult([], False, "empty output")
    found, reason = _extract_list(_flatten_lists(text, prompt), ordered=False)
    if found is None:
        return ParseResult([], False, reason)
    valid = set(prompt_info.candidate_indices(prompt)) if prompt else set()
    out: list[int] = []
    for v in found:
        if (not valid or v in valid) and v not in out:
            out.append(v)
    if not out:
        return ParseResult([], False, "no index from the candidate list")
    return ParseResult(out[:3], True)


# --------------------------------------------------------------------------- robust: NER

_NONE_ANSWERS = {"", "none", "n/a", "na", "null", "nil", "no entity", "no entities", "[]", "-"}
_ENTITY_TYPE = re.compile(r"entity\s+type\s+'([^'\n]+)'|'([^'\n]{1,40})'", re.I)


def _entity_types(prompt: str | None) -> list[str]:
    if not prompt:
        return []
    return [(m.group(1) or m.group(2)).lower() for m in _ENTITY_TYPE.finditer(prompt)]


def _literal_list(text: str) -> list[str] | None:
    if not (text.startswith("[") and text.endswith("]")):
        return None
    for loader in (json.loads, ast.literal_eval):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = loader(text)
        except Exception:
            continue
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            return [str(v) for v in value]
    return None


@register("robust", "named_entity_recognition")
def robust_ner(response: str, prompt: str | None = None) -> ParseResult:
    """Entities from a list literal, comma list, bullet list or lines; deduplicated."""
    text = _clean(response)
    if text.lower().strip(" .") in _NONE_ANSWERS:
        return ParseResult([], False, "no entities")
    items = _literal_list(text)
    if items is None:
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) > 1 and lines[0].rstrip().endswith(":"):
            lines = lines[1:]  # "Here are the brand entities:"
        bullets = [bool(_BULLET.match(ln)) for ln in lines]
        if len(lines) > 1 and all(
            b or len(ln.split()) <= 6 for b, ln in zip(bullets, lines, strict=True)
        ):
            chosen = lines
        elif bullets and bullets[0]:
            # The leading bullet list; the prose after it is explanation.
            chosen = lines[: bullets.index(False)] if False in bullets else lines
        else:
            chosen = lines[:1]
        items = [_BULLET.sub("", part) for ln in chosen for part in ln.split(",")]
    types = _entity_types(prompt)
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        entity = _strip_quotes(item.strip().strip(";").strip())
        for t in types:
            if entity.lower().startswith(t + ":"):
                entity = entity[len(t) + 1 :].strip()
        if entity and entity.lower() not in seen:
            seen.add(entity.lower())
            out.append(entity)
    if not out:
        return ParseResult([], False, "no entities")
    return ParseResult(out, True)


# --------------------------------------------------------------------------- robust: generation

_GEN_LABEL = re.compile(
    r"^\s*(?:output|answer|response|result|title|translation|translated\s+title|keyphrase"
    r"|keywords|summary|explanation)\s*[:：]\s*",
    re.I,
)


@register("robust", "generation")
def robust_generation(response: str, prompt: str | None = None) -> ParseResult:
    """Text without code fences, echoed labels, a preamble line or surrounding quotes."""
    text = _FENCE.sub("\n", response).strip()
    lines = text.splitlines()
    if len(lines) > 1 and lines[0].rstrip().endswith(":") and len(lines[0]) <= 80:
        text = "\n".join(lines[1:]).strip()
    while True:
        m = _GEN_LABEL.match(text)
        if not m:
            break
        text = text[m.end() :].strip()
    text = _strip_quotes(text)
    return ParseResult(text, bool(text), None if text else "empty output")


def parse_rates(
    task_types: Sequence[str], texts: Sequence[str], mode: str = "official"
) -> dict[str, float]:
    """Share of outputs the parser accepts, per task type and for the constrained types.

    Args:
        task_types: Each output's task type.
        texts: The raw outputs, same order.
        mode: Parser mode.

    Returns:
        ``{task_type: rate}`` plus ``constrained_types`` (MC, ranking and retrieval together)
        and ``all``.
    """
    ok: dict[str, list[bool]] = {}
    for task_type, text in zip(task_types, texts, strict=True):
        ok.setdefault(task_type, []).append(parse(text, task_type, mode).ok)
    out = {t: sum(v) / len(v) for t, v in ok.items()}
    con = [x for t in CONSTRAINED_TYPES for x in ok.get(t, [])]
    if con:
        out["constrained_types"] = sum(con) / len(con)
    every = [x for v in ok.values() for x in v]
    out["all"] = sum(every) / len(every) if every else 0.0
    return out
