"""Fine-tuning from files to files: data -> LoRA training -> merged model, log and loss curve.

Layout of the output dir it fills:

* ``model/``: the merged model (sharded safetensors, config, generation config, tokenizer with
  its chat template),
* ``adapter/``: the trained LoRA adapter (``trl`` backend, plain merge),
* ``train_log.jsonl``: one row per logged step (step, loss, learning_rate, grad_norm,
  tokens_per_s, epoch), ``loss_curve.png``.

With a weight-space merge (``finetune.merge.average_seeds``, ``average_checkpoints`` or
``wise_ft_theta``; :mod:`harness.training.weight_space`), on either backend:

* ``adapters/seed-<s>/step-<n>/``: every averaged adapter (one run per seed of
  ``average_seeds``, else one run with ``finetune.seed``; the adapter of each step of
  ``average_checkpoints``, else the final one),
* ``train_log_seed-<s>.jsonl`` and ``loss_curve_seed-<s>.png`` for every run after the first,
* ``weight_deltas.jsonl``: per output tensor, ``max |W_merged − W_base|``.

Checkpoints live in a resume dir the caller names (the stage keeps it beside its temporary
output dir), so a run killed mid-way resumes where its last checkpoint left off (with several
seeds, each run has its own ``seed-<s>/`` there, and a finished run is not trained again); the
dir is removed on success.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.atomic import read_json, write_json, write_jsonl
from harness.errors import HarnessError
from harness.spec.schema import FinetuneConfig, MergeConfig
from harness.training import data as tdata
from harness.training import merge as tmerge
from harness.training import sft
from harness.training import weight_space as wspace

LOG_FILE = "train_log.jsonl"
CURVE_FILE = "loss_curve.png"
DELTAS_FILE = "weight_deltas.jsonl"
RUN_OUTCOME = "run_outcome.json"


@dataclasses.dataclass(frozen=True)
class FinetuneOutcome:
    """What :func:`finetune` reports: flat metrics, JSON-able facts, and the files (relative
    to the output dir) of its series, images and tables."""

    metrics: dict[str, float]
    summary: dict[str, Any]
    series: dict[str, str] = dataclasses.field(default_factory=lambda: {"train": LOG_FILE})
    images: dict[str, str] = dataclasses.field(default_factory=lambda: {"loss_curve": CURVE_FILE})
    tables: dict[str, str] = dataclasses.field(default_factory=dict)


def weight_space_merge(merge: MergeConfig) -> bool:
    """Whether ``finetune.merge`` asks for a weight-space merge (averaging or WiSE-FT)."""
    return bool(merge.average_seeds or merge.average_checkpoints or merge.wise_ft_theta is not None)


def _heldout_records(path: Path | None) -> list[tdata.EcRecord]:
    if path is None or not path.is_file() or not path.read_text(encoding="utf-8").strip():
        return []
    return tdata.load_ecinstruct(path)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def finetune(
    base_dir: Path,
    train_file: Path,
    heldout_file: Path | None,
    cfg: FinetuneConfig,
    out_dir: Path,
    resume_dir: Path,
    *,
    system: str | None,
    trust_remote_code: bool = False,
    callbacks: Sequence[Any] = (),
) -> FinetuneOutcome:
    """LoRA-tune ``base_dir`` on ``train_file`` and write the merged model into ``out_dir``.

    Args:
        base_dir: The base Hugging Face model dir.
        train_file: ECInstruct-format JSON Lines.
        heldout_file: Held-out rows for the evaluation loss (None or empty: none).
        cfg: The ``finetune`` settings.
        out_dir: Where ``model/``, ``adapter/`` (or ``adapters/``), :data:`LOG_FILE` and
            :data:`CURVE_FILE` go (the module docstring has the layout).
        resume_dir: Where checkpoints live (a killed run resumes from it; removed on success).
        system: System prompt of the chat template.
        trust_remote_code: Allow model code from the checkpoint.
        callbacks: Extra ``transformers.TrainerCallback`` objects for the trainer.

    Returns:
        Metrics (first/last loss, held-out loss, throughput; with a weight-space merge also
        ``merge_sources``, ``wise_ft_theta``, ``merge_max_abs_delta`` and per-seed losses),
        facts (``summary.merge``: θ, the averaged sources, the per-tensor delta summary) and
        the files of its series, images and tables.

    Raises:
        HarnessError: Bad training data (named ``file:line``), a tokenizer whose pad token is
            missing or equals eos, a backend that cannot run here, or an averaged checkpoint
            that was not kept.
    """
    backend = sft.select_backend(cfg.backend)
    if backend == "unsloth":
        # unsloth patches transformers, peft and trl: it must be imported before them.
        import unsloth  # noqa: F401

    records = tdata.load_ecinstruct(train_file)
    heldout = _heldout_records(heldout_file)
    tokenizer = sft.load_tokenizer(base_dir, trust_remote_code)
    examples = tdata.build_examples(records, tokenizer, system, cfg.max_seq_length)
    eval_examples = (
        tdata.build_examples(heldout, tokenizer, system, cfg.max_seq_length) if heldout else []
    )

    merged_dir = out_dir / "model"
    if weight_space_merge(cfg.merge):
        return _finetune_weight_space(
            _Job(
                base_dir,
                cfg,
                out_dir,
                resume_dir,
                backend,
                tokenizer,
                examples,
                eval_examples,
                trust_remote_code,
                tuple(callbacks),
            ),
            records,
            heldout,
        )

    model = _load_model(base_dir, cfg, backend, trust_remote_code)
    outcome = sft.train(
        model, tokenizer, examples, eval_examples, cfg, resume_dir, backend, callbacks
    )

    if backend == "unsloth":
        tmerge.merge_unsloth(
            outcome.model, merged_dir, tokenizer, max_shard_size=cfg.merge.max_shard_size
        )
    else:
        adapter_dir = out_dir / "adapter"
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

    _write_curves(outcome, out_dir / LOG_FILE, out_dir / CURVE_FILE)
    metrics = _run_metrics(outcome)
    metrics["records"] = float(len(records))
    summary = {
        "backend": outcome.backend,
        "resumed_from_step": outcome.resumed_from,
        "total_params": outcome.total_params,
        "merged_files": [p.name for p in tmerge.weight_files(merged_dir)],
        "data": tdata.data_stats(records, examples),
        "heldout_records": len(heldout),
    }
    shutil.rmtree(resume_dir, ignore_errors=True)
    return FinetuneOutcome(metrics=metrics, summary=summary)


def _load_model(base_dir: Path, cfg: FinetuneConfig, backend: str, trust: bool) -> Any:
    if backend == "unsloth":
        return sft.load_unsloth_model(base_dir, cfg, trust)
    return sft.load_trl_model(base_dir, cfg, trust)


def _write_curves(outcome: sft.TrainOutcome, log_file: Path, curve_file: Path) -> None:
    sft.write_log(outcome.log_rows, log_file)
    sft.plot_loss_curve(outcome.log_rows, curve_file, f"LoRA SFT ({outcome.backend})")


def _run_metrics(outcome: sft.TrainOutcome) -> dict[str, float]:
    rows = outcome.log_rows
    losses = [r["loss"] for r in rows]
    throughput = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]
    metrics = {
        "loss_first": losses[0] if losses else float("nan"),
        "loss_last": losses[-1] if losses else float("nan"),
        "loss_last10_mean": _mean(losses[-10:]),
        "tokens_per_s": _mean(throughput),
        "train_runtime_s": outcome.train_runtime_s,
        "steps": float(outcome.global_step),
        "trainable_params": float(outcome.trainable_params),
    }
    if outcome.eval_loss is not None:
        metrics["eval_loss"] = outcome.eval_loss
    return metrics


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every run of a weight-space merge shares."""

    base_dir: Path
    cfg: FinetuneConfig
    out_dir: Path
    resume_dir: Path
    backend: str
    tokenizer: Any
    examples: Sequence[tdata.Example]
    eval_examples: Sequence[tdata.Example]
    trust_remote_code: bool
    callbacks: tuple[Any, ...]


