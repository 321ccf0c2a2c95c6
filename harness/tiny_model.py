"""A tiny Qwen2-architecture model built locally, for the CPU default and for tests.

Tokenizer: byte-level BPE trained with ``tokenizers`` on the project's own text, ChatML chat
template, eos ``<|im_end|>``, pad ``<|endoftext|>`` (distinct from eos, so fine-tuning learns to
stop). Weights: random init from ``Qwen2Config`` under a seed, saved as safetensors.
Deterministic: the same config and corpus give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from harness.errors import HarnessError
from harness.spec.schema import TinyModelConfig

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXT_SUFFIXES = {".txt", ".md", ".json", ".jsonl", ".csv", ".yaml", ".yml", ".jinja"}

# Qwen2-Instruct's ChatML template (without tool calls).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def corpus_files(paths: list[Path]) -> list[Path]:
    """Text files under the given files/directories, sorted for determinism."""
    files: list[Path] = []
    for p in paths:
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES]
        else:
            raise HarnessError(f"`model.tiny.corpus`: no such file or directory: {p}")
    files = sorted(set(files))
    if not files:
        raise HarnessError("`model.tiny.corpus`: no text files found")
    return files


def _lines(files: list[Path]) -> Iterator[str]:
    for f in files:
        yield from f.read_text(encoding="utf-8", errors="replace").splitlines()


def train_tokenizer(files: list[Path], vocab_size: int, out_dir: Path) -> int:
    """Train a byte-level BPE tokenizer and save it as a transformers fast tokenizer.

    Returns:
        The tokenizer's length (vocabulary incl. special tokens).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_lines(files), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return len(fast)


def build_tiny_model(cfg: TinyModelConfig, out_dir: Path, project_root: Path) -> dict[str, object]:
    """Build the tokenizer and a randomly initialised Qwen2 model into ``out_dir``.

    Args:
        cfg: The tiny-model recipe.
        out_dir: Destination (created).
        project_root: Root against which ``cfg.corpus`` paths resolve.

    Returns:
        Facts about the model (parameter count, vocabulary size).
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    if cfg.hidden_size % cfg.num_attention_heads:
        raise HarnessError(
            f"`model.tiny.hidden_size` {cfg.hidden_size} is not divisible by "
            f"`num_attention_heads` {cfg.num_attention_heads}"
        )
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise HarnessError(
            "`model.tiny.num_attention_heads` must be a multiple of `num_key_value_heads`"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    files = corpus_files(
        [p if p.is_absolute() else project_root / p for p in map(Path, cfg.corpus)]
    )
    n_tokens = train_tokenizer(files, cfg.vocab_size, out_dir)
    vocab = -(-n_tokens // 64) * 64  # round up, as real checkpoints pad the embedding
    tok_cfg = json.loads((out_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    specials = {t: i for i, t in enumerate(SPECIAL_TOKENS)}  # trained first, so ids 0..2
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=specials["<|im_end|>"],
        pad_token_id=specials["<|endoftext|>"],
        use_sliding_window=False,
        rope_theta=10000.0,
    )
    torch.manual_seed(cfg.seed)
    dtype = getattr(torch, cfg.dtype)
    model = Qwen2ForCausalLM(config).to(dtype)
    model.generation_config = GenerationConfig(
        eos_token_id=[specials["<|im_end|>"], specials["<|endoftext|>"]],
        pad_token_id=specials["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": vocab,
        "tokenizer_len": n_tokens,
        "corpus_files": len(files),
        "tokenizer_class": tok_cfg.get("tokenizer_class"),
    }
