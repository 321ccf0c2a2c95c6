"""Cheap language checks for cleaning: Japanese script detection and a stop-word vote among
English, German, Spanish, Italian and French. Both err on the side of "unknown"."""

from __future__ import annotations

import re

_JA = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\uff66-\uff9f]")
_LETTER = re.compile(r"[^\W\d_]", re.U)
_WORD = re.compile(r"[^\W\d_]+", re.U)

_STOP = {
    "en": "the and for is of with this it to in on are was from that",
    "de": "der die das und für aus mit ist zu ein eine nicht den dem von auf",
    "es": "el los las y para con del por una es que muy sin se su",
    "it": "il gli e per di con della una è che molto senza si lo",
    "fr": "le les et pour avec du une est que très sans se au aux des",
}
STOPWORDS: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in _STOP.items()}


def has_japanese(text: str) -> bool:
    """True when the text contains kana or CJK ideographs."""
    return bool(_JA.search(text))


def japanese_share(text: str) -> float:
    """Fraction of the letters that are Japanese script."""
    letters = _LETTER.findall(text)
    if not letters:
        return 0.0
    return sum(1 for c in letters if _JA.match(c)) / len(letters)


def guess_language(text: str, min_hits: int = 2) -> str | None:
    """A language code for the text, or None when the evidence is weak.

    Args:
        text: Any text.
        min_hits: Stop-word hits the winning language needs.

    Returns:
        ``ja`` when at least a fifth of the letters are Japanese script; otherwise the
        language with the most stop-word hits when it has ``min_hits`` and beats the runner-up
        by 2 or more; else None.
    """
    if japanese_share(text) >= 0.2:
        return "ja"
    words = [w.lower() for w in _WORD.findall(text)]
    scores = sorted(
        ((sum(w in sw for w in words), lang) for lang, sw in STOPWORDS.items()), reverse=True
    )
    (best, lang), (second, _) = scores[0], scores[1]
    if best >= min_hits and best - second >= 2:
        return lang
    return None
