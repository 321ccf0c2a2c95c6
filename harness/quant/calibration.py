"""Calibration text for AWQ, from the spec (never a hub data set).

``source: mix`` takes a seeded sample of the training mix (``train.jsonl`` of the mix stage,
ECInstruct format) and renders each item through the model's chat template, so the
activations AWQ calibrates on look like the ones the model will serve. ``source: file`` reads
a JSONL file with a ``text`` field.

AutoAWQ (``awq.utils.calib_data.get_calib_dataset``) tokenises each text, *drops* every text
longer than ``max_calib_seq_len`` tokens, concatenates the rest and cuts the result into
``total_tokens // max_calib_seq_len`` blocks; with no block left it fails on an empty list
(``torch.cat``). Here long texts are split into pieces that each tokenise to at most the block
length, so nothing is dropped, and a calibration set that yields no block is refused up front.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.jsonl import numbered_json_lines
from harness.quant import QuantizeError

MIX_FIELDS = ("instruction", "input", "output")


@dataclass(frozen=True)
class CalibrationSet:
    """Texts handed to the quantiser and what they amount to.

    Attributes:
        texts: The texts, each tokenising to at most ``max_seq_len`` tokens.
        source_texts: Texts before splitting.
        split_texts: Source texts that were longer than a block and got split.
        tokens: Tokens the quantiser sees (its own tokenisation of every text).
        max_seq_len: Block length.
        rendering: ``chat_template``, ``plain`` (no template) or ``file``.
    """

    texts: list[str]
    source_texts: int
    split_texts: int
    tokens: int
    max_seq_len: int
    rendering: str
    sample: list[int] = field(default_factory=list)

    @property
    def blocks(self) -> int:
        """Blocks of ``max_seq_len`` tokens the quantiser calibrates on."""
        return self.tokens // self.max_seq_len

    def summary(self) -> dict[str, Any]:
        """JSON-able facts for the stage summary."""
        return {
            "texts": len(self.texts),
            "source_texts": self.source_texts,
            "split_texts": self.split_texts,
            "tokens": self.tokens,
            "blocks": self.blocks,
            "max_seq_len": self.max_seq_len,
            "rendering": self.rendering,
        }


def read_mix_sample(path: Path, n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    """A seeded sample of ``n`` items of a mix ``train.jsonl`` (all of them when fewer).

    Args:
        path: The mix's ``train.jsonl``.
        n: Items wanted.
        seed: Sampling seed.

    Returns:
        The items (in sampled order) and their 0-based line indices.

    Raises:
        QuantizeError: Missing file, bad JSON or missing fields (naming file and line).
    """
    if not path.is_file():
        raise QuantizeError(f"calibration: training mix not found: {path}")
    items: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, obj in numbered_json_lines(f, path, QuantizeError):
            missing = [k for k in MIX_FIELDS if not isinstance(obj.get(k), str)]
            if missing:
                raise QuantizeError(f"{path}:{lineno}: missing string field(s) {missing}")
            items.append(obj)
    if not items:
        raise QuantizeError(f"calibration: {path} has no items")
    idx = random.Random(seed).sample(range(len(items)), min(n, len(items)))
    return [items[i] for i in idx], idx


def read_text_file(path: Path, n: int, seed: int) -> list[str]:
    """A seeded sample of ``n`` texts of a JSONL file with a ``text`` field.

    Raises:
        QuantizeError: Missing file, bad JSON, or a line without a string ``text``.
    """
    if not path.is_file():
        raise QuantizeError(f"`quantize.calibration.path`: file not found: {path}")
    texts: list[str] = []
    with path.open(encoding="utf-8") as f:
        for lineno, obj in numbered_json_lines(f, path, QuantizeError):
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise QuantizeError(f"{path}:{lineno}: expected an object with a string `text`")
            texts.append(obj["text"])
    if not texts:
        raise QuantizeError(f"`quantize.calibration.path`: {path} has no texts")
    idx = random.Random(seed).sample(range(len(texts)), min(n, len(texts)))
    return [texts[i] for i in idx]


def mix_messages(item: dict[str, Any], system: str | None) -> list[dict[str, str]]:
    """Chat messages of one ECInstruct item: the prompt as the user turn, the answer after."""
    parts = [item["instruction"].strip(), item["input"].strip()]
    options = item.get("options") or []
    if options:
        parts.append("Options:\n" + "\n".join(str(o) for o in options))
    messages = [{"role": "system", "content": system}] if system else []
    messages += [
        {"role": "user", "content": "\n".join(p for p in parts if p)},
        {"role": "assistant", "content": item["output"].strip()},
    ]
    return messages


def render_mix(
    items: list[dict[str, Any]], tokenizer: Any, system: str | None
) -> tuple[list[str], str]:
    """Render mix items through the chat template (plain text when the tokenizer has none)."""
    if getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template(mix_messages(it, system), tokenize=False) for it in items
        ]
        return texts, "chat_template"
    return ["\n".join(m["content"] for m in mix_messages(it, system)) for it in items], "plain"


def _encode(tokenizer: Any, text: str) -> list[int]:
    # Exactly what AutoAWQ does with each text.
    return list(tokenizer.encode(text.strip()))


def token_blocks(texts: list[str], tokenizer: Any, max_seq_len: int) -> list[list[int]]:
    """The token blocks AutoAWQ calibrates on: every text of at most ``max_seq_len`` tokens
    encoded as AutoAWQ encodes it, all concatenated and cut into whole blocks of
    ``max_seq_len`` (the rest dropped). Other backends get these same blocks.
    """
    ids: list[int] = []
    for text in texts:
        encoded = _encode(tokenizer, text)
        if 0 < len(encoded) <= max_seq_len:
            ids += encoded
    return [ids[i * max_seq_len : (i + 1) * max_seq_len] for i in range(len(ids) // max_seq_len)]


def split_to_blocks(texts: list[str], tokenizer: Any, max_seq_len: int) -> tuple[list[str], int]:
    """Split every text that tokenises to more than ``max_seq_len`` tokens.

    Pieces are cut on token boundaries and re-checked with the tokenizer (a decoded piece can
    re-tokenise differently); a piece that still comes out too long is cut shorter.

    Returns:
        The texts (short ones unchanged) and how many source texts were split.
    """
    overhead = len(_encode(tokenizer, ""))  # BOS and similar, added to every text
    budget = max_seq_len - overhead
    if budget < 1:
        raise QuantizeError(f"`quantize.calibration.max_seq_len` {max_seq_len} is too small")
    out: list[str] = []
    n_split = 0
    for text in texts:
        if not text.strip():
            continue
        if len(_encode(tokenizer, text)) <= max_seq_len:
            out.append(text)
            continue
        n_split += 1
        ids = list(tokenizer.encode(text.strip(), add_special_tokens=False))
        start = 0
        while start < len(ids):
            size = min(budget, len(ids) - start)
            while True:
                piece = tokenizer.decode(ids[start : start + size])
                n = len(_encode(tokenizer, piece))
                if n <= max_seq_len or size == 1:
                    break
                size = max(1, size - (n - max_seq_len))
            if piece.strip() and n <= max_seq_len:
                out.append(piece)
            start += size
    return out, n_split


def build_calibration(
    *,
    tokenizer: Any,
    source: str,
    n_samples: int,
    max_seq_len: int,
    seed: int,
    mix_train: Path | None,
    file_path: Path | None,
    system: str | None,
) -> CalibrationSet:
    """The calibration set a spec asks for.

    Args:
        tokenizer: The source model's tokenizer (the one the quantiser uses).
        source: ``mix`` or ``file``.
        n_samples: Texts sampled.
        max_seq_len: Block length in tokens.
        seed: Sampling seed.
        mix_train: The mix stage's ``train.jsonl`` (``source: mix``).
        file_path: JSONL with ``text`` (``source: file``).
        system: System prompt used when rendering mix items.

    Returns:
        The calibration set.

    Raises:
        QuantizeError: Missing input, or fewer tokens than one block.
    """
    sample: list[int] = []
    if source == "mix":
        if mix_train is None:
            raise QuantizeError(
                "`quantize.calibration.source` is `mix` but the plan has no `mix` stage; add "
                "`mix` to `stages` or use `source: file` with `path`"
            )
        items, sample = read_mix_sample(mix_train, n_samples, seed)
        raw, rendering = render_mix(items, tokenizer, system)
    elif source == "file":
        if file_path is None:
            raise QuantizeError("`quantize.calibration.source` is `file` but `path` is not set")
        raw, rendering = read_text_file(file_path, n_samples, seed), "file"
    else:
        raise QuantizeError(f"`quantize.calibration.source`: unknown source {source!r}")
    texts, n_split = split_to_blocks(raw, tokenizer, max_seq_len)
    tokens = sum(len(_encode(tokenizer, t)) for t in texts)
    calib = CalibrationSet(texts, len(raw), n_split, tokens, max_seq_len, rendering, sample)
    if calib.blocks < 1:
        raise QuantizeError(
            f"calibration text has {tokens} tokens, fewer than one block of "
            f"`quantize.calibration.max_seq_len` {max_seq_len} (AutoAWQ would fail on an empty "
            "list): raise `quantize.calibration.n_samples` or lower `max_seq_len`"
        )
    return calib
