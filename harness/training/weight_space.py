"""Weight-space merges of LoRA adapters into a base model: adapter averaging and WiSE-FT.

Plain tensors over safetensors files, streamed one tensor at a time (a 72B base never has to
fit in memory: the output is flushed shard by shard at ``max_shard_bytes``). For a base
tensor ``W`` and adapters ``i = 1..N``:

* a LoRA-adapted linear has the delta ``ΔW_i = B_i·A_i·s_i`` (``s_i = alpha/r``, or
  ``alpha/sqrt(r)`` with rsLoRA); the fine-tuned weight averaged over the adapters is
  ``W + mean_i ΔW_i``. The deltas are averaged, not ``A`` and ``B`` separately:
  ``mean(B)·mean(A)`` is not ``mean(B·A)``. An adapter that does not touch ``W`` contributes
  ``ΔW_i = 0``.
* a module trained in full (``modules_to_save``, e.g. ``lm_head``) has its own weight ``M_i``;
  the averaged fine-tuned weight is ``mean_i M_i`` (an adapter without it contributes ``W``).
* WiSE-FT with ``θ``: ``(1 − θ)·W + θ·W_ft``. For LoRA tensors this is computed as
  ``W + θ·mean_i ΔW_i`` (the same value, without cancellation), for fully trained ones as
  ``(1 − θ)·W + θ·mean_i M_i``. ``θ = 0`` gives the base exactly, ``θ = 1`` the plain merge
  exactly (``W + B·A·s``, the arithmetic of peft's ``merge_and_unload``).
* every other tensor (embeddings, norms) is the base's, cast to the output dtype.

Arithmetic is float32 (a 16-bit base is widened exactly), then cast to the output dtype. Only
safetensors are read. Non-weight files of the base (``config.json`` with its dtype updated,
``generation_config.json``, tokenizer files, ...) are copied; the output is written to a
temporary sibling and renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.atomic import write_json
from harness.errors import HarnessError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
DTYPES = ("float32", "bfloat16", "float16")
_PEFT_PREFIX = "base_model.model."
_LORA_RE = re.compile(r"^(?P<module>.+)\.lora_(?P<part>A|B|embedding_A|embedding_B)(\.weight)?$")
_SAVED_RE = re.compile(r"\.modules_to_save(\.[^.]+)?(?=\.[^.]+$)")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``"5GB"`` (10^9) or ``"200KiB"`` (2^10), as transformers reads
    ``max_shard_size``.

    Args:
        text: An integer, or a number with an optional unit (B, KB, MB, GB, TB, KiB, ... TiB).

    Returns:
        The size in bytes.

    Raises:
        ValueError: Not a size.
    """
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 5GB, 500MB, 200KiB)")
    size = int(float(m.group(1)) * _SIZE_UNITS[unit])
    if size < 1:
        raise ValueError(f"not a positive size: {text!r}")
    return size


@dataclass(frozen=True)
class _Lora:
    """One LoRA pair of an adapter: tensor keys and scale."""

    a_key: str
    b_key: str
    scale: float
    embedding: bool


@dataclass
class Adapter:
    """A saved peft LoRA adapter, its tensors read on demand.

    Attributes:
        path: The adapter dir.
        lora: Base tensor name -> its LoRA pair.
        full: Base tensor name -> key of its fully trained replacement (``modules_to_save``).
    """

    path: Path
    lora: dict[str, _Lora] = field(default_factory=dict)
    full: dict[str, str] = field(default_factory=dict)
    _file: Any = None

    def tensor(self, key: str) -> Any:
        """One tensor of the adapter file, as float32."""
        import torch

        return self._file.get_tensor(key).to(torch.float32)

    def delta(self, name: str) -> Any:
        """``ΔW = B·A·scale`` of a base tensor (float32), transposed for embeddings."""
        lo = self.lora[name]
        a, b = self.tensor(lo.a_key), self.tensor(lo.b_key)
        if lo.embedding:  # peft's Embedding: (B @ A).T * scale
            return (b @ a).T * lo.scale
        return (b @ a) * lo.scale


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    # peft's get_pattern_key: the first pattern matching a suffix of the module name.
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def _check_adapter_config(cfg: dict[str, Any], where: Path) -> None:
    if cfg.get("peft_type", "LORA") != "LORA":
        raise HarnessError(f"{where}: a {cfg.get('peft_type')} adapter, not LoRA")
    unsupported = [
        k
        for k in ("use_dora", "lora_bias", "layer_replication", "target_parameters", "use_qalora")
        if cfg.get(k)
    ]
    if cfg.get("trainable_token_indices"):
        unsupported.append("trainable_token_indices")
    if unsupported:
        raise HarnessError(
            f"{where}: cannot merge in weight space an adapter using {', '.join(unsupported)}"
        )