def _train_run(job: _Job, seed: int, run_dir: Path) -> tuple[sft.TrainOutcome, dict[int, Path]]:
    """Train (or, when a killed stage already finished it, reuse) the run of one seed.

    Returns:
        The run's outcome (without the model) and the adapter dir of every step
        ``average_checkpoints`` names (else of the final step), all inside ``run_dir``.

    Raises:
        HarnessError: A step of ``finetune.merge.average_checkpoints`` that was not saved.
    """
    done, final, keep_dir = run_dir / RUN_OUTCOME, run_dir / "final", run_dir / "kept"
    steps = list(job.cfg.merge.average_checkpoints or [])
    if done.is_file():
        outcome = sft.TrainOutcome(model=None, **read_json(done))
        print(f"seed {seed}: reusing the finished run in {run_dir}", flush=True)
    else:
        cfg = job.cfg.model_copy(update={"seed": seed})
        model = _load_model(job.base_dir, cfg, job.backend, job.trust_remote_code)
        keep = (sft.keep_adapters_callback(steps, keep_dir),) if steps else ()
        outcome = sft.train(
            model,
            job.tokenizer,
            job.examples,
            job.eval_examples,
            cfg,
            run_dir,
            job.backend,
            (*job.callbacks, *keep),
        )
        tmp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        outcome.model.save_pretrained(str(tmp), safe_serialization=True)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        outcome = dataclasses.replace(outcome, model=None)
        del model
        _free_memory()
        facts = {k: v for k, v in dataclasses.asdict(outcome).items() if k != "model"}
        write_json(done, facts)
    adapters: dict[int, Path] = {}
    for step in steps or [outcome.global_step]:
        if step == outcome.global_step:
            adapters[step] = final
        elif sft.kept_adapter(keep_dir, step).is_dir():
            adapters[step] = sft.kept_adapter(keep_dir, step)
        else:
            raise HarnessError(
                f"`finetune.merge.average_checkpoints`: no adapter was kept at step {step} "
                f"(seed {seed} ran {outcome.global_step} steps, saving every "
                f"`finetune.save_steps` {job.cfg.save_steps})"
            )
    return outcome, adapters


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is always there when training ran
        pass


