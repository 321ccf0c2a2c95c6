"""LoRA SFT with trl's ``SFTTrainer``: backend choice, model loading, resumable training.

Backends:

* ``unsloth`` (CUDA only): ``FastLanguageModel`` on a 4-bit or 16-bit base, LoRA from the spec,
  unsloth's gradient checkpointing; merged with unsloth's 16-bit merged save.
* ``trl``: transformers + peft (fp32 on CPU, bf16/fp16 on GPU, optional bitsandbytes 4-bit
  base on GPU); merged with peft's ``merge_and_unload``.
* ``auto``: ``unsloth`` when a CUDA GPU is visible and unsloth is installed, else ``trl``.

Both feed the trainer the same pre-tokenised examples (:mod:`harness.training.data`), so the
prompt layout and the answer-only loss do not depend on the backend.

Checkpoints (adapter, optimizer, scheduler, RNG states, trainer state) go to a *resume dir*
outside the stage's temporary output dir, every ``save_steps`` steps. A run that was killed
restarts from the newest complete checkpoint there and, on CPU with the same seed, ends with
the same weights as an uninterrupted run (the trainer restores the RNG states and skips the
batches already seen). The caller removes the resume dir once the stage has succeeded.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.spec.schema import FinetuneConfig
from harness.training.data import Example

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
LOG_KEYS = ("step", "loss", "learning_rate", "grad_norm", "tokens_per_s", "epoch")


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())


def unsloth_installed() -> bool:
    """Whether unsloth is importable (checked without importing it: it fails without a GPU)."""
    return importlib.util.find_spec("unsloth") is not None


def select_backend(requested: str) -> str:
    """The backend that runs: ``unsloth`` or ``trl``.

    Args:
        requested: ``finetune.backend`` (``auto``, ``unsloth`` or ``trl``).

    Returns:
        The chosen backend.

    Raises:
        HarnessError: ``unsloth`` was asked for without a CUDA GPU or without unsloth.
    """
    if requested == "trl":
        return "trl"
    cuda, have_unsloth = cuda_available(), unsloth_installed()
    if requested == "unsloth":
        if not cuda:
            raise HarnessError(
                "`finetune.backend: unsloth` needs a CUDA GPU and none is visible; "
                "use `backend: trl` or `backend: auto`"
            )
        if not have_unsloth:
            raise HarnessError(
                "`finetune.backend: unsloth`: unsloth is not installed in this environment "
                "(the GPU `train` environment, harness/envs/train-gpu.txt, provides it)"
            )
        return "unsloth"
    if requested != "auto":
        raise HarnessError(f"`finetune.backend`: unknown backend {requested!r}")
    return "unsloth" if cuda and have_unsloth else "trl"


def latest_checkpoint(resume_dir: Path) -> Path | None:
    """The newest complete checkpoint in a resume dir, or None.

    The trainer writes ``trainer_state.json`` last, so a checkpoint without a readable one
    was cut off mid-write; such checkpoints are deleted.

    Args:
        resume_dir: The trainer's output dir.

    Returns:
        The checkpoint dir to resume from, if any.
    """
    if not resume_dir.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for d in resume_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        try:
            step = int(d.name[len(CHECKPOINT_PREFIX) :])
            state = json.loads((d / TRAINER_STATE).read_text(encoding="utf-8"))
            complete = state.get("global_step") == step
        except (ValueError, OSError, json.JSONDecodeError):
            complete = False
        if complete:
            found.append((step, d))
        else:
            shutil.rmtree(d, ignore_errors=True)
    return max(found)[1] if found else None


def load_tokenizer(model_dir: Path, trust_remote_code: bool) -> Any:
    """The base model's tokenizer (with its chat template)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    if not getattr(tok, "chat_template", None):
        raise HarnessError(f"{model_dir}: the tokenizer has no chat template")
    return tok


def _lora_kwargs(cfg: FinetuneConfig) -> dict[str, Any]:
    return {
        "r": cfg.lora.rank,
        "lora_alpha": cfg.lora.alpha,
        "lora_dropout": cfg.lora.dropout,
        "target_modules": list(cfg.lora.target_modules),
        "bias": "none",
        # Fully trained extra modules (e.g. lm_head of a randomly initialised tiny model).
        "modules_to_save": list(getattr(cfg.lora, "modules_to_save", None) or []) or None,
    }


