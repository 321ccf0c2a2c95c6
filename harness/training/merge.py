"""Merging trained LoRA adapters into the base weights as a sharded safetensors model.

* ``trl`` backend: the base is reloaded in fp32 (on CPU), the saved adapter applied with peft,
  ``merge_and_unload`` folds it in, and the result is cast to ``merge.dtype``. Reloading the
  base (rather than merging into the training copy) also covers a 4-bit training base, whose
  quantised weights must not be what the merged model keeps.
* ``unsloth`` backend: unsloth's ``save_pretrained_merged(..., save_method="merged_16bit")``,
  which dequantises a 4-bit base and merges in 16-bit.

The tokenizer (with its chat template) is saved alongside. Output is written to a temporary
sibling and renamed into place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

SAFETENSORS_INDEX = "model.safetensors.index.json"


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def merge_peft_adapter(
    base_dir: Path,
    adapter_dir: Path,
    out_dir: Path,
    tokenizer: Any,
    *,
    dtype: str,
    max_shard_size: str,
    trust_remote_code: bool = False,
) -> Path:
    """Merge a saved peft adapter into its base model (on CPU) and save it.

    Args:
        base_dir: The base model dir.
        adapter_dir: The saved adapter (``adapter_config.json`` + safetensors).
        out_dir: Destination of the merged model.
        tokenizer: Tokenizer saved alongside.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (``merge.dtype``).
        max_shard_size: ``merge.max_shard_size``, e.g. ``"5GB"``.
        trust_remote_code: ``model.trust_remote_code``.

    Returns:
        ``out_dir``.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(
        str(base_dir),
        dtype=torch.float32,
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
    )
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged = merged.to(getattr(torch, dtype))
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(str(tmp))
    _replace_dir(tmp, out_dir)
    return out_dir


def merge_unsloth(model: Any, out_dir: Path, tokenizer: Any, *, max_shard_size: str) -> Path:
    """Save an unsloth-trained PEFT model merged to 16-bit, with its tokenizer.

    Args:
        model: The trained unsloth PEFT model.
        out_dir: Destination of the merged model.
        tokenizer: Tokenizer saved alongside.
        max_shard_size: ``merge.max_shard_size``.

    Returns:
        ``out_dir``.
    """
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    buffers = out_dir.with_name(f".{out_dir.name}.buffers")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained_merged(
            str(tmp),
            tokenizer,
            save_method="merged_16bit",
            # None pins safetensors (True lets unsloth fall back to pickles on small hosts).
            safe_serialization=None,
            max_shard_size=max_shard_size,
            # Its default is relative to the working directory (the project root).
            temporary_location=str(buffers),
        )
    finally:
        shutil.rmtree(buffers, ignore_errors=True)
    pickles = [p.name for p in tmp.glob("*.bin")]
    if pickles or not list(tmp.glob("*.safetensors")):
        raise HarnessError(f"unsloth's merged save wrote no safetensors ({pickles or 'nothing'})")
    tokenizer.save_pretrained(str(tmp))
    _replace_dir(tmp, out_dir)
    return out_dir


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a saved model, sorted."""
    return sorted(model_dir.glob("*.safetensors"))
