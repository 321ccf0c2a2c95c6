"""The ``model`` stage: materialise the base model as a local Hugging Face dir.

``tiny`` builds it (tokenizer + random weights); ``local`` and ``hub`` record where it is
(hub ids resolve from the local Hugging Face cache) and check that only safetensors weights
are present, without copying a 145 GB checkpoint.

``model.max_position_embeddings`` is written into the model's ``config.json``: the tiny model's
is rewritten; a ``local`` or ``hub`` model whose value differs becomes ``model/`` holding a
link to each of its files and the changed config (the executor hashes the linked weights
once, when it publishes the stage). Every later stage copies the config on (the merge, the
pad stage and the quantize stage), so the value reaches the served model.
"""

from __future__ import annotations

from pathlib import Path

from harness.atomic import write_json
from harness.core.artifacts import MODEL
from harness.core.stage import (
    SpecSlice,
    StageContext,
    StageMetrics,
    StageResult,
    read,
    stage,
)
from harness.errors import HarnessError
from harness.model_files import link_model_dir, read_config, update_config
from harness.spec.schema import ModelConfig


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


class ModelSlice(SpecSlice):
    """What ``model`` reads."""

    model: ModelConfig = read("model")


class ModelMetrics(StageMetrics):
    """The parameter count of a model the harness builds (``source: tiny``); none for a
    model used as it is."""

    parameters: float | None = None


class ModelResult(StageResult):
    """What ``model`` reports (its summary: where the model is, the config keys it set)."""

    metrics: ModelMetrics = ModelMetrics()


@stage(
    name="model",
    section="model",
    outputs=(MODEL,),
    envs=("train",),
)
def run(ctx: StageContext, spec: ModelSlice) -> ModelResult:
    """Build or locate the base model."""
    cfg = spec.model
    if cfg.source == "tiny":
        assert cfg.tiny is not None
        from harness.tiny_model import build_tiny_model

        facts = build_tiny_model(cfg.tiny, MODEL.dir(ctx.out), ctx.root)
        if cfg.max_position_embeddings is not None:
            facts["max_position_embeddings"] = _positions(
                cfg, update_config(MODEL.dir(ctx.out), _overrides(cfg))
            )
        return ModelResult(
            metrics={"parameters": float(facts["parameters"])},  # type: ignore[arg-type]
            summary=facts,
        )
    path = _resolve_existing(cfg, ctx)
    pickles = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
    if pickles and not list(path.glob("*.safetensors")):
        raise HarnessError(f"{path}: only pickle weights ({pickles[0]}, ...); safetensors required")
    overrides = _overrides(cfg)
    if overrides and any(read_config(path).get(k) != v for k, v in overrides.items()):
        before = link_model_dir(path, MODEL.dir(ctx.out), overrides)
        return ModelResult(
            summary={"path": str(path), "max_position_embeddings": _positions(cfg, before)}
        )
    write_json(MODEL.ref_file(ctx.out), {"path": str(path)})
    summary: dict[str, object] = {"path": str(path)}
    if overrides:
        summary["max_position_embeddings"] = _positions(cfg, overrides)
    return ModelResult(summary=summary)


def _overrides(cfg: ModelConfig) -> dict[str, int]:
    """The ``config.json`` keys the spec sets."""
    if cfg.max_position_embeddings is None:
        return {}
    return {"max_position_embeddings": cfg.max_position_embeddings}


def _positions(cfg: ModelConfig, before: dict[str, object]) -> dict[str, object]:
    return {
        "before": before.get("max_position_embeddings"),
        "after": cfg.max_position_embeddings,
    }
