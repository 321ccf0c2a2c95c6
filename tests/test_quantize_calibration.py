"""Calibration text: seeded mix samples through the chat template, long texts split (not
dropped), checked against AutoAWQ's own block builder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.quant import QuantizeError
from harness.quant.calibration import (
    build_calibration,
    read_mix_sample,
    split_to_blocks,
    token_blocks,
)
from tests.support import paths
from tests.support.infer import SYSTEM

DATA = paths.DATA / "quant"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    from harness.tiny_model import CHAT_TEMPLATE, train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer([DATA / "corpus.txt"], 512, out)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template == CHAT_TEMPLATE
    return tok


def test_mix_sample_is_seeded(tmp_path: Path) -> None:
    a, ia = read_mix_sample(DATA / "train.jsonl", 10, seed=3)
    b, ib = read_mix_sample(DATA / "train.jsonl", 10, seed=3)
    _, ic = read_mix_sample(DATA / "train.jsonl", 10, seed=4)
    assert a == b and ia == ib and len(set(ia)) == 10
    assert ic != ia
    everything, idx = read_mix_sample(DATA / "train.jsonl", 10_000, seed=0)
    assert sorted(idx) == list(range(len(everything)))


def test_bad_mix_line_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "train.jsonl"
    good = json.dumps({"instruction": "i", "input": "x", "output": "o"})
    f.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(QuantizeError, match=r"train.jsonl:2: invalid JSON"):
        read_mix_sample(f, 2, 0)
    f.write_text(good + "\n" + json.dumps({"instruction": "i"}) + "\n", encoding="utf-8")
    with pytest.raises(QuantizeError, match=r"train.jsonl:2: missing string field"):
        read_mix_sample(f, 2, 0)


def test_mix_is_rendered_through_the_chat_template(tokenizer: Any) -> None:
    calib = build_calibration(
        tokenizer=tokenizer,
        source="mix",
        n_samples=4,
        max_seq_len=512,
        seed=0,
        mix_train=DATA / "train.jsonl",
        file_path=None,
        system=SYSTEM,
    )
    assert calib.rendering == "chat_template" and calib.split_texts == 0
    assert len(calib.texts) == 4
    for t in calib.texts:
        assert t.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
        assert "<|im_start|>assistant\n" in t


def test_long_texts_are_split_not_dropped(tokenizer: Any) -> None:
    from awq.utils.calib_data import get_calib_dataset

    items, _ = read_mix_sample(DATA / "train.jsonl", 48, 0)
    long_item = next(it for it in items if len(it["input"]) > 500)
    text = long_item["input"]
    n_tokens = len(tokenizer.encode(text))
    assert n_tokens > 100
    pieces, n_split = split_to_blocks([text, "short text"], tokenizer, 32)
    assert n_split == 1
    assert pieces[-1] == "short text"
    assert all(len(tokenizer.encode(p.strip())) <= 32 for p in pieces)
    # Nothing is lost: the pieces carry (at least) the text's tokens.
    assert sum(len(tokenizer.encode(p.strip())) for p in pieces[:-1]) >= n_tokens - len(pieces)
    assert "".join(pieces[:-1]).replace(" ", "") == text.replace(" ", "")
    # AutoAWQ drops the long text and is left with a 2-token sample: zero blocks.
    assert get_calib_dataset([text, "short text"], tokenizer, n_samples=2, max_seq_len=32) == []
    blocks = get_calib_dataset(pieces, tokenizer, n_samples=len(pieces), max_seq_len=32)
    assert len(blocks) == sum(len(tokenizer.encode(p.strip())) for p in pieces) // 32 > 0


def test_block_count_matches_autoawq(tokenizer: Any) -> None:
    from awq.utils.calib_data import get_calib_dataset

    calib = build_calibration(
        tokenizer=tokenizer,
        source="mix",
        n_samples=8,
        max_seq_len=48,
        seed=1,
        mix_train=DATA / "train.jsonl",
        file_path=None,
        system=SYSTEM,
    )
    assert calib.split_texts > 0
    blocks = get_calib_dataset(calib.texts, tokenizer, n_samples=len(calib.texts), max_seq_len=48)
    assert len(blocks) == calib.blocks > 0
    assert all(b.shape == (1, 48) for b in blocks)
    # The blocks every other backend is given are AutoAWQ's, token for token.
    assert token_blocks(calib.texts, tokenizer, 48) == [b[0].tolist() for b in blocks]


def test_file_source_and_too_few_tokens(tokenizer: Any, tmp_path: Path) -> None:
    f = tmp_path / "calib.jsonl"
    f.write_text("".join(json.dumps({"text": f"kettle number {i}"}) + "\n" for i in range(3)))
    kw: dict[str, Any] = {
        "tokenizer": tokenizer,
        "source": "file",
        "seed": 0,
        "mix_train": None,
        "file_path": f,
        "system": None,
    }
    calib = build_calibration(n_samples=3, max_seq_len=4, **kw)
    assert calib.rendering == "file" and calib.blocks >= 1
    with pytest.raises(QuantizeError, match=r"fewer than one block of .*max_seq_len` 512"):
        build_calibration(n_samples=3, max_seq_len=512, **kw)
    f.write_text('{"txt": 1}\n')
    with pytest.raises(QuantizeError, match=r"calib.jsonl:1: expected an object with a string"):
        build_calibration(n_samples=3, max_seq_len=4, **kw)


def test_mix_source_without_mix_stage(tokenizer: Any) -> None:
    with pytest.raises(QuantizeError, match="no `mix` stage"):
        build_calibration(
            tokenizer=tokenizer,
            source="mix",
            n_samples=3,
            max_seq_len=32,
            seed=0,
            mix_train=None,
            file_path=None,
            system=None,
        )
