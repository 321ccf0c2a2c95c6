"""The fine-tuning stage's work: data -> LoRA training -> merged model, log and loss curve.

Layout of the stage dir it fills:

* ``model/``: the merged model (sharded safetensors, config, generation config, tokenizer with
  its chat template),
* ``adapter/``: the trained LoRA adapter (``trl`` backend),
* ``train_log.jsonl``: one row per logged step (step, loss, learning_rate, grad_norm,
  tokens_per_s, epoch), ``loss_curve.png``.

Checkpoints live in ``<stage root>/.resume-<key>/`` beside the temporary output dir, so a run
killed mid-way resumes where its last checkpoint left off; the dir is removed on success.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.spec.schema import FinetuneConfig
from harness.stages.base import StageContext, StageResult
from harness.stages.model import model_dir
from harness.training import data as tdata
from harness.training import merge as tmerge
from harness.training import sft

TRAIN_FILE = "train.jsonl"
HELDOUT_FILE = "heldout.jsonl"
LOG_FILE = "train_log.jsonl"
CURVE_FILE = "loss_curve.png"


def resume_dir_for(ctx: StageContext) -> Path:
    """Where a stage run keeps its checkpoints: beside its temporary output dir."""
    return ctx.out.parent / f".resume-{ctx.key}"


def _heldout_records(path: Path) -> list[tdata.EcRecord]:
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        return []
    return tdata.load_ecinstruct(path)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def run_finetune(ctx: StageContext, callbacks: Sequence[Any] = ()) -> StageResult:
    """Run the ``finetune`` stage.

    Args:
        ctx: The stage context (reads ``finetune``, ``prompts.system``,
            ``model.trust_remote_code``; inputs ``model`` and ``data``).
        callbacks: Extra ``transformers.TrainerCallback`` objects for the trainer.

    Returns:
        Metrics (first/last loss, held-out loss, throughput), the training log as a series
        and the loss curve as an image.

    Raises:
        HarnessError: Bad training data (named ``file:line``), a tokenizer whose pad token is
            missing or equals eos, or a backend that cannot run here.
    """
    cfg = ctx.section("finetune", FinetuneConfig)
    system = ctx.value("prompts.system")
    trust_remote_code = bool(ctx.value("model.trust_remote_code"))
    backend = sft.select_backend(cfg.backend)
    if backend == "unsloth":
        # unsloth patches transformers, peft and trl: it must be imported before them.
        import unsloth  # noqa: F401

    base_dir = model_dir(ctx.inputs["model"])
    data_dir = ctx.inputs["data"]
    records = tdata.load_ecinstruct(data_dir / TRAIN_FILE)
    heldout = _heldout_records(data_dir / HELDOUT_FILE)
    tokenizer = sft.load_tokenizer(base_dir, trust_remote_code)
    examples = tdata.build_examples(records, tokenizer, system, cfg.max_seq_length)
    eval_examples = (
        tdata.build_examples(heldout, tokenizer, system, cfg.max_seq_length) if heldout else []
    )

    if backend == "unsloth":
        model = sft.load_unsloth_model(base_dir, cfg, trust_remote_code)
    else:
        model = sft.load_trl_model(base_dir, cfg, trust_remote_code)
    resume_dir = resume_dir_for(ctx)
    outcome = sft.train(
        model, tokenizer, examples, eval_examples, cfg, resume_dir, backend, callbacks
    )

    merged_dir = ctx.out / "model"
    if backend == "unsloth":
        tmerge.merge_unsloth(
            outcome.model, merged_dir, tokenizer, max_shard_size=cfg.merge.max_shard_size
        )
    else:
        adapter_dir = ctx.out / "adapter"
        outcome.model.save_pretrained(str(adapter_dir), safe_serialization=True)
        # Free the training copy before the merge loads the base again.
        outcome = dataclasses.replace(outcome, model=None)
        del model
        gc.collect()
        tmerge.merge_peft_adapter(
            base_dir,
            adapter_dir,
            merged_dir,
            tokenizer,
            dtype=cfg.merge.dtype,
            max_shard_size=cfg.merge.max_shard_size,
            trust_remote_code=trust_remote_code,
        )

    rows = outcome.log_rows
    sft.write_log(rows, ctx.out / LOG_FILE)
    sft.plot_loss_curve(rows, ctx.out / CURVE_FILE, f"LoRA SFT ({outcome.backend})")
    losses = [r["loss"] for r in rows]
    throughput = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]
    metrics = {
        "loss_first": losses[0] if losses else float("nan"),
        "loss_last": losses[-1] if losses else float("nan"),
        "loss_last10_mean": _mean(losses[-10:]),
        "tokens_per_s": _mean(throughput),
        "train_runtime_s": outcome.train_runtime_s,
        "steps": float(outcome.global_step),
        "records": float(len(records)),
        "trainable_params": float(outcome.trainable_params),
    }
    if outcome.eval_loss is not None:
        metrics["eval_loss"] = outcome.eval_loss
    summary = {
        "backend": outcome.backend,
        "resumed_from_step": outcome.resumed_from,
        "total_params": outcome.total_params,
        "merged_files": [p.name for p in tmerge.weight_files(merged_dir)],
        "data": tdata.data_stats(records, examples),
        "heldout_records": len(heldout),
    }
    shutil.rmtree(resume_dir, ignore_errors=True)
    return StageResult(
        metrics=metrics,
        series={"train": LOG_FILE},
        images={"loss_curve": CURVE_FILE},
        summary=summary,
    )