def load_trl_model(model_dir: Path, cfg: FinetuneConfig, trust_remote_code: bool) -> Any:
    """The base model with fresh LoRA adapters (transformers + peft).

    fp32 on CPU; bf16 (fp16 without bf16 support) on GPU, where ``load_in_4bit`` loads the
    base through bitsandbytes (QLoRA).

    Raises:
        HarnessError: ``load_in_4bit`` without a CUDA GPU.
    """
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, set_seed

    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    if cuda:
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["device_map"] = {"": 0}
    else:
        kwargs["dtype"] = torch.float32
    if cfg.load_in_4bit:
        if not cuda:
            raise HarnessError(
                "`finetune.load_in_4bit` needs a CUDA GPU (bitsandbytes); set it to false on CPU"
            )
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"],
        )
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    if cfg.load_in_4bit:
        model = prepare_model_for_kbit_training(model)
    set_seed(cfg.seed)  # LoRA initialisation
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **_lora_kwargs(cfg)))


def load_unsloth_model(model_dir: Path, cfg: FinetuneConfig, trust_remote_code: bool) -> Any:
    """The base model with fresh LoRA adapters through unsloth's ``FastLanguageModel``."""
    from unsloth import FastLanguageModel

    model, _ = FastLanguageModel.from_pretrained(
        model_name=str(model_dir),
        max_seq_length=cfg.max_seq_length,
        dtype=None,
        load_in_4bit=cfg.load_in_4bit,
        trust_remote_code=trust_remote_code,
    )
    return FastLanguageModel.get_peft_model(
        model,
        use_gradient_checkpointing="unsloth",
        random_state=cfg.seed,
        max_seq_length=cfg.max_seq_length,
        **_lora_kwargs(cfg),
    )


def to_dataset(examples: Sequence[Example]) -> Any:
    """A ``datasets.Dataset`` of pre-tokenised examples (``input_ids``, ``labels``)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]}
    )


def _throughput_callback() -> Any:
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):  # type: ignore[misc]
        """Adds ``tokens_per_s`` (non-padding input tokens) to each training log row."""

        def __init__(self) -> None:
            self._t = time.perf_counter()
            self._n = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t, self._n = time.perf_counter(), state.num_input_tokens_seen

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not logs or "loss" not in logs or not state.log_history:
                return
            now = time.perf_counter()
            rate = (state.num_input_tokens_seen - self._n) / max(now - self._t, 1e-9)
            self._t, self._n = now, state.num_input_tokens_seen
            row = state.log_history[-1]
            row["tokens_per_s"] = rate
            print(
                f"step {row.get('step')}/{state.max_steps} loss {row.get('loss', float('nan')):.4f} "
                f"lr {row.get('learning_rate', 0.0):.3g} {rate:.0f} tok/s",
                flush=True,
            )

    return Throughput()


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def kept_adapter(keep_dir: Path, step: int) -> Path:
    """Where :func:`keep_adapters_callback` keeps the adapter of a step."""
    return keep_dir / f"step-{step}"


def keep_adapters_callback(steps: Sequence[int], keep_dir: Path) -> Any:
    """A callback copying the adapter of each checkpoint at ``steps`` into ``keep_dir``.

    The trainer keeps only its newest checkpoints (``save_total_limit``); adapters averaged
    over checkpoints (``finetune.merge.average_checkpoints``) are copied out when saved, each
    to a temporary name then renamed, so a killed run leaves only complete copies.
    """
    from transformers import TrainerCallback

    wanted = set(steps)

    class KeepAdapters(TrainerCallback):  # type: ignore[misc]
        """Copies the adapter files of the wanted checkpoints."""

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = int(state.global_step)
            dst = kept_adapter(keep_dir, step)
            if step not in wanted or dst.is_dir():
                return
            src = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{step}"
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name in ADAPTER_FILES:
                if not (src / name).is_file():
                    raise HarnessError(f"{src}: the checkpoint has no {name}")
                shutil.copyfile(src / name, tmp / name)
            tmp.rename(dst)

    return KeepAdapters()


def training_args(cfg: FinetuneConfig, resume_dir: Path, backend: str) -> Any:
    """The ``SFTConfig`` of a run."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=str(resume_dir),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        optim="adamw_8bit" if backend == "unsloth" else "adamw_torch",
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        fp16=cuda and not bf16,
        # unsloth applies its own checkpointing; on CPU the tiny models need none.
        gradient_checkpointing=cuda and backend == "trl",
        max_length=cfg.max_seq_length,
        packing=cfg.packing,
        packing_strategy="bfd",
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not cuda,
    )