def open_adapter(adapter_dir: Path, stack: ExitStack) -> Adapter:
    """Index a saved LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``).

    Args:
        adapter_dir: The adapter dir peft's ``save_pretrained`` wrote.
        stack: Keeps the safetensors file open until the caller is done.

    Returns:
        The adapter, its tensors mapped to the base tensor names they change.

    Raises:
        HarnessError: Missing files, a non-LoRA or unsupported adapter, or tensors that are
            neither LoRA pairs nor fully trained modules.
    """
    from safetensors import safe_open

    cfg_file, weights = adapter_dir / ADAPTER_CONFIG, adapter_dir / ADAPTER_WEIGHTS
    if not cfg_file.is_file() or not weights.is_file():
        raise HarnessError(
            f"{adapter_dir}: not a saved adapter (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})"
        )
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    _check_adapter_config(cfg, cfg_file)
    f = stack.enter_context(safe_open(str(weights), framework="pt"))
    adapter = Adapter(path=adapter_dir, _file=f)
    pairs: dict[str, dict[str, str]] = {}
    for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
        name = key.removeprefix(_PEFT_PREFIX)
        m = _LORA_RE.match(name)
        if m is not None:
            pairs.setdefault(m["module"], {})[m["part"]] = key
            continue
        if ".lora_" in name:
            raise HarnessError(f"{weights}: unsupported adapter tensor {key!r}")
        adapter.full[_SAVED_RE.sub("", name)] = key
    alpha, rslora = cfg.get("lora_alpha", 8), bool(cfg.get("use_rslora"))
    for module, parts in sorted(pairs.items()):
        embedding = "embedding_A" in parts or "embedding_B" in parts
        a_key = parts.get("embedding_A" if embedding else "A")
        b_key = parts.get("embedding_B" if embedding else "B")
        if a_key is None or b_key is None:
            raise HarnessError(f"{weights}: LoRA module {module!r} lacks its A or B matrix")
        r = int(f.get_slice(a_key).get_shape()[0])
        a = float(_pattern_value(cfg.get("alpha_pattern") or {}, module, alpha))
        scale = a / math.sqrt(r) if rslora else a / r
        name = f"{module}.weight"
        if name in adapter.full:
            raise HarnessError(f"{weights}: {name!r} is both LoRA-adapted and trained in full")
        adapter.lora[name] = _Lora(a_key, b_key, scale, embedding)
    return adapter


def base_weight_files(base_dir: Path) -> list[Path]:
    """The base model's safetensors files, in index order (or sorted).

    Raises:
        HarnessError: No safetensors weights (pickles are never loaded).
    """
    index = base_dir / INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (base_dir / n).is_file()]
        if missing:
            raise HarnessError(f"{index}: names missing shard(s) {missing[:3]}")
        return [base_dir / n for n in names]
    files = sorted(base_dir.glob("*.safetensors"))
    if not files:
        raise HarnessError(f"{base_dir}: no safetensors weights (pickles are not loaded)")
    return files