def _finetune_weight_space(
    job: _Job, records: list[tdata.EcRecord], heldout: list[tdata.EcRecord]
) -> FinetuneOutcome:
    """One LoRA run per seed, then the adapters averaged and WiSE-FT interpolated."""
    merge = job.cfg.merge
    seeds = list(merge.average_seeds or [job.cfg.seed])
    several = len(seeds) > 1
    runs: list[tuple[int, sft.TrainOutcome]] = []
    sources: list[tuple[str, Path]] = []
    for seed in seeds:
        run_dir = job.resume_dir / f"seed-{seed}" if several else job.resume_dir
        outcome, adapters = _train_run(job, seed, run_dir)
        runs.append((seed, outcome))
        for step, src in adapters.items():
            label = f"seed-{seed}/step-{step}"
            dst = job.out_dir / "adapters" / label
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
            sources.append((label, dst))

    series: dict[str, str] = {}
    images: dict[str, str] = {}
    for i, (seed, outcome) in enumerate(runs):
        log, curve, suffix = LOG_FILE, CURVE_FILE, ""
        if i > 0:
            log, curve = f"train_log_seed-{seed}.jsonl", f"loss_curve_seed-{seed}.png"
            suffix = f"_seed{seed}"
        _write_curves(outcome, job.out_dir / log, job.out_dir / curve)
        series[f"train{suffix}"], images[f"loss_curve{suffix}"] = log, curve

    try:
        shard_bytes = wspace.parse_size(merge.max_shard_size)
    except ValueError as e:
        raise HarnessError(f"`finetune.merge.max_shard_size`: {e}") from None
    theta = 1.0 if merge.wise_ft_theta is None else float(merge.wise_ft_theta)
    merged_dir = job.out_dir / "model"
    report = wspace.merge_adapters(
        job.base_dir,
        [path for _, path in sources],
        merged_dir,
        theta=theta,
        dtype=merge.dtype,
        max_shard_bytes=shard_bytes,
    )
    job.tokenizer.save_pretrained(str(merged_dir))
    write_jsonl(job.out_dir / DELTAS_FILE, [t.row() for t in report.tensors])

    first = runs[0][1]
    metrics = _run_metrics(first)
    metrics["records"] = float(len(records))
    metrics["train_runtime_s"] = sum(o.train_runtime_s for _, o in runs)
    deltas = report.summary()
    metrics.update(
        {
            "merge_sources": float(len(sources)),
            "wise_ft_theta": theta,
            "merge_max_abs_delta": float(deltas["max_abs_delta"]),
            "merge_tensors_changed": float(deltas["tensors_changed"]),
        }
    )
    if several:
        for seed, outcome in runs:
            run_metrics = _run_metrics(outcome)
            for key in ("loss_first", "loss_last", "loss_last10_mean", "eval_loss"):
                if key in run_metrics:
                    metrics[f"{key}_seed{seed}"] = run_metrics[key]
    summary: dict[str, Any] = {
        "backend": first.backend,
        "resumed_from_step": first.resumed_from,
        "total_params": first.total_params,
        "merged_files": [p.name for p in tmerge.weight_files(merged_dir)],
        "data": tdata.data_stats(records, job.examples),
        "heldout_records": len(heldout),
        "runs": [
            {
                "seed": seed,
                "steps": o.global_step,
                "resumed_from_step": o.resumed_from,
                "loss_last": o.log_rows[-1]["loss"] if o.log_rows else None,
                "eval_loss": o.eval_loss,
            }
            for seed, o in runs
        ],
        "merge": {
            "method": "weight_space",
            "wise_ft_theta": merge.wise_ft_theta,
            "average_seeds": merge.average_seeds,
            "average_checkpoints": merge.average_checkpoints,
            "sources": [label for label, _ in sources],
            "adapters": [path.relative_to(job.out_dir).as_posix() for _, path in sources],
            "dtype": merge.dtype,
            "deltas": deltas,
        },
    }
    shutil.rmtree(job.resume_dir, ignore_errors=True)
    return FinetuneOutcome(
        metrics=metrics,
        summary=summary,
        series=series,
        images=images,
        tables={"weight_deltas": DELTAS_FILE},
    )
