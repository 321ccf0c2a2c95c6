"""The padding plan: a checkpoint read, validated and classified before anything is written.

:func:`plan_checkpoint` checks the architecture, the config, the shards against their index
and the shape and dtype of every MLP tensor, and decides for each tensor whether it is
copied, padded by rows (``gate_proj``/``up_proj``) or padded by columns (``down_proj``).

Attributes:
    SUPPORTED_ARCHITECTURES: The ``architectures`` entries that can be padded.
    SUPPORTED_MODEL_TYPES: The ``model_type`` values accepted when ``architectures`` is absent.
    SKIPPED_PATTERNS: Weight files of other formats, never copied next to the padded weights.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shopbench_kernels.errors import CheckpointError, PaddingError, UnsupportedModelError
from shopbench_kernels.pad_reading import (
    CONFIG_NAME,
    DTYPE_SIZES,
    FLOAT_DTYPES,
    INDEX_NAME,
    WEIGHTS_NAME,
    ShardHeader,
    TensorInfo,
    _read_json,
    read_config,
    read_header,
)

SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
)
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")

# Weight files of other formats are never copied next to the padded safetensors: they would
# hold the unpadded weights.
SKIPPED_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model*.bin.index.json",
    "tf_model*.h5",
    "flax_model*.msgpack",
    "*.gguf",
    "*.ckpt",
    "*.pt",
    "*.pth",
)

_MLP_RE = re.compile(
    r"^(?P<prefix>(?:.*\.)?)layers\.(?P<layer>\d+)\.mlp\."
    r"(?P<proj>gate_proj|up_proj|down_proj)\.(?P<kind>weight|bias)$"
)


@dataclass(frozen=True)
class _TensorPlan:
    info: TensorInfo
    op: Literal["copy", "rows", "cols"]
    new_shape: tuple[int, ...]

    @property
    def new_nbytes(self) -> int:
        return math.prod(self.new_shape) * DTYPE_SIZES[self.info.dtype]


@dataclass(frozen=True)
class _ShardPlan:
    name: str
    header: ShardHeader
    tensors: tuple[_TensorPlan, ...]


@dataclass(frozen=True)
class CheckpointPlan:
    """What :func:`pad_checkpoint` will do, derived and validated before writing anything.

    Attributes:
        src: Source directory.
        config: Its ``config.json``.
        index: Its ``model.safetensors.index.json`` (None for a single file).
        shards: Shard plans in file-name order.
        intermediate_size: Current intermediate size.
        hidden_size: Hidden size.
        num_layers: Decoder layers.
        extra_files: Other files to copy (relative paths).
        skipped_files: Weight files of other formats that are not copied (relative paths).
    """

    src: Path
    config: dict[str, Any]
    index: dict[str, Any] | None
    shards: tuple[_ShardPlan, ...]
    intermediate_size: int
    hidden_size: int
    num_layers: int
    extra_files: tuple[str, ...]
    skipped_files: tuple[str, ...]


def _check_architecture(config: dict[str, Any], src: Path) -> None:
    where = src / CONFIG_NAME
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise UnsupportedModelError(
            f"{where}: the model is already quantised ({method}); pad the unquantised model "
            "before quantising it"
        )
    archs = config.get("architectures")
    if archs:
        bad = [a for a in archs if a not in SUPPORTED_ARCHITECTURES]
        if bad:
            raise UnsupportedModelError(
                f"{where}: architecture {', '.join(bad)} is not a supported Llama/Qwen2-style "
                f"dense MLP (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
            )
    elif config.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{where}: no `architectures` and model_type {config.get('model_type')!r} is not "
            f"one of {', '.join(SUPPORTED_MODEL_TYPES)}"
        )


def _config_int(config: dict[str, Any], key: str, src: Path) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(
            f"{src / CONFIG_NAME}: `{key}` must be a positive integer, got {value!r}"
        )
    return value


def _shard_names(src: Path) -> tuple[list[str], dict[str, Any] | None]:
    index_path, single = src / INDEX_NAME, src / WEIGHTS_NAME
    if index_path.is_file():
        if single.exists():
            raise CheckpointError(
                f"{src}: both {WEIGHTS_NAME} and {INDEX_NAME} exist; keep only one"
            )
        index = _read_json(index_path)
        wmap = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wmap, dict) or not wmap:
            raise CheckpointError(f"{index_path}: missing or empty `weight_map`")
        names = sorted(set(wmap.values()))
        for name in names:
            if Path(name).name != name or not name.endswith(".safetensors"):
                raise CheckpointError(f"{index_path}: bad shard file name {name!r}")
        return names, index
    if single.is_file():
        return [WEIGHTS_NAME], None
    raise CheckpointError(f"{src}: no {WEIGHTS_NAME} or {INDEX_NAME} (only safetensors are read)")


def _list_files(src: Path, taken: set[str]) -> tuple[list[str], list[str]]:
    extra, skipped = [], []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        key = rel.as_posix()
        if key in taken:
            continue
        if any(rel.match(pat) for pat in SKIPPED_PATTERNS):
            skipped.append(key)
        else:
            extra.append(key)
    return extra, skipped


def plan_checkpoint(src: Path, target: int) -> CheckpointPlan:
    """Read and validate a checkpoint and decide what happens to every tensor.

    Args:
        src: A Hugging Face model directory.
        target: The new intermediate size.

    Returns:
        The plan.

    Raises:
        UnsupportedModelError: Not a Llama/Qwen2-style dense MLP, or already quantised.
        CheckpointError: Missing/mis-shaped/duplicated tensors, inconsistent index, bad files.
        PaddingError: ``target`` smaller than the current size.
    """
    src = Path(src)
    if not src.is_dir():
        raise CheckpointError(f"{src}: not a directory")
    config = read_config(src)
    _check_architecture(config, src)
    inter = _config_int(config, "intermediate_size", src)
    hidden = _config_int(config, "hidden_size", src)
    layers = _config_int(config, "num_hidden_layers", src)
    if target < inter:
        raise PaddingError(
            f"target intermediate_size {target} is smaller than the current {inter} "
            f"({src / CONFIG_NAME}); padding only grows the MLP"
        )

    names, index = _shard_names(src)
    headers = {n: read_header(src / n) for n in names}
    owner: dict[str, str] = {}
    for n, h in headers.items():
        for t in h.tensors:
            if t.name in owner:
                raise CheckpointError(
                    f"{src}: tensor `{t.name}` is in both {owner[t.name]} and {n}"
                )
            owner[t.name] = n
    if index is not None:
        wmap: dict[str, str] = index["weight_map"]
        missing = [k for k, v in wmap.items() if owner.get(k) != v]
        if missing:
            k = missing[0]
            raise CheckpointError(
                f"{src / INDEX_NAME}: {len(missing)} tensor(s) listed in the index are not in "
                f"their shard, e.g. `{k}` (listed in {wmap[k]}, found in "
                f"{owner.get(k, 'no shard')})"
            )
        unlisted = sorted(set(owner) - set(wmap))
        if unlisted:
            raise CheckpointError(
                f"{src / INDEX_NAME}: {len(unlisted)} tensor(s) are in shards but not in the "
                f"index, e.g. `{unlisted[0]}` in {owner[unlisted[0]]}"
            )

    # Classify tensors and check the MLP.
    infos = {t.name: t for h in headers.values() for t in h.tensors}
    found: dict[tuple[int, str, str], TensorInfo] = {}
    foreign = []
    for name, t in infos.items():
        m = _MLP_RE.match(name)
        if m:
            found[(int(m["layer"]), m["proj"], m["kind"])] = t
        elif ".mlp." in name or name.startswith("mlp."):
            foreign.append(name)
    if foreign:
        raise UnsupportedModelError(
            f"{src}: not a Llama/Qwen2-style gate/up/down MLP: {len(foreign)} other MLP "
            f"tensor(s), e.g. {', '.join(sorted(foreign)[:5])}"
        )
    if not found:
        some = ", ".join(sorted(infos)[:5])
        raise UnsupportedModelError(
            f"{src}: no `layers.N.mlp.{{gate,up,down}}_proj.weight` tensors found "
            f"(tensors look like: {some})"
        )
    beyond = sorted({k[0] for k in found if k[0] >= layers})
    if beyond:
        raise CheckpointError(
            f"{src}: MLP tensors for layer(s) {beyond} but config.json says "
            f"num_hidden_layers {layers}"
        )
    missing_w = [
        f"layers.{i}.mlp.{p}.weight"
        for i in range(layers)
        for p in ("gate_proj", "up_proj", "down_proj")
        if (i, p, "weight") not in found
    ]
    if missing_w:
        raise CheckpointError(
            f"{src}: {len(missing_w)} MLP weight(s) missing, e.g. {', '.join(missing_w[:5])}"
        )
    has_bias = {k[1] for k in found if k[2] == "bias"}
    for i in range(layers):
        for p in has_bias:
            if (i, p, "bias") not in found:
                raise CheckpointError(f"{src}: layers.{i}.mlp.{p}.bias is missing")

    ops: dict[str, tuple[str, tuple[int, ...]]] = {}
    for (_layer, proj, kind), t in found.items():
        if kind == "weight":
            expected = (hidden, inter) if proj == "down_proj" else (inter, hidden)
        else:
            expected = (hidden,) if proj == "down_proj" else (inter,)
        if t.shape != expected:
            raise CheckpointError(
                f"{src / owner[t.name]}: `{t.name}` has shape {list(t.shape)}, expected "
                f"{list(expected)} from config.json (hidden_size {hidden}, "
                f"intermediate_size {inter})"
            )
        if t.dtype not in FLOAT_DTYPES:
            raise UnsupportedModelError(
                f"{src / owner[t.name]}: `{t.name}` has dtype {t.dtype}; only floating-point "
                "weights can be padded (is the model quantised?)"
            )
        if proj == "down_proj":
            if kind == "weight":
                ops[t.name] = ("cols", (hidden, target))
        else:
            ops[t.name] = ("rows", (target, *t.shape[1:]))

    shards = tuple(
        _ShardPlan(
            n,
            h,
            tuple(
                _TensorPlan(t, *ops[t.name]) if t.name in ops else _TensorPlan(t, "copy", t.shape)
                for t in h.tensors
            ),
        )
        for n, h in headers.items()
    )
    taken = {*names, CONFIG_NAME}
    if index is not None:
        taken.add(INDEX_NAME)
    extra, skipped = _list_files(src, taken)
    return CheckpointPlan(
        src, config, index, shards, inter, hidden, layers, tuple(extra), tuple(skipped)
    )