@dataclass(frozen=True)
class TensorDelta:
    """What the merge did to one output tensor.

    Attributes:
        name: The tensor.
        kind: ``lora`` (LoRA deltas), ``full`` (trained in full), ``base`` (untouched).
        shape: Its shape.
        sources: How many adapters changed it.
        max_abs_delta: ``max |out − W_base|`` in float32, after the cast to the output dtype.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    sources: int
    max_abs_delta: float

    def row(self) -> dict[str, Any]:
        """A JSON-able row."""
        return {
            "tensor": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "sources": self.sources,
            "max_abs_delta": self.max_abs_delta,
        }


@dataclass(frozen=True)
class MergeReport:
    """The outcome of :func:`merge_adapters`.

    Attributes:
        out_dir: The merged model dir.
        theta: The WiSE-FT coefficient used (1.0: the plain merge of the averaged adapters).
        adapters: The averaged adapter dirs, in order.
        dtype: The output dtype.
        files: The written weight files.
        tensors: One entry per output tensor, in output order.
    """

    out_dir: Path
    theta: float
    adapters: tuple[Path, ...]
    dtype: str
    files: tuple[str, ...]
    tensors: tuple[TensorDelta, ...]

    def summary(self) -> dict[str, Any]:
        """Aggregates of the per-tensor deltas: counts, the overall maximum, the maximum per
        module kind (layer indices removed, e.g. ``model.layers.*.self_attn.q_proj.weight``)."""
        by_module: dict[str, float] = {}
        for t in self.tensors:
            if t.kind == "base":
                continue
            key = re.sub(r"\.\d+\.", ".*.", t.name)
            by_module[key] = max(by_module.get(key, 0.0), t.max_abs_delta)
        changed = [t for t in self.tensors if t.kind != "base"]
        return {
            "tensors": len(self.tensors),
            "tensors_changed": len(changed),
            "lora_tensors": sum(t.kind == "lora" for t in self.tensors),
            "full_tensors": sum(t.kind == "full" for t in self.tensors),
            "max_abs_delta": max((t.max_abs_delta for t in changed), default=0.0),
            "max_abs_delta_untouched": max(
                (t.max_abs_delta for t in self.tensors if t.kind == "base"), default=0.0
            ),
            "max_abs_delta_by_module": dict(sorted(by_module.items())),
        }


def combine(
    base: Any, adapters: Sequence[Adapter], name: str, theta: float
) -> tuple[Any, str, int]:
    """The merged float32 value of one base tensor.

    Args:
        base: The base tensor (any float dtype).
        adapters: The adapters being averaged.
        name: The tensor's name in the base checkpoint.
        theta: WiSE-FT coefficient in [0, 1].

    Returns:
        ``(value, kind, sources)``: float32 tensor, ``lora``/``full``/``base``, adapters that
        touch it.

    Raises:
        HarnessError: An adapter's tensor has a different shape than the base's.
    """
    import torch

    w = base.to(torch.float32)
    touching = [a for a in adapters if name in a.lora or name in a.full]
    if not touching:
        return w, "base", 0
    n = len(adapters)
    kind = "full" if any(name in a.full for a in touching) else "lora"
    if theta == 0:
        return w, kind, len(touching)
    if kind == "lora":
        total = None
        for a in touching:
            d = a.delta(name)
            _check_shape(d, w, name, a)
            total = d if total is None else total + d
        assert total is not None
        mean = total if n == 1 else total / n
        return w + (mean if theta == 1 else theta * mean), kind, len(touching)
    acc = None
    for a in adapters:
        if name in a.full:
            ft = a.tensor(a.full[name])
        elif name in a.lora:
            ft = w + a.delta(name)
        else:
            ft = w
        _check_shape(ft, w, name, a)
        acc = ft if acc is None else acc + ft
    assert acc is not None
    mean = acc if n == 1 else acc / n
    if theta == 1:
        return mean, kind, len(touching)
    return (1 - theta) * w + theta * mean, kind, len(touching)


def _check_shape(t: Any, w: Any, name: str, a: Adapter) -> None:
    if tuple(t.shape) != tuple(w.shape):
        raise HarnessError(
            f"{a.path}: its change to {name!r} has shape {tuple(t.shape)}, the base tensor "
            f"{tuple(w.shape)} (an adapter of another model?)"
        )


def _base_tensors(files: Sequence[Path]) -> Iterator[tuple[str, Any]]:
    from safetensors import safe_open

    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                yield key, f.get_tensor(key)


class _ShardWriter:
    """Accumulates output tensors and flushes a shard when the next would pass the limit."""

    def __init__(self, tmp: Path, max_bytes: int) -> None:
        self.tmp, self.max_bytes = tmp, max_bytes
        self.pending: dict[str, Any] = {}
        self.pending_bytes = 0
        self.shards: list[list[str]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: Any) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + nbytes > self.max_bytes:
            self.flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += nbytes
        self.total_bytes += nbytes

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        save_file(
            self.pending, str(self.tmp / f".part-{len(self.shards)}"), metadata={"format": "pt"}
        )
        self.shards.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> list[str]:
        """Rename the parts to transformers' shard names and write the index."""
        self.flush()
        n = len(self.shards)
        if n == 0:
            raise HarnessError("the base model has no tensors")
        names = (
            ["model.safetensors"]
            if n == 1
            else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        )
        for i, name in enumerate(names):
            os.replace(self.tmp / f".part-{i}", self.tmp / name)
        if n > 1:
            weight_map = {t: names[i] for i, shard in enumerate(self.shards) for t in shard}
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
            write_json(self.tmp / INDEX_NAME, index, sort_keys=False, durable=False)
        return names


