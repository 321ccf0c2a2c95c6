"""The tokenizer class ``AutoTokenizer`` picked, recorded in a sweep's engine pool and loaded
directly by later stages, gives the tokenizer ``AutoTokenizer`` gives, token for token."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

from harness.inference.decoding import load_tokenizer

TEXTS = [
    "Which of these is a phone case? 0. a lid 1. a cover",
    "<|im_start|>user\nhi<|im_end|>",
    "  spaces\tand\nnewlines ünïcödé 家居 123,456",
]


def test_a_recorded_tokenizer_class_loads_the_same_tokenizer(
    tiny_model: Path, tmp_path: Path
) -> None:
    first = load_tokenizer(tiny_model, trust_remote_code=False, class_cache=tmp_path)
    (record,) = tmp_path.glob("tokenizer-*.json")
    recorded = json.loads(record.read_text())
    again = load_tokenizer(tiny_model, trust_remote_code=False, class_cache=tmp_path)
    auto = AutoTokenizer.from_pretrained(tiny_model)
    assert type(first) is type(again) is type(auto)
    assert recorded == {"module": type(auto).__module__, "name": type(auto).__name__}
    for text in TEXTS:
        for special in (True, False):
            ids = auto(text, add_special_tokens=special)["input_ids"]
            assert again(text, add_special_tokens=special)["input_ids"] == ids
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": TEXTS[0]}]
    assert again.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == auto.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert (again.eos_token_id, again.pad_token_id) == (auto.eos_token_id, auto.pad_token_id)
    # Remote code never takes the recorded class.
    load_tokenizer(tiny_model, trust_remote_code=True, class_cache=tmp_path / "remote")
    assert not (tmp_path / "remote").exists()
