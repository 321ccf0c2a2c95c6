"""Tiny models for tests: builders, and a catalogue of named models built once per test run.

:func:`tiny_model` builds a catalogued model the first time it is asked for under a base
directory and returns the same directory afterwards. Tests pass pytest's base temp dir
(``tmp_path_factory.getbasetemp()``), so each model is built once per session and shared by
every test file; a model is built in a scratch directory and renamed into place, so a
directory that exists is complete. Tests must not modify a catalogued model.

The catalogue (:data:`CATALOGUE`):

* ``infer-qwen2`` — the harness's own tiny Qwen2 (:func:`harness.tiny_model.build_tiny_model`:
  hidden 128, intermediate 256, 4 heads, 2 KV heads) with a byte-level BPE tokenizer trained
  on ``tests/data/infer/corpus.txt`` and the ChatML template: for the inference tests and the
  session's vLLM server.
* ``pad-qwen2`` — a random float32 Qwen2 (hidden 64, intermediate 96, 2 layers, vocab 128)
  with tokenizer-side files beside it (:func:`build_qwen2`): a padding source.
* ``pad-qwen2-wide`` — the same with hidden 256, intermediate 320, 1 layer: a padding source
  whose intermediate size needs padding for TP 2 with AWQ group 64.

Tests that need another shape, or that change the source, build their own with
:func:`build_qwen2` under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.spec.schema import TinyModelConfig
from tests.support.paths import INFER_DATA, REPO

LOGIT_TOL = 1e-6
"""Largest logit difference allowed between a model and its padded copy."""

SIDE_FILES_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
)

INFER_TINY = TinyModelConfig(
    hidden_size=128,
    intermediate_size=256,
    num_attention_heads=4,
    num_key_value_heads=2,
    corpus=[str(INFER_DATA / "corpus.txt")],
)
"""The ``infer-qwen2`` model's configuration."""


def build_qwen2(
    path: Path,
    *,
    hidden: int = 64,
    inter: int = 96,
    layers: int = 2,
    heads: int = 4,
    kv: int = 2,
    vocab: int = 128,
    seed: int = 0,
    dtype: str = "float32",
    max_shard_size: str | None = None,
) -> Any:
    """Save a random tiny Qwen2 as safetensors under ``path``, with tokenizer-side files
    (``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``,
    ``special_tokens_map.json``, ``extra/notes.txt``) beside it.

    Returns:
        The model (``Qwen2ForCausalLM``, in eval mode).
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=64,
    )
    model = transformers.Qwen2ForCausalLM(config).to(getattr(torch, dtype)).eval()
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, safe_serialization=True, **kwargs)
    _add_side_files(path)
    return model


def _add_side_files(path: Path) -> None:
    template = SIDE_FILES_CHAT_TEMPLATE
    (path / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {}}))
    (path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    (path / "chat_template.jinja").write_text(template)
    (path / "special_tokens_map.json").write_text("{}")
    (path / "extra").mkdir(exist_ok=True)
    (path / "extra" / "notes.txt").write_text("kept")


def logits(model_dir_or_model: Any, ids: Any) -> Any:
    """Float32 logits of ``ids`` under a model, or a model directory loaded in float32."""
    import torch
    import transformers

    model = model_dir_or_model
    if isinstance(model, Path):
        cls = getattr(
            transformers, json.loads((model / "config.json").read_text())["architectures"][0]
        )
        model = cls.from_pretrained(model, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits.float()


def token_ids(vocab: int, seed: int = 0) -> Any:
    """A fixed random batch of token ids (2 rows of 12) below ``vocab``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (2, 12), generator=g)


def _build_infer_qwen2(out: Path) -> None:
    from harness.tiny_model import build_tiny_model

    build_tiny_model(INFER_TINY, out, REPO)


CATALOGUE: dict[str, Callable[[Path], object]] = {
    "infer-qwen2": _build_infer_qwen2,
    "pad-qwen2": lambda out: build_qwen2(out, hidden=64, inter=96),
    "pad-qwen2-wide": lambda out: build_qwen2(out, hidden=256, inter=320, layers=1, heads=4, kv=2),
}
"""Name -> the function that builds the model into a directory."""


def tiny_model(name: str, base_dir: Path) -> Path:
    """The directory of the catalogued model ``name`` under ``base_dir``, built on first use.

    Args:
        name: A :data:`CATALOGUE` name.
        base_dir: Where the models live (pytest's base temp dir: one build per session).

    Returns:
        ``base_dir / "tiny-models" / name``.

    Raises:
        KeyError: An unknown name; the message lists the known ones.
    """
    if name not in CATALOGUE:
        raise KeyError(f"no tiny model {name!r} (known: {', '.join(sorted(CATALOGUE))})")
    out = base_dir / "tiny-models" / name
    if out.is_dir():
        return out
    tmp = out.with_name(f".{name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    CATALOGUE[name](tmp)
    try:
        os.replace(tmp, out)
    except OSError:  # another process published it first
        if not out.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out