def _copy_model_files(base_dir: Path, tmp: Path, dtype: str) -> None:
    """Every non-weight file of the base; ``config.json`` with the output dtype."""
    for p in sorted(base_dir.iterdir()):
        if not p.is_file() or p.name == INDEX_NAME or p.name.endswith(_WEIGHT_SUFFIXES):
            continue
        if p.name == "config.json":
            cfg = json.loads(p.read_text(encoding="utf-8"))
            cfg["dtype"] = dtype
            if "torch_dtype" in cfg:
                cfg["torch_dtype"] = dtype
            write_json(tmp / p.name, cfg, sort_keys=False, durable=False)
        else:
            shutil.copyfile(p, tmp / p.name)


def merge_adapters(
    base_dir: Path,
    adapter_dirs: Sequence[Path],
    out_dir: Path,
    *,
    theta: float = 1.0,
    dtype: str = "bfloat16",
    max_shard_bytes: int = 5 * 10**9,
) -> MergeReport:
    """Average LoRA adapters' weight deltas, interpolate with the base (WiSE-FT), save.

    Args:
        base_dir: The base model dir (safetensors, ``config.json``).
        adapter_dirs: One or more saved peft LoRA adapters of that base (averaged).
        out_dir: Destination of the merged model (replaced).
        theta: WiSE-FT coefficient: 0 gives the base, 1 the plain merge of the average.
        dtype: Output dtype: ``float32``, ``bfloat16`` or ``float16``.
        max_shard_bytes: Largest output shard (a larger single tensor gets a shard of its own).

    Returns:
        What was merged and the per-tensor deltas.

    Raises:
        HarnessError: Bad arguments, an adapter that is not a LoRA adapter of this base (a
            tensor the base lacks or of another shape), or a base without safetensors.
    """
    import torch

    if not adapter_dirs:
        raise HarnessError("merge_adapters: no adapters to merge")
    if not 0.0 <= theta <= 1.0:
        raise HarnessError(f"merge_adapters: theta must lie in [0, 1], got {theta}")
    if dtype not in DTYPES:
        raise HarnessError(f"merge_adapters: dtype must be one of {DTYPES}, got {dtype!r}")
    if max_shard_bytes < 1:
        raise HarnessError(
            f"merge_adapters: max_shard_bytes must be positive, got {max_shard_bytes}"
        )
    out_dtype = getattr(torch, dtype)
    files = base_weight_files(base_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    deltas: list[TensorDelta] = []
    with ExitStack() as stack:
        adapters = [open_adapter(Path(d), stack) for d in adapter_dirs]
        writer = _ShardWriter(tmp, max_shard_bytes)
        seen: set[str] = set()
        for name, base in _base_tensors(files):
            seen.add(name)
            if not base.is_floating_point():
                if any(name in a.lora or name in a.full for a in adapters):
                    raise HarnessError(f"{base_dir}: {name!r} is not a float tensor")
                writer.add(name, base)
                deltas.append(TensorDelta(name, "base", tuple(base.shape), 0, 0.0))
                continue
            value, kind, n = combine(base, adapters, name, theta)
            out = value.to(out_dtype)
            gap = (out.to(torch.float32) - base.to(torch.float32)).abs()
            deltas.append(
                TensorDelta(
                    name, kind, tuple(base.shape), n, float(gap.max()) if gap.numel() else 0.0
                )
            )
            writer.add(name, out)
        for a in adapters:
            unknown = sorted((set(a.lora) | set(a.full)) - seen)
            if unknown:
                raise HarnessError(
                    f"{a.path}: changes tensor(s) the base at {base_dir} does not have: "
                    f"{unknown[:3]}{' ...' if len(unknown) > 3 else ''}"
                )
        names = writer.finish()
    _copy_model_files(base_dir, tmp, dtype)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return MergeReport(
        out_dir=out_dir,
        theta=float(theta),
        adapters=tuple(Path(d) for d in adapter_dirs),
        dtype=dtype,
        files=tuple(names),
        tensors=tuple(deltas),
    )
