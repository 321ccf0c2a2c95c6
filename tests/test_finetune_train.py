"""The finetune stage on a tiny Qwen2 on CPU: loss falls, merge is exact, resume after SIGKILL
reproduces the uninterrupted weights, packing keeps examples apart, bad input fails clearly."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.core.contract import StageContext, StageResult
from harness.core.stage import stage_defs
from harness.errors import HarnessError
from harness.spec.schema import TinyModelConfig
from harness.training.data import FinetuneDataError
from tests.support.infer import SYSTEM
from tests.support.paths import DATA as TEST_DATA
from tests.support.paths import REPO, TINY_CPU
from tests.support.stages import run_stage, stage_context

DATA = TEST_DATA / "finetune"
# tiny_cpu's fine-tuning made small enough for a few seconds of CPU per run (LoRA only, no
# trained lm_head); lr high enough to move a tiny random model.
BASE: tuple[str, ...] = (
    "finetune.backend=trl",
    "finetune.lora.rank=8",
    "finetune.lora.alpha=16",
    "finetune.lora.modules_to_save=[]",
    "finetune.learning_rate=1e-2",
    "finetune.warmup_steps=2",
    "finetune.max_steps=24",
    "finetune.batch_size=4",
    "finetune.max_seq_length=256",
    "finetune.save_steps=8",
    "finetune.seed=0",
    "finetune.merge.dtype=float32",
    "finetune.merge.max_shard_size=200KB",
    f"prompts.system={SYSTEM}",
)
KILL_AT_STEP = 12  # after checkpoint-8, before the end


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    # Identical thread counts in every process make CPU runs bit-reproducible, and one
    # thread is the fastest setting for a model this small on a shared 2-core machine.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `model` stage dir holding a tiny Qwen2 whose tokenizer is trained on the fixtures."""
    from harness.tiny_model import build_tiny_model

    stage_dir = tmp_path_factory.mktemp("model_stage")
    cfg = TinyModelConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        corpus=[str(DATA / "corpus.txt")],
    )
    build_tiny_model(cfg, stage_dir / "model", REPO)
    return stage_dir


def make_ctx(
    stage_root: Path,
    name: str,
    model_stage: Path,
    *overrides: str,
    data_dir: Path = DATA / "mix",
) -> StageContext:
    """The finetune stage of tiny_cpu (:data:`BASE`, then ``overrides``) writing into
    ``<stage_root>/.tmp-<name>``; its resume dir is ``<stage_root>/.resume-<key>``."""
    return stage_context(
        TINY_CPU,
        "finetune",
        *BASE,
        *overrides,
        out=stage_root / f".tmp-{name}",
        inputs={"model": model_stage, "data": data_dir},
    )


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_stage: Path
) -> tuple[StageContext, StageResult]:
    """One uninterrupted run of the stage (24 steps): its context and result."""
    ctx = make_ctx(tmp_path_factory.mktemp("stages"), "straight", tiny_model_stage)
    return ctx, run_stage(ctx)


