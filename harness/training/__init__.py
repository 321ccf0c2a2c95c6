"""LoRA supervised fine-tuning: ECInstruct records -> chat-formatted, answer-masked token
sequences -> trl ``SFTTrainer`` (unsloth on a CUDA GPU, transformers + peft anywhere) ->
a merged 16-bit Hugging Face model.

* :mod:`harness.training.data`: reading ECInstruct JSONL, the user-turn format, tokenisation
  with loss on the answer only, length and pad-token checks (no torch import).
* :mod:`harness.training.sft`: backend choice, the training loop with resumable checkpoints,
  the training log and loss curve.
* :mod:`harness.training.merge`: merging the adapter into the base weights.
* :mod:`harness.training.weight_space`: weight-space merges over safetensors shards (the
  weight deltas of several adapters averaged, WiSE-FT interpolation with the base).

Importing this package is light; torch, transformers, trl, peft and unsloth are imported by
the functions that need them.
"""
