"""The ``pad`` stage: its slice, ``auto`` targets, and a real run through the executor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.contract import StageContext
from harness.core.plan import MANIFEST, build_plan
from harness.errors import HarnessError, SpecError
from harness.spec import load_spec
from harness.spec.schema import PadConfig
from harness.stages.pad import resolve_pad
from shopbench_kernels.errors import KernelError
from tests.support.paths import REPO
from tests.support.paths import TINY_CPU as TINY
from tests.support.stages import run_stage, stage_context
from tests.support.tiny_models import LOGIT_TOL, build_qwen2, logits, token_ids


def _ctx(tmp_path: Path, upstream: Path, *overrides: str) -> StageContext:
    """The pad stage of the tiny_cpu spec (``auto`` target, infer TP 2, AWQ group 64), its
    model as wide as the upstream one (the spec's TP checks read it)."""
    return stage_context(
        TINY,
        "pad",
        "model.tiny.hidden_size=256",
        *overrides,
        out=tmp_path / "out",
        inputs={"model": upstream},
    )


# The tiny_cpu spec without its quantize stage and section: unquantised serving.
UNQUANTISED = ("stages=[model,pad]", "quantize=null")


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, Any]:
    stage_dir = tmp_path / "finetune"
    model = build_qwen2(stage_dir / "model", hidden=256, inter=320, layers=1, heads=4, kv=2)
    return stage_dir, model


def test_auto_target_from_infer_tp_and_group(tmp_path: Path, upstream: tuple[Path, Any]) -> None:
    stage_dir, model = upstream
    result = run_stage(_ctx(tmp_path, stage_dir))
    out = tmp_path / "out" / "model"
    assert json.loads((out / "config.json").read_text())["intermediate_size"] == 384
    assert result.metrics["intermediate_size_before"] == 320
    assert result.metrics["intermediate_size_after"] == 384
    assert result.summary["tp_sizes"] == [2] and result.summary["group_size"] == 64
    assert result.summary["files"]["config.json"]
    assert result.summary["awq_shape_problems"] == []
    ids = token_ids(128, 7)
    assert (logits(model, ids) - logits(out, ids)).abs().max().item() <= LOGIT_TOL


def test_explicit_sizes_and_no_quantisation(tmp_path: Path, upstream: tuple[Path, Any]) -> None:
    stage_dir, _ = upstream
    # Without a quantize section only plain TP rules apply; heads cannot be split over 3.
    ctx = _ctx(tmp_path / "a", stage_dir, *UNQUANTISED, "pad.tensor_parallel_sizes=[3]")
    assert ctx.config["quantize.q_group_size"] is None
    with pytest.raises(KernelError, match="num_attention_heads 4 is not divisible by tp 3"):
        run_stage(ctx)
    assert not (tmp_path / "a" / "out" / "model").exists()
    # A spec always has `infer.tensor_parallel_size` (default 1); what `auto` does without
    # any TP size is resolve_pad's to say.
    with pytest.raises(HarnessError, match=r"needs `pad\.tensor_parallel_sizes`"):
        resolve_pad(PadConfig(), None)
    ctx = _ctx(tmp_path / "c", stage_dir, "pad.target=512", "infer.tensor_parallel_size=4")
    result = run_stage(ctx)
    assert result.metrics["intermediate_size_after"] == 512
    assert result.summary["tp_sizes"] == [4]
    overrides = ("pad.tensor_parallel_sizes=[2,4]", "infer.tensor_parallel_size=1")
    result = run_stage(_ctx(tmp_path / "d", stage_dir, *overrides))
    assert result.metrics["intermediate_size_after"] == 512  # lcm(2, 4) x 64
    assert result.summary["tp_sizes"] == [2, 4]


def test_explicit_target_that_fails_tp_is_refused(
    tmp_path: Path, upstream: tuple[Path, Any]
) -> None:
    stage_dir, _ = upstream
    # With an infer stage the spec itself is refused; without one the stage refuses.
    with pytest.raises(SpecError, match=r"352/2 = 176 is not a multiple of group_size 64"):
        load_spec(TINY, ["pad.target=352"])
    with pytest.raises(KernelError, match="does not serve"):
        run_stage(_ctx(tmp_path, stage_dir, "stages=[model,pad]", "pad.target=352"))
    assert list((tmp_path / "out").iterdir()) == []


def test_pad_key_follows_its_slice_only() -> None:
    def key(*overrides: str) -> str:
        spec = load_spec(TINY, ["stages=[model,pad]", "tracking.mode=disabled", *overrides])
        return build_plan(spec, REPO, strict=False).by_name("pad").key

    base = key()
    assert key("decoding.generation.temperature=0.7") == base
    assert key("infer.tensor_parallel_size=4") != base
    assert key("quantize.q_group_size=128") != base
    assert key("pad.placement=append") != base
    spec = load_spec(TINY, ["stages=[model,pad]", "tracking.mode=disabled"])
    st = build_plan(spec, REPO, strict=False).by_name("pad")
    assert set(st.slice) == {"pad", "infer.tensor_parallel_size", "quantize.q_group_size"}
    assert st.inputs == {"model": "model"}


@pytest.mark.slow
def test_tiny_cpu_model_then_pad_through_the_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.core.artifacts import MODEL
    from harness.core.executor import execute

    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(tmp_path / "runs"))
    spec = load_spec(TINY, ["stages=[model,pad]", "tracking.mode=disabled"])
    plan = build_plan(spec, REPO)
    result = execute(plan)
    pad_dir = result.dir_of("pad")
    manifest = json.loads((pad_dir / MANIFEST).read_text())
    summary = manifest["result"]["summary"]
    assert summary["intermediate_size"] == {"before": 320, "after": 384}
    padded = MODEL.dir(pad_dir)
    assert padded == pad_dir / "model"
    for rel, sha in summary["files"].items():
        assert manifest["outputs"][f"model/{rel}"]["sha256"] == sha
    source = MODEL.dir(result.dir_of("model"))
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (padded / name).read_bytes() == (source / name).read_bytes()
    ids = token_ids(256, 8)
    assert (logits(source, ids) - logits(padded, ids)).abs().max().item() <= LOGIT_TOL
    again = execute(
        build_plan(load_spec(TINY, ["stages=[model,pad]", "tracking.mode=disabled"]), REPO)
    )
    assert all(o.cached for o in again.outcomes)