def _tensors(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_stage_is_registered_in_the_train_env() -> None:
    d = stage_defs()["finetune"]
    assert d.env == "train"
    assert d.reads == ("finetune", "prompts.system", "model.trust_remote_code")
    assert d.inputs == {"model": ("model",), "data": ("mix",)}


def test_auto_backend_on_cpu_is_trl_and_unsloth_is_refused() -> None:
    import torch

    from harness.training.sft import select_backend

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    assert select_backend("auto") == "trl"
    assert select_backend("trl") == "trl"
    with pytest.raises(HarnessError, match="needs a CUDA GPU"):
        select_backend("unsloth")


@pytest.mark.slow  # shares the ~30 s training fixture
def test_training_loss_falls(trained: tuple[StageContext, StageResult]) -> None:
    ctx, result = trained
    rows = [
        json.loads(line) for line in (ctx.out / result.series["train"]).read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == list(range(1, 25))
    for r in rows:
        assert {"loss", "learning_rate", "grad_norm", "tokens_per_s"} <= r.keys()
        assert r["tokens_per_s"] > 0
    first = sum(r["loss"] for r in rows[:4]) / 4
    last = sum(r["loss"] for r in rows[-4:]) / 4
    assert last < first - 0.3, (first, last)
    assert result.metrics["loss_first"] == rows[0]["loss"]
    assert result.metrics["loss_last"] == rows[-1]["loss"]
    assert result.metrics["eval_loss"] < first
    png = (ctx.out / result.images["loss_curve"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # shares the ~30 s training fixture
def test_outputs_are_a_sharded_merged_model_with_tokenizer(
    trained: tuple[StageContext, StageResult], tiny_model_stage: Path
) -> None:
    from transformers import AutoTokenizer

    ctx, result = trained
    merged = ctx.out / "model"
    assert (merged / "model.safetensors.index.json").is_file()
    assert len(list(merged.glob("model-*.safetensors"))) > 1  # max_shard_size 200KB
    assert not list(merged.glob("*.bin"))
    tok = AutoTokenizer.from_pretrained(str(merged))
    base_tok = AutoTokenizer.from_pretrained(str(tiny_model_stage / "model"))
    assert tok.chat_template == base_tok.chat_template
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    # The adapter moved the weights; the merged model is not the base.
    base, new = _tensors(tiny_model_stage / "model"), _tensors(merged)
    assert base.keys() == new.keys()
    assert any(not base[k].equal(new[k]) for k in base if "proj" in k)
    # The resume dir is removed once the stage has succeeded.
    assert not (ctx.out.parent / f".resume-{ctx.key}").exists()
    assert result.summary["backend"] == "trl"
    assert result.summary["resumed_from_step"] is None


@pytest.mark.slow  # shares the ~30 s training fixture
def test_merged_greedy_outputs_equal_the_adapter_model(
    trained: tuple[StageContext, StageResult], tiny_model_stage: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.training.data import build_messages, load_ecinstruct

    ctx, _ = trained
    tok = AutoTokenizer.from_pretrained(str(ctx.out / "model"))
    base = AutoModelForCausalLM.from_pretrained(
        str(tiny_model_stage / "model"), dtype=torch.float32
    )
    adapter = PeftModel.from_pretrained(base, str(ctx.out / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(
        str(ctx.out / "model"), dtype=torch.float32
    ).eval()
    records = load_ecinstruct(DATA / "mix" / "heldout.jsonl")[:8]
    prompts = [
        tok.apply_chat_template(
            build_messages(r, SYSTEM)[:-1], tokenize=False, add_generation_prompt=True
        )
        for r in records
    ]
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            a = adapter.generate(**ids, max_new_tokens=8, do_sample=False)
            m = merged.generate(**ids, max_new_tokens=8, do_sample=False)
            la = adapter(**ids).logits
            lm = merged(**ids).logits
        assert a.tolist() == m.tolist()
        assert torch.allclose(la, lm, atol=1e-5)


_KILLABLE = r"""
import json, sys, time
from pathlib import Path
import torch
from transformers import TrainerCallback
from harness.core.contract import StageContext
from tests.support.stages import run_stage

torch.set_num_threads(1)
ctx = StageContext.from_json(json.loads(Path(sys.argv[1]).read_text()))
marker, stop_at = Path(sys.argv[2]), int(sys.argv[3])

class Hold(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == stop_at:
            marker.write_text(str(state.global_step))
            while True:  # wait here for the SIGKILL
                time.sleep(1)

run_stage(ctx, callbacks=[Hold()])
raise SystemExit("training finished without being killed")
"""


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_weights(
    trained: tuple[StageContext, StageResult],
    tiny_model_stage: Path,
    tmp_path: Path,
) -> None:
    straight_ctx, _ = trained
    ctx = make_ctx(tmp_path / "stages", "killed", tiny_model_stage)
    ctx_file, marker = tmp_path / "ctx.json", tmp_path / "reached"
    ctx.write(ctx_file)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = (tmp_path / "train.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(ctx_file), str(marker), str(KILL_AT_STEP)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            if proc.poll() is not None:
                tail = (tmp_path / "train.log").read_text()[-3000:]
                pytest.fail(f"training exited early ({proc.returncode}): {tail}")
            if time.monotonic() > deadline:
                pytest.fail("training did not reach the kill step in time")
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    resume_dir = ctx.out.parent / f".resume-{ctx.key}"
    assert sorted(p.name for p in resume_dir.glob("checkpoint-*")) == ["checkpoint-8"]
    assert not (ctx.out / "model").exists()

    # The stage's temp dir is discarded after a failure; the rerun gets a fresh one.
    fresh = dataclasses.replace(ctx, out=tmp_path / "stages" / ".tmp-killed-2")
    fresh.out.mkdir()
    result = run_stage(fresh)
    assert result.summary["resumed_from_step"] == 8
    assert not resume_dir.exists()

    # Exact equality, not a tolerance: same seed, same data order, RNG states restored.
    for sub in ("adapter", "model"):
        want, got = _tensors(straight_ctx.out / sub), _tensors(fresh.out / sub)
        assert want.keys() == got.keys()
        for k in want:
            assert want[k].equal(got[k]), f"{sub}/{k} differs"
    straight_rows = (straight_ctx.out / "train_log.jsonl").read_text().splitlines()
    resumed_rows = (fresh.out / "train_log.jsonl").read_text().splitlines()
    pick = ("step", "loss", "grad_norm", "learning_rate")
    assert [{k: json.loads(r)[k] for k in pick} for r in resumed_rows] == [
        {k: json.loads(r)[k] for k in pick} for r in straight_rows
    ]


def test_packing_trains_without_mixing_examples(tiny_model_stage: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from harness.training.data import build_examples, load_ecinstruct

    # Two examples packed into one row score exactly as they do apart: no attention across
    # the boundary (position ids restart, the padding-free collator marks the split).
    tok = AutoTokenizer.from_pretrained(str(tiny_model_stage / "model"))
    model = AutoModelForCausalLM.from_pretrained(
        str(tiny_model_stage / "model"), dtype=torch.float32
    ).eval()
    exs = build_examples(load_ecinstruct(DATA / "mix" / "train.jsonl")[:2], tok, SYSTEM, 256)
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in exs]
    packed = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(rows)
    inputs = {k: v for k, v in packed.items() if k != "labels"}
    with torch.no_grad():
        # As SFTTrainer.compute_loss calls it: no KV cache, so the mask follows position ids.
        logits = model(**inputs, use_cache=False).logits[0]
        start = 0
        for e in exs:
            alone = model(input_ids=torch.tensor([e.input_ids])).logits[0]
            assert torch.allclose(logits[start : start + len(e.input_ids)], alone, atol=1e-5)
            start += len(e.input_ids)

    packed_run = ("finetune.packing=true", "finetune.max_steps=4", "finetune.save_steps=50")
    ctx = make_ctx(tmp_path, "packed", tiny_model_stage, *packed_run)
    result = run_stage(ctx)
    rows_logged = [json.loads(x) for x in (ctx.out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows_logged) == 4
    assert all(r["loss"] == r["loss"] and r["loss"] > 0 for r in rows_logged)
    assert result.summary["backend"] == "trl"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("empty", r"empty/train\.jsonl: no training records"),
        ("missing_output", r"missing_output/train\.jsonl:2: record has no `output`"),
        ("too_long", r"too_long/train\.jsonl:3: record is \d+ tokens, longer than"),
    ],
)
def test_bad_input_fails_before_training(
    tiny_model_stage: Path, tmp_path: Path, bad: str, message: str
) -> None:
    ctx = make_ctx(tmp_path, bad, tiny_model_stage, data_dir=DATA / "bad" / bad)
    with pytest.raises(FinetuneDataError, match=message):
        run_stage(ctx)
    assert not (tmp_path / f".resume-{ctx.key}").exists()


def test_four_bit_base_on_cpu_is_refused(tiny_model_stage: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    ctx = make_ctx(tmp_path, "q4", tiny_model_stage, "finetune.load_in_4bit=true")
    with pytest.raises(HarnessError, match="load_in_4bit` needs a CUDA GPU"):
        run_stage(ctx)


@pytest.mark.gpu
def test_unsloth_backend_trains_and_merges_on_gpu(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("unsloth")
    from harness.tiny_model import build_tiny_model

    # A small Qwen2 (head dim 64, as unsloth's kernels expect), 16-bit and 4-bit bases.
    model_stage = tmp_path / "model_stage"
    build_tiny_model(
        TinyModelConfig(
            vocab_size=512,
            hidden_size=256,
            intermediate_size=512,
            num_attention_heads=4,
            num_key_value_heads=2,
            dtype="bfloat16",
            corpus=[str(DATA / "corpus.txt")],
        ),
        model_stage / "model",
        REPO,
    )
    for four_bit in (False, True):
        ctx = make_ctx(
            tmp_path / f"stages-{four_bit}",
            f"unsloth-{four_bit}",
            model_stage,
            "finetune.backend=auto",
            f"finetune.load_in_4bit={str(four_bit).lower()}",
            "finetune.max_steps=30",
            "finetune.batch_size=8",
            "finetune.merge.dtype=bfloat16",
            "finetune.merge.max_shard_size=1MB",
        )
        result = run_stage(ctx)
        m = result.metrics
        print(
            f"unsloth 4bit={four_bit}: loss {m['loss_first']:.3f} -> {m['loss_last']:.3f} "
            f"(last-10 mean {m['loss_last10_mean']:.3f}), {m['tokens_per_s']:.0f} tok/s, "
            f"{m['train_runtime_s']:.1f} s, trainable {m['trainable_params']:.0f}"
        )
        assert result.summary["backend"] == "unsloth"
        assert m["loss_last10_mean"] < m["loss_first"]
        merged = ctx.out / "model"
        assert (merged / "config.json").is_file()
        assert list(merged.glob("*.safetensors"))
        assert not list(merged.glob("*.bin"))
        # The merged 16-bit model loads with plain transformers and gives finite logits.
        from transformers import AutoModelForCausalLM

        reloaded = AutoModelForCausalLM.from_pretrained(
            str(merged), use_safetensors=True, dtype=torch.bfloat16
        ).to("cuda")
        ids = torch.tensor([[1, 2, 3, 4, 5]], device="cuda")
        with torch.no_grad():
            logits = reloaded(input_ids=ids).logits
        assert torch.isfinite(logits).all()
        del reloaded