def _check_answer_only_labels(trainer: Any) -> None:
    """Fail if the trainer's prepared data or collator lost the prompt masking.

    Backends patch the trainer (unsloth replaces trl's); a silent fallback to full-sequence
    loss would train the model to recite prompts.
    """
    from harness.training.data import IGNORE_INDEX

    ds = trainer.train_dataset
    batch = trainer.data_collator([ds[i] for i in range(min(2, len(ds)))])
    labels = batch.get("labels")
    if labels is None or not bool((labels == IGNORE_INDEX).any()):
        raise HarnessError(
            "the trainer's batches carry no masked prompt tokens: answer-only loss was lost "
            "(trainer or collator ignored the `labels` column)"
        )


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run left behind.

    Attributes:
        backend: ``unsloth`` or ``trl``.
        model: The trained PEFT model (in memory).
        log_rows: One row per logged step (keys in :data:`LOG_KEYS`).
        resumed_from: The step of the checkpoint the run resumed from, or None.
        global_step: Steps done.
        train_runtime_s: Wall time of this session's training.
        eval_loss: Loss on the held-out examples, when given.
        trainable_params: LoRA parameters.
        total_params: All parameters.
    """

    backend: str
    model: Any
    log_rows: list[dict[str, float]]
    resumed_from: int | None
    global_step: int
    train_runtime_s: float
    eval_loss: float | None
    trainable_params: int
    total_params: int


def train(
    model: Any,
    tokenizer: Any,
    train_examples: Sequence[Example],
    eval_examples: Sequence[Example],
    cfg: FinetuneConfig,
    resume_dir: Path,
    backend: str,
    callbacks: Sequence[Any] = (),
) -> TrainOutcome:
    """Train LoRA adapters with trl's ``SFTTrainer``, resuming from ``resume_dir`` if possible.

    Args:
        model: A PEFT model (:func:`load_trl_model` or :func:`load_unsloth_model`).
        tokenizer: Its tokenizer (pad token distinct from eos).
        train_examples: Tokenised training examples.
        eval_examples: Tokenised held-out examples (may be empty).
        cfg: The ``finetune`` section.
        resume_dir: Checkpoint dir (kept across killed runs).
        backend: ``unsloth`` or ``trl``.
        callbacks: Extra ``TrainerCallback`` objects.

    Returns:
        The outcome; the trained model is ``outcome.model``.
    """
    from trl import SFTTrainer

    resume_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = latest_checkpoint(resume_dir)
    trainer = SFTTrainer(
        model=model,
        args=training_args(cfg, resume_dir, backend),
        train_dataset=to_dataset(train_examples),
        eval_dataset=to_dataset(eval_examples) if eval_examples else None,
        processing_class=tokenizer,
        callbacks=[_throughput_callback(), *callbacks],
    )
    _check_answer_only_labels(trainer)
    # The throughput callback prints one line per log; the default printer would repeat it.
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    if checkpoint is not None:
        print(f"resuming from {checkpoint}", flush=True)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    eval_loss = None
    if eval_examples:
        eval_loss = float(trainer.evaluate()["eval_loss"])
    rows = [
        {k: float(r[k]) for k in LOG_KEYS if k in r}
        for r in trainer.state.log_history
        if "loss" in r and "step" in r
    ]
    trained = trainer.model
    return TrainOutcome(
        backend=backend,
        model=trained,
        log_rows=rows,
        resumed_from=int(checkpoint.name[len(CHECKPOINT_PREFIX) :]) if checkpoint else None,
        global_step=int(trainer.state.global_step),
        train_runtime_s=float(result.metrics.get("train_runtime", 0.0)),
        eval_loss=eval_loss,
        trainable_params=sum(p.numel() for p in trained.parameters() if p.requires_grad),
        total_params=sum(p.numel() for p in trained.parameters()),
    )


def write_log(rows: Sequence[dict[str, float]], path: Path) -> None:
    """Write the training log as JSONL (one row per logged step)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def plot_loss_curve(rows: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """Plot training loss (and learning rate) against step into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    losses = [r["loss"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, losses, color="tab:blue", alpha=0.35, label="training loss")
    window = max(1, len(losses) // 20)
    if window > 1:
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1])
            / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        ax.plot(steps, smooth, color="tab:blue", label=f"mean of last {window}")
    ax.legend(loc="upper right")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (answer tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if any("learning_rate" in r for r in rows):
        lr_ax = ax.twinx()
        lr_ax.plot(
            steps,
            [r.get("learning_rate", float("nan")) for r in rows],
            color="tab:orange",
            alpha=0.6,
            label="learning rate",
        )
        lr_ax.set_ylabel("learning rate")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
