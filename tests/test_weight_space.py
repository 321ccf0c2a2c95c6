"""Weight-space merges (adapter averaging, WiSE-FT) on tiny Qwen2 models, their spec options,
the finetune stage running them, and ``model.max_position_embeddings`` reaching the padded
and quantised model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.contract import StageContext
from harness.core.stage import stage_defs
from harness.errors import HarnessError, SpecError
from harness.spec import load_spec
from harness.spec.schema import FinetuneConfig, MergeConfig, TinyModelConfig
from tests.support.infer import SYSTEM
from tests.support.paths import DATA as TEST_DATA
from tests.support.paths import REPO
from tests.support.paths import TINY_CPU as TINY
from tests.support.stages import run_stage, stage_context

DATA = TEST_DATA / "finetune"
LORA = ("q_proj", "v_proj", "down_proj")
Q0 = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


class _NoTokenizer:
    """What :func:`harness.training.merge.merge_peft_adapter` saves beside the model."""

    def save_pretrained(self, path: str) -> None:
        pass


def _build_base(path: Path, dtype: str = "float32") -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(path, safe_serialization=True, max_shard_size="20KB")


def _build_adapter(base: Path, path: Path, seed: int, rank: int, full_lm_head: bool) -> None:
    """A LoRA adapter with random A and B (and a perturbed fully trained ``lm_head``)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    torch.manual_seed(seed)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            task_type="CAUSAL_LM",
            r=rank,
            lora_alpha=2 * rank + seed,
            target_modules=list(LORA),
            modules_to_save=["lm_head"] if full_lm_head else None,
            init_lora_weights=False,
        ),
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.1)
    peft_model.save_pretrained(str(path), safe_serialization=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A sharded fp32 base, a bf16 base, and three adapters (two with a trained ``lm_head``,
    of different ranks and alphas)."""
    root = tmp_path_factory.mktemp("weight_space")
    out = {"base": root / "base", "base_bf16": root / "base_bf16"}
    _build_base(out["base"])
    _build_base(out["base_bf16"], "bfloat16")
    for name, seed, rank, full in (("a1", 1, 4, True), ("a2", 2, 2, True), ("a3", 3, 4, False)):
        out[name] = root / name
        _build_adapter(out["base"], out[name], seed, rank, full)
    return out


def _tensors(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _adapter(adapter_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    return cfg, load_file(str(adapter_dir / "adapter_model.safetensors"))


def _delta(adapter_dir: Path, name: str) -> Any:
    """``B·A·alpha/r`` of one base tensor, by hand."""
    cfg, t = _adapter(adapter_dir)
    module = "base_model.model." + name.removesuffix(".weight")
    a, b = t[f"{module}.lora_A.weight"], t[f"{module}.lora_B.weight"]
    return (b @ a) * (cfg["lora_alpha"] / cfg["r"])


def _lm_head(adapter_dir: Path) -> Any:
    return _adapter(adapter_dir)[1]["base_model.model.lm_head.weight"]


def _merge(models: dict[str, Path], out: Path, adapters: list[str], **kw: Any) -> Any:
    from harness.training.weight_space import merge_adapters

    kw.setdefault("dtype", "float32")
    return merge_adapters(models["base"], [models[a] for a in adapters], out, **kw)


# --------------------------------------------------------------------------- exactness


def test_theta_zero_gives_the_base_exactly(models: dict[str, Path], tmp_path: Path) -> None:
    report = _merge(models, tmp_path / "m", ["a1", "a2"], theta=0.0)
    base, got = _tensors(models["base"]), _tensors(tmp_path / "m")
    assert base.keys() == got.keys()
    for k in base:
        assert got[k].dtype == base[k].dtype and got[k].equal(base[k]), k
    assert report.summary()["max_abs_delta"] == 0.0


def test_theta_one_gives_the_plain_merge_exactly(models: dict[str, Path], tmp_path: Path) -> None:
    from harness.training.merge import merge_peft_adapter

    merge_peft_adapter(
        models["base"],
        models["a1"],
        tmp_path / "peft",
        _NoTokenizer(),
        dtype="float32",
        max_shard_size="20KB",
    )
    report = _merge(models, tmp_path / "ws", ["a1"], theta=1.0)
    want, got = _tensors(tmp_path / "peft"), _tensors(tmp_path / "ws")
    assert want.keys() == got.keys()
    for k in want:
        assert got[k].equal(want[k]), k
    kinds = {t.name: t.kind for t in report.tensors}
    assert kinds[Q0] == "lora" and kinds["lm_head.weight"] == "full"
    assert kinds["model.embed_tokens.weight"] == "base"
    assert kinds["model.layers.0.self_attn.k_proj.weight"] == "base"


def test_theta_between_matches_the_hand_computed_interpolation(
    models: dict[str, Path], tmp_path: Path
) -> None:
    import torch

    theta = 0.25
    _merge(models, tmp_path / "m", ["a1"], theta=theta)
    base, got = _tensors(models["base"]), _tensors(tmp_path / "m")
    # (1 − θ)·W_base + θ·W_finetuned, W_finetuned = W + B·A·alpha/r
    want_q = (1 - theta) * base[Q0] + theta * (base[Q0] + _delta(models["a1"], Q0))
    assert torch.allclose(got[Q0], want_q, rtol=0, atol=1e-6)
    assert not got[Q0].equal(base[Q0])
    want_head = (1 - theta) * base["lm_head.weight"] + theta * _lm_head(models["a1"])
    assert got["lm_head.weight"].equal(want_head)
    for k in ("model.embed_tokens.weight", "model.norm.weight"):
        assert got[k].equal(base[k])


def test_averaging_two_adapters_is_the_mean_of_their_deltas(
    models: dict[str, Path], tmp_path: Path
) -> None:

    report = _merge(models, tmp_path / "m", ["a1", "a2"])
    base, got = _tensors(models["base"]), _tensors(tmp_path / "m")
    for name in (Q0, "model.layers.1.mlp.down_proj.weight"):
        d1, d2 = _delta(models["a1"], name), _delta(models["a2"], name)
        assert got[name].equal(base[name] + (d1 + d2) / 2), name
    head = (_lm_head(models["a1"]) + _lm_head(models["a2"])) / 2
    assert got["lm_head.weight"].equal(head)
    assert {t.name: t.sources for t in report.tensors}[Q0] == 2


def test_averaging_a_and_b_separately_is_another_model(
    models: dict[str, Path], tmp_path: Path
) -> None:
    import torch

    _merge(models, tmp_path / "m", ["a1", "a3"])
    base, got = _tensors(models["base"]), _tensors(tmp_path / "m")
    (c1, t1), (c3, t3) = _adapter(models["a1"]), _adapter(models["a3"])
    assert c1["r"] == c3["r"]
    module = "base_model.model." + Q0.removesuffix(".weight")
    mean_a = (t1[f"{module}.lora_A.weight"] + t3[f"{module}.lora_A.weight"]) / 2
    mean_b = (t1[f"{module}.lora_B.weight"] + t3[f"{module}.lora_B.weight"]) / 2
    naive = base[Q0] + (mean_b @ mean_a) * (c1["lora_alpha"] / c1["r"])
    assert (got[Q0] - naive).abs().max() > 1e-3
    want = base[Q0] + (_delta(models["a1"], Q0) + _delta(models["a3"], Q0)) / 2
    assert torch.equal(got[Q0], want)


def test_adapter_without_a_module_contributes_the_base(
    models: dict[str, Path], tmp_path: Path
) -> None:
    theta = 0.75
    _merge(models, tmp_path / "m", ["a1", "a3"], theta=theta)
    base, got = _tensors(models["base"]), _tensors(tmp_path / "m")
    # a3 trains no lm_head: its fine-tuned lm_head is the base's.
    w = base["lm_head.weight"]
    avg = (_lm_head(models["a1"]) + w) / 2
    assert got["lm_head.weight"].equal((1 - theta) * w + theta * avg)
    mean = (_delta(models["a1"], Q0) + _delta(models["a3"], Q0)) / 2
    assert got[Q0].equal(base[Q0] + theta * mean)


def test_bf16_output_sharding_index_and_model_files(
    models: dict[str, Path], tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from harness.training.weight_space import INDEX_NAME

    out = tmp_path / "m"
    report = _merge(models, out, ["a1", "a2"], dtype="bfloat16", max_shard_bytes=6000)
    got = _tensors(out)
    base = _tensors(models["base"])
    assert all(t.dtype == torch.bfloat16 for t in got.values())
    want = base[Q0] + (_delta(models["a1"], Q0) + _delta(models["a2"], Q0)) / 2
    assert got[Q0].equal(want.to(torch.bfloat16))
    # Shards follow max_shard_bytes; the index names every tensor.
    assert len(report.files) > 2 and (out / INDEX_NAME).is_file()
    index = json.loads((out / INDEX_NAME).read_text())
    assert set(index["weight_map"]) == set(got)
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in got.values())
    for f in report.files:
        assert (out / f).stat().st_size < 6000 + 4096  # tensors + header
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dtype"] == "bfloat16" and cfg["max_position_embeddings"] == 256
    assert (out / "generation_config.json").is_file()
    assert not list(tmp_path.glob(".m*"))  # the temporary sibling is gone
    reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16)
    assert reloaded.model.layers[0].self_attn.q_proj.weight.equal(got[Q0])
    # Per-tensor max-abs-delta: of the cast output against the base.
    rows = {t.name: t for t in report.tensors}
    assert rows[Q0].max_abs_delta == float((got[Q0].float() - base[Q0]).abs().max())
    assert rows["model.norm.weight"].kind == "base"
    summary = report.summary()
    assert summary["tensors"] == len(got)
    assert summary["lora_tensors"] == 2 * len(LORA) and summary["full_tensors"] == 1
    assert "model.layers.*.self_attn.q_proj.weight" in summary["max_abs_delta_by_module"]
    assert summary["max_abs_delta_untouched"] > 0  # fp32 -> bf16 rounding


def test_a_bf16_base_is_widened_exactly(models: dict[str, Path], tmp_path: Path) -> None:
    import torch

    from harness.training.weight_space import merge_adapters

    out = tmp_path / "m"
    merge_adapters(models["base_bf16"], [models["a1"]], out, theta=0.0, dtype="bfloat16")
    base, got = _tensors(models["base_bf16"]), _tensors(out)
    assert all(got[k].equal(base[k]) for k in base)
    merge_adapters(models["base_bf16"], [models["a1"]], out, theta=1.0, dtype="float32")
    got = _tensors(out)
    assert got[Q0].equal(base[Q0].to(torch.float32) + _delta(models["a1"], Q0))


def test_bad_inputs_fail_clearly(models: dict[str, Path], tmp_path: Path) -> None:
    from harness.training.weight_space import merge_adapters, parse_size

    other = tmp_path / "other"
    from transformers import Qwen2Config, Qwen2ForCausalLM

    Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=96,
            hidden_size=48,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    ).save_pretrained(other, safe_serialization=True)
    with pytest.raises(HarnessError, match="has shape"):
        merge_adapters(other, [models["a1"]], tmp_path / "x")
    with pytest.raises(HarnessError, match="theta must lie in"):
        merge_adapters(models["base"], [models["a1"]], tmp_path / "x", theta=1.5)
    with pytest.raises(HarnessError, match="not a saved adapter"):
        merge_adapters(models["base"], [tmp_path], tmp_path / "x")
    dora = tmp_path / "dora"
    dora.mkdir()
    cfg, _ = _adapter(models["a1"])
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    (dora / "adapter_model.safetensors").write_bytes(
        (models["a1"] / "adapter_model.safetensors").read_bytes()
    )
    with pytest.raises(HarnessError, match="use_dora"):
        merge_adapters(models["base"], [dora], tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("200KiB") == 200 * 1024
    assert parse_size("2MB") == 2 * 10**6
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


# --------------------------------------------------------------------------- spec


def _spec_problems(tmp_path: Path, text: str) -> str:
    spec = tmp_path / "s.yaml"
    spec.write_text(f"base: {TINY}\n{text}", encoding="utf-8")
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    return "\n".join(e.value.problems)


def test_merge_options_are_validated_with_key_paths(tmp_path: Path) -> None:
    text = _spec_problems(tmp_path, "finetune:\n  merge:\n    wise_ft_theta: 1.5\n")
    assert "finetune.merge.wise_ft_theta" in text and "1.5" in text
    text = _spec_problems(tmp_path, "finetune:\n  merge:\n    average_seeds: [3]\n")
    assert "finetune.merge.average_seeds" in text and "at least two" in text
    text = _spec_problems(tmp_path, "finetune:\n  merge:\n    average_seeds: [1, 1]\n")
    assert "finetune.merge.average_seeds" in text and "twice" in text
    text = _spec_problems(tmp_path, "finetune:\n  merge:\n    average_checkpoints: [30, 80]\n")
    assert "finetune.merge.average_checkpoints" in text and "[30]" in text
    assert "finetune.save_steps" in text
    text = _spec_problems(tmp_path, "finetune:\n  merge:\n    average_checkpoints: [40, 120]\n")
    assert "[120]" in text
    text = _spec_problems(tmp_path, "finetune:\n  merge:\n    averge_seeds: [0, 1]\n")
    assert "did you mean `finetune.merge.average_seeds`" in text
    ok = FinetuneConfig.model_validate(
        {
            "max_steps": 90,
            "save_steps": 40,
            "merge": {"average_checkpoints": [40, 90], "average_seeds": [0, 1]},
        }
    )
    assert ok.merge.average_checkpoints == [40, 90]
    assert MergeConfig().wise_ft_theta is None


def test_max_position_embeddings_is_validated(tmp_path: Path) -> None:
    text = _spec_problems(tmp_path, "model:\n  max_position_embeddings: 8\n")
    assert "model.max_position_embeddings" in text
    text = _spec_problems(
        tmp_path, "model:\n  max_position_embeddings: 1000\ninfer:\n  max_model_len: 1024\n"
    )
    assert "`infer.max_model_len` 1024 exceeds `model.max_position_embeddings` 1000" in text
    spec = tmp_path / "ok.yaml"
    spec.write_text(f"base: {TINY}\nmodel:\n  max_position_embeddings: 3072\n", encoding="utf-8")
    assert load_spec(spec).spec.model.max_position_embeddings == 3072


# --------------------------------------------------------------------------- model stage


def _model_ctx(tmp_path: Path, name: str, *overrides: str) -> StageContext:
    """The model stage of the tiny_cpu spec, alone, writing into ``.tmp-<name>``."""
    return stage_context(TINY, "model", "stages=[model]", *overrides, out=tmp_path / f".tmp-{name}")


def test_model_stage_sets_max_position_embeddings_and_pad_and_quantize_keep_it(
    models: dict[str, Path], tmp_path: Path
) -> None:
    from harness.core.artifacts import MODEL
    from harness.quant.verify import finalize_model_dir
    from shopbench_kernels.pad_checkpoint import pad_checkpoint

    assert "harness.model_files" in stage_defs()["model"].code_modules
    # A local model: linked, not copied, with the changed config.
    local = ("model.source=local", f"model.path={models['base']}", "model.tiny=null")
    ctx = _model_ctx(tmp_path, "local", *local, "model.max_position_embeddings=128")
    result = run_stage(ctx)
    model_dir = MODEL.dir(ctx.out)
    assert model_dir == ctx.out / "model"
    assert json.loads((model_dir / "config.json").read_text())["max_position_embeddings"] == 128
    assert (
        json.loads((models["base"] / "config.json").read_text())["max_position_embeddings"] == 256
    )
    weights = sorted(model_dir.glob("*.safetensors"))
    assert weights and all(p.is_symlink() for p in weights)
    assert result.summary["max_position_embeddings"] == {"before": 256, "after": 128}
    # The same value as the checkpoint's: used in place.
    ctx_same = _model_ctx(tmp_path, "same", *local, "model.max_position_embeddings=256")
    run_stage(ctx_same)
    assert MODEL.dir(ctx_same.out) == models["base"]
    # The padded model keeps it, and so does the quantised one's config.
    padded = tmp_path / "padded"
    pad_checkpoint(model_dir, padded, 96)
    padded_cfg = json.loads((padded / "config.json").read_text())
    assert padded_cfg["max_position_embeddings"] == 128 and padded_cfg["intermediate_size"] == 96
    quant = tmp_path / "quant"
    quant.mkdir()
    qc = {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm"}
    (quant / "config.json").write_text(
        json.dumps({**padded_cfg, "max_position_embeddings": 32768, "quantization_config": qc})
    )
    assert finalize_model_dir(padded, quant, qc)["max_position_embeddings"] == 128
    assert json.loads((quant / "config.json").read_text())["max_position_embeddings"] == 128


def test_model_stage_sets_it_on_the_tiny_model(tmp_path: Path) -> None:
    tiny = (
        "model.tiny.vocab_size=300",
        "model.tiny.hidden_size=16",
        "model.tiny.intermediate_size=32",
    )
    ctx = _model_ctx(
        tmp_path,
        "tiny",
        *tiny,
        f"model.tiny.corpus=[{DATA / 'corpus.txt'}]",
        "model.max_position_embeddings=3072",
    )
    result = run_stage(ctx)
    config = json.loads((ctx.out / "model" / "config.json").read_text())
    assert config["max_position_embeddings"] == 3072
    assert result.summary["max_position_embeddings"] == {"before": 4096, "after": 3072}


# --------------------------------------------------------------------------- finetune stage


def _fail(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("killed")


def test_finetune_stage_averages_seeds_and_checkpoints_with_wise_ft(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    import torch

    from harness.tiny_model import build_tiny_model
    from harness.training import weight_space

    model_stage = tmp_path / "model_stage"
    build_tiny_model(
        TinyModelConfig(
            vocab_size=512,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            corpus=[str(DATA / "corpus.txt")],
        ),
        model_stage / "model",
        REPO,
    )
    # tiny_cpu's fine-tuning (LoRA with a trained lm_head), 4 steps, on two seeds and two
    # checkpoints each, merged with WiSE-FT.
    ctx = stage_context(
        TINY,
        "finetune",
        "finetune.backend=trl",
        "finetune.lora.rank=4",
        "finetune.lora.alpha=8",
        "finetune.learning_rate=1e-2",
        "finetune.warmup_steps=0",
        "finetune.max_steps=4",
        "finetune.save_steps=2",
        "finetune.batch_size=2",
        "finetune.max_seq_length=256",
        "finetune.merge.max_shard_size=100KB",
        "finetune.merge.average_seeds=[0,1]",
        "finetune.merge.average_checkpoints=[2,4]",
        "finetune.merge.wise_ft_theta=0.75",
        f"prompts.system={SYSTEM}",
        out=tmp_path / ".tmp-ws",
        inputs={"model": model_stage, "data": DATA / "mix"},
    )
    assert ctx.config["finetune"]["lora"]["modules_to_save"] == ["lm_head"]
    # A stage killed in the merge keeps its finished runs: the rerun trains nothing again.
    with monkeypatch.context() as m:
        m.setattr(weight_space, "merge_adapters", _fail)
        with pytest.raises(RuntimeError, match="killed"):
            run_stage(ctx)
    resume = tmp_path / f".resume-{ctx.key}"
    assert (resume / "seed-0" / "run_outcome.json").is_file()
    assert (resume / "seed-1" / "kept" / "step-2" / "adapter_model.safetensors").is_file()
    capsys.readouterr()
    out = tmp_path / ".tmp-ws-2"
    out.mkdir()
    ctx = dataclasses.replace(ctx, out=out)
    result = run_stage(ctx)
    assert capsys.readouterr().out.count("reusing the finished run") == 2
    labels = ["seed-0/step-2", "seed-0/step-4", "seed-1/step-2", "seed-1/step-4"]
    merge = result.summary["merge"]
    assert merge["sources"] == labels and merge["wise_ft_theta"] == 0.75
    assert [r["seed"] for r in result.summary["runs"]] == [0, 1]
    assert result.metrics["merge_sources"] == 4.0 and result.metrics["wise_ft_theta"] == 0.75
    assert "loss_last_seed1" in result.metrics
    assert result.series == {"train": "train_log.jsonl", "train_seed1": "train_log_seed-1.jsonl"}
    assert result.tables == {"weight_deltas": "weight_deltas.jsonl"}
    assert not resume.exists()
    # The checkpoints and the seeds differ, and the merged model is their hand-computed mix.
    base, got = _tensors(model_stage / "model"), _tensors(out / "model")
    dirs = [out / "adapters" / label for label in labels]
    deltas = [_delta(d, Q0) for d in dirs]
    assert not deltas[0].equal(deltas[1]) and not deltas[1].equal(deltas[3])
    want = base[Q0] + 0.75 * (deltas[0] + deltas[1] + deltas[2] + deltas[3]) / 4
    assert torch.allclose(got[Q0], want, rtol=0, atol=1e-6)
    head = sum(_lm_head(d) for d in dirs) / 4
    want_head = 0.25 * base["lm_head.weight"] + 0.75 * head
    assert torch.allclose(got["lm_head.weight"], want_head, rtol=0, atol=1e-6)
    assert got["model.embed_tokens.weight"].equal(base["model.embed_tokens.weight"])
    rows = [json.loads(x) for x in (out / "weight_deltas.jsonl").read_text().splitlines()]
    assert {r["tensor"] for r in rows} == set(got)
    assert merge["deltas"]["max_abs_delta"] == max(r["max_abs_delta"] for r in rows)
    assert (out / "model" / "tokenizer_config.json").is_file()
