"""The ``model`` stage: materialise the base model as a local Hugging Face dir.

``tiny`` builds it (tokenizer + random weights); ``local`` and ``hub`` record where it is
(hub ids resolve from the local Hugging Face cache) and check that only safetensors weights
are present, without copying a 145 GB checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import HarnessError
from harness.spec.schema import ModelConfig
from harness.stages.base import StageContext, StageResult, stage


def model_dir(stage_dir: Path) -> Path:
    """The model directory a model-producing stage left in ``stage_dir``."""
    ref = stage_dir / "model_ref.json"
    if ref.is_file():
        return Path(json.loads(ref.read_text(encoding="utf-8"))["path"])
    return stage_dir / "model"


def _resolve_existing(cfg: ModelConfig, ctx: StageContext) -> Path:
    if cfg.source == "local":
        path = ctx.path(cfg.path or "")
        if not (path / "config.json").is_file():
            raise HarnessError(
                f"`model.path`: {path} is not a Hugging Face model dir (no config.json)"
            )
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                cfg.path or "",
                revision=cfg.revision,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"],
            )
        )
    except Exception as e:  # the hub client raises many types; all mean "not available"
        raise HarnessError(f"`model.path`: cannot resolve hub model {cfg.path!r}: {e}") from None


@stage(
    name="model",
    version="1",
    env="train",
    reads=("model",),
    files=("model.tiny.corpus",),
)
def run(ctx: StageContext) -> StageResult:
    """Build or locate the base model."""
    cfg = ctx.section("model", ModelConfig)
    if cfg.source == "tiny":
        assert cfg.tiny is not None
        from harness.tiny_model import build_tiny_model

        facts = build_tiny_model(cfg.tiny, ctx.out / "model", ctx.root)
        return StageResult(
            metrics={"parameters": float(facts["parameters"])},  # type: ignore[arg-type]
            summary=facts,
        )
    path = _resolve_existing(cfg, ctx)
    pickles = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
    if pickles and not list(path.glob("*.safetensors")):
        raise HarnessError(f"{path}: only pickle weights ({pickles[0]}, ...); safetensors required")
    (ctx.out / "model_ref.json").write_text(json.dumps({"path": str(path)}), encoding="utf-8")
    return StageResult(summary={"path": str(path)})
