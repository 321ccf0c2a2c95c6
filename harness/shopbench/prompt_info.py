"""Facts read off a ShopBench prompt: the options of a multiple-choice question, the candidate
items of a ranking/retrieval list, and how many items a retrieval prompt asks for.

They feed constrained decoding, the robust parsers and the answer validators. Every function
is total: a prompt without the fact gives an empty list or None, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# A numbered line: "0. mouse pad", "12. Product", "1.stability", "3) foo" (not "2.5 inch").
_ITEM = re.compile(r"^[ \t]*(\d{1,3})[.)](?!\d)[ \t]*(.*)$", re.M)

_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_NUM = r"(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)"

# "on a scale of 1 to 5", "from 1 to 5", "on a 1 to 5 scale".
_SCALE = (
    re.compile(
        r"\b(?:scale|score|rate|rating|from|between|evaluate)\b[^\n]{0,30}?\b(\d)\s*"
        r"(?:to|and|-|–)\s*(\d{1,2})\b",
        re.I,
    ),
    re.compile(r"\b(\d)\s*(?:to|-|–)\s*(\d{1,2})\s*(?:-\s*point\s*)?scale\b", re.I),
)

# How many items a retrieval prompt asks for.
_K_PATTERNS = (
    re.compile(
        r"\b(?:select|choose|pick|output|return|give|provide|list|identify|recommend)\s+"
        r"(?:only\s+|exactly\s+|the\s+|top\s+|best\s+|most\s+likely\s+)*" + _NUM + r"\b(?!\s*\.\d)",
        re.I,
    ),
    re.compile(r"\b(?:answer|respond)\s+(?:only\s+)?(?:in|with)\s+" + _NUM + r"\b", re.I),
    # Not "a comma separating two numbers" (ranking instructions).
    re.compile(
        r"(?<!separating )(?<!between )(?<!every )\b"
        + _NUM
        + r"\s+(?:comma[- ]separated\s+)?(?:numbers|indices|indexes)\b",
        re.I,
    ),
)

# "Given the following numbered list of 5 products", "a permutation of 1 to 5".
_COUNT_PATTERNS = (
    re.compile(r"\bpermutation\s+of\s+1\s+to\s+(\d{1,2})\b", re.I),
    re.compile(r"\bnumbered\s+list\s+of\s+" + _NUM + r"\b", re.I),
)

# Trailer lines allowed after the last option of a multiple-choice block.
_MC_TRAILER_MAX_LINES = 2
_MC_TRAILER_MAX_CHARS = 40


@dataclass(frozen=True)
class _Item:
    number: int
    text: str
    start: int
    end: int


def _items(prompt: str) -> list[_Item]:
    return [
        _Item(int(m.group(1)), m.group(2).strip(), m.start(), m.end())
        for m in _ITEM.finditer(prompt)
    ]


def _last_block(prompt: str, consecutive: bool) -> list[_Item]:
    """The last run of numbered lines, numbers increasing (by exactly 1 if consecutive)."""
    return list(_last_block_cached(prompt, consecutive))


@lru_cache(maxsize=1024)
def _last_block_cached(prompt: str, consecutive: bool) -> tuple[_Item, ...]:
    # Routing, parsing and validation ask about the same prompt several times.
    items = _items(prompt)
    if not items:
        return ()
    block = [items[-1]]
    for item in reversed(items[:-1]):
        cur = block[0].number
        if cur == 0:
            break
        ok = item.number == cur - 1 if consecutive else item.number < cur
        if not ok:
            break
        block.insert(0, item)
    first = block[0]
    if first.number > 0:
        # The first item can share a line with a header: "Products: 0. Quickie ...".
        line_start = prompt.rfind("\n", 0, first.start - 1) + 1 if first.start > 0 else 0
        prev_line = prompt[line_start : max(first.start - 1, line_start)]
        m = re.search(rf"(?:^|\s){first.number - 1}[.)]\s+(\S.*)$", prev_line)
        if m:
            start = line_start + m.start(1)
            block.insert(0, _Item(first.number - 1, m.group(1).strip(), start, first.start - 1))
    return tuple(block)


def numbered_items(prompt: str) -> dict[int, str]:
    """The last consecutive numbered list of a prompt, number -> item text.

    Args:
        prompt: The prompt text.

    Returns:
        ``{number: text}`` in list order (empty when the prompt has no numbered list).
    """
    return {it.number: it.text for it in _last_block(prompt, consecutive=True)}


_INLINE_OPTION = re.compile(r"(?:^|\s)(\d{1,2})[.)]\s+")


def _inline_block(prompt: str) -> list[_Item]:
    """Options run together on the last line: "... 0. foo 1. bar 2. baz 3. qux"."""
    stripped = prompt.rstrip()
    line_start = stripped.rfind("\n") + 1
    line = stripped[line_start:]
    matches = list(_INLINE_OPTION.finditer(line))
    if len(matches) < 2:
        return []
    # The run of consecutive numbers ending the line, extended backwards as far as it goes.
    start = len(matches) - 1
    while start > 0 and int(matches[start - 1].group(1)) == int(matches[start].group(1)) - 1:
        start -= 1
    run = matches[start:]
    if len(run) < 2 or int(run[0].group(1)) not in (0, 1):
        return []
    items = []
    for j, m in enumerate(run):
        end = run[j + 1].start() if j + 1 < len(run) else len(line)
        text = line[m.end() : end].strip()
        items.append(_Item(int(m.group(1)), text, line_start + m.start(), line_start + end))
    return items


def _scale(prompt: str) -> list[int]:
    for pattern in _SCALE:
        m = pattern.search(prompt)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            # Rating scales start at 0 or 1 ("from an 8 to 10" is a size, not a scale).
            if lo in (0, 1) and 3 <= hi <= 10:
                return list(range(lo, hi + 1))
    return []


def _mc_block(prompt: str) -> list[_Item]:
    block = _last_block(prompt, consecutive=False)
    tail = [ln for ln in prompt[block[-1].end :].splitlines() if ln.strip()] if block else []
    if (
        len(block) < 2
        or len(tail) > _MC_TRAILER_MAX_LINES
        or any(len(ln.strip()) > _MC_TRAILER_MAX_CHARS for ln in tail)
    ):
        block = _inline_block(prompt)
    # A 1-based numbered list inside a rated review is text, not options.
    if block and block[0].number != 0 and _scale(prompt):
        return []
    return block


def mc_option_texts(prompt: str) -> dict[int, str]:
    """Option index -> option text of a multiple-choice prompt (empty for scale questions).

    Args:
        prompt: The prompt text.

    Returns:
        ``{index: text}``; empty when the prompt has no enumerated options.
    """
    return {it.number: it.text for it in _mc_block(prompt)}


def mc_options(prompt: str) -> list[int]:
    """The option indices a multiple-choice prompt offers.

    Enumerated options (``0. ...`` lines ending the prompt, before ``Answer:``) win; otherwise
    a rating scale ("on a scale of 1 to 5") gives its range.

    Args:
        prompt: The prompt text.

    Returns:
        The indices in prompt order, e.g. ``[0, 1, 2, 3]`` or ``[1, 2, 3, 4, 5]``; empty when
        none can be read.
    """
    block = _mc_block(prompt)
    if block:
        return [it.number for it in block]
    return _scale(prompt)


def candidate_indices(prompt: str) -> list[int]:
    """The indices of the candidate items of a ranking/retrieval prompt.

    Args:
        prompt: The prompt text.

    Returns:
        The numbers of the last consecutive numbered list (``[1..15]``, or ``[0..11]`` for
        0-based lists); empty when the prompt has none.
    """
    return [it.number for it in _last_block(prompt, consecutive=True)]


def _num(token: str) -> int:
    return int(token) if token.isdigit() else _WORDS[token.lower()]


def candidate_count(prompt: str) -> int | None:
    """How many candidate items a ranking/retrieval prompt lists.

    Args:
        prompt: The prompt text.

    Returns:
        The number of items of its numbered list; failing that, the count the prompt states
        ("a permutation of 1 to 5", "a numbered list of 15"); None when unknown.
    """
    indices = candidate_indices(prompt)
    if len(indices) >= 2:
        return len(indices)
    for pattern in _COUNT_PATTERNS:
        m = pattern.search(prompt)
        if m:
            return _num(m.group(1))
    return None


def retrieval_k(prompt: str) -> int | None:
    """How many items a retrieval prompt asks to select ("select 3", "three numbers").

    Args:
        prompt: The prompt text.

    Returns:
        The requested count, or None when the prompt does not state one (e.g. "list all
        applicable products").
    """
    block = _last_block(prompt, consecutive=True)
    # Only the instructions count: item texts ("Cardone Select 66-6159") are not requests.
    text = prompt[: block[0].start] + "\n" + prompt[block[-1].end :] if block else prompt
    for pattern in _K_PATTERNS:
        m = pattern.search(text)
        if m:
            k = _num(m.group(1))
            if k > 0:
                return k
    return None
