"""Tensor-parallel arithmetic for Llama/Qwen2-style models, with and without 4-bit AWQ.

Pure integer math on a Hugging Face ``config.json`` dict; no torch. The rules are those
vLLM applies when it builds the sharded layers:

* attention: ``num_attention_heads % tp == 0``; KV heads are split when
  ``num_key_value_heads % tp == 0`` and replicated when ``tp % num_key_value_heads == 0``;
* the MLP: ``gate_proj``/``up_proj`` are column-parallel (their outputs, the intermediate
  channels, are split) and ``down_proj`` is row-parallel (its inputs are split), so
  ``intermediate_size % tp == 0``;
* AWQ (``AWQLinearMethod.create_weights``): every shard needs
  ``input_size_per_partition % group_size == 0`` and
  ``output_size_per_partition % pack_factor == 0`` with ``pack_factor = 32 // 4 = 8``.
  Column-parallel layers (q/k/v, gate/up) keep their full input and split their outputs;
  row-parallel layers (o_proj, down_proj) split their inputs and keep their full outputs.
  Group size ``-1`` (one group per input row) means the group spans the full input, so a
  row-parallel layer cannot be split at all.

Qwen2-72B's ``intermediate_size`` 29568 = 128 x 231 fails at TP 4 with group 128
(29568 / 4 = 7392 = 128 x 57.75); 29696 = 512 x 58 serves TP 1, 2, 4 and 8.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shopbench_kernels.errors import PaddingError

AWQ_PACK_FACTOR = 8
"""int4 values per int32 in AWQ's packed tensors (vLLM's ``pack_factor``)."""

AWQ_CLIP_MULTIPLE = 64
"""AutoAWQ's clipping search splits output channels in batches of 256 or 64 and asserts that
one of them divides ``out_features`` (``_compute_best_clip``)."""

AWQ_UNCLIPPED = ("q_proj", "k_proj")
"""Linears AutoAWQ excludes from the clipping search (``avoid_clipping``)."""

DEFAULT_TP_CANDIDATES = tuple(range(1, 17))


@dataclass(frozen=True)
class ModelDims:
    """The dimensions of a decoder that decide how it shards.

    Attributes:
        hidden_size: Model width.
        intermediate_size: MLP width (gate/up outputs, down inputs).
        num_attention_heads: Query heads.
        num_key_value_heads: Key/value heads (GQA); equals the query heads without GQA.
        head_dim: Per-head width (``head_dim`` in the config, else hidden / heads).
    """

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelDims:
        """Read the dimensions from a Hugging Face ``config.json`` dict.

        Args:
            config: The parsed ``config.json``.

        Returns:
            The dimensions.

        Raises:
            PaddingError: A required key is missing or not a positive integer.
        """

        def req(key: str) -> int:
            if key not in config:
                raise PaddingError(f"config.json: missing key `{key}`")
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PaddingError(
                    f"config.json: `{key}` must be a positive integer, got {value!r}"
                )
            return value

        hidden = req("hidden_size")
        heads = req("num_attention_heads")
        kv = req("num_key_value_heads") if config.get("num_key_value_heads") is not None else heads
        if config.get("head_dim") is not None:
            head_dim = req("head_dim")
        else:
            if hidden % heads:
                raise PaddingError(
                    f"config.json: hidden_size {hidden} is not divisible by "
                    f"num_attention_heads {heads} and no `head_dim` is given"
                )
            head_dim = hidden // heads
        return cls(hidden, req("intermediate_size"), heads, kv, head_dim)

    def with_intermediate(self, size: int) -> ModelDims:
        """A copy with another ``intermediate_size``."""
        return ModelDims(
            self.hidden_size,
            size,
            self.num_attention_heads,
            self.num_key_value_heads,
            self.head_dim,
        )


@dataclass(frozen=True)
class _Problem:
    message: str
    intermediate: bool  # fixable by padding intermediate_size


def _check_group_size(group_size: int | None) -> None:
    if group_size is None:
        return
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise PaddingError(f"group_size must be an integer, -1 or None, got {group_size!r}")
    if group_size < 1 and group_size != -1:
        raise PaddingError(f"group_size must be positive or -1, got {group_size}")


def _problems(dims: ModelDims, tp: int, group_size: int | None) -> list[_Problem]:
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise PaddingError(f"tensor parallel size must be a positive integer, got {tp!r}")
    _check_group_size(group_size)
    out: list[_Problem] = []
    heads, kv, hd = dims.num_attention_heads, dims.num_key_value_heads, dims.head_dim
    hidden, inter = dims.hidden_size, dims.intermediate_size

    heads_ok = heads % tp == 0
    if not heads_ok:
        out.append(_Problem(f"num_attention_heads {heads} is not divisible by tp {tp}", False))
    if kv % tp and tp % kv:
        out.append(
            _Problem(
                f"num_key_value_heads {kv} is neither divisible by tp {tp} nor a divisor of it "
                "(vLLM splits KV heads or replicates them, nothing in between)",
                False,
            )
        )
    inter_ok = inter % tp == 0
    if not inter_ok:
        out.append(_Problem(f"intermediate_size {inter} is not divisible by tp {tp}", True))
    if group_size is None:
        return out

    g_desc = f"group_size {group_size}"
    pack = AWQ_PACK_FACTOR

    def need_in(name: str, per_part: int, full: int, expr: str, fixable: bool) -> None:
        g = full if group_size == -1 else group_size
        if per_part % g:
            what = "the full input (group_size -1)" if group_size == -1 else g_desc
            out.append(
                _Problem(
                    f"AWQ {name}: input shard {expr} = {per_part} is not a multiple of {what}",
                    fixable,
                )
            )

    def need_out(name: str, per_part: int, expr: str, fixable: bool) -> None:
        if per_part % pack:
            out.append(
                _Problem(
                    f"AWQ {name}: output shard {expr} = {per_part} is not a multiple of the "
                    f"pack factor {pack}",
                    fixable,
                )
            )

    # Column-parallel layers read the whole hidden state.
    need_in("q/k/v_proj and gate/up_proj", hidden, hidden, "hidden_size", False)
    if heads_ok:
        need_out("q_proj", heads // tp * hd, f"{heads}/{tp} heads x head_dim {hd}", False)
        need_in(
            "o_proj", heads // tp * hd, heads * hd, f"{heads}/{tp} heads x head_dim {hd}", False
        )
    if kv % tp == 0 or tp % kv == 0:
        kv_pp = max(kv // tp, 1)
        need_out("k/v_proj", kv_pp * hd, f"{kv_pp} KV head(s) x head_dim {hd}", False)
    need_out("o_proj and down_proj", hidden, "hidden_size", False)
    if inter_ok:
        need_out("gate/up_proj", inter // tp, f"intermediate_size/tp = {inter}/{tp}", True)
        need_in("down_proj", inter // tp, inter, f"intermediate_size/tp = {inter}/{tp}", True)
    return out


def intermediate_multiple(tp_sizes: Iterable[int], group_size: int | None) -> int:
    """The number every served ``intermediate_size`` must be a multiple of.

    ``intermediate_size / tp`` must be an integer and, with AWQ, a multiple of both the group
    size (down_proj's input shard) and the pack factor (gate/up_proj's output shard).

    Args:
        tp_sizes: Tensor parallel sizes to serve.
        group_size: AWQ group size, or None for an unquantised model.

    Returns:
        The least common multiple over the TP sizes.

    Raises:
        PaddingError: Group size -1 with a TP size above 1 (no size works), or bad values.
    """
    _check_group_size(group_size)
    tps = sorted(set(tp_sizes))
    if not tps:
        raise PaddingError("no tensor parallel sizes given")
    per_shard = 1 if group_size is None else math.lcm(group_size, AWQ_PACK_FACTOR)
    if group_size == -1:
        if any(tp > 1 for tp in tps):
            raise PaddingError(
                "group_size -1 (one group per input row) cannot split down_proj's inputs: "
                "no intermediate_size serves tensor parallel sizes above 1"
            )
        per_shard = AWQ_PACK_FACTOR
    for tp in tps:
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise PaddingError(f"tensor parallel size must be a positive integer, got {tp!r}")
    return math.lcm(*(tp * per_shard for tp in tps))


def _target_for(dims: ModelDims, tp_sizes: Iterable[int], group_size: int | None) -> int:
    m = intermediate_multiple(tp_sizes, group_size)
    return -(-dims.intermediate_size // m) * m


def check_tp(config: Mapping[str, Any], tp: int, group_size: int | None) -> list[str]:
    """Why a model cannot be served at a tensor parallel size (empty when it can).

    Args:
        config: The model's ``config.json`` dict.
        tp: Tensor parallel size.
        group_size: AWQ group size (or -1), or None for an unquantised model.

    Returns:
        Human-readable reasons. Problems with ``intermediate_size`` end with the pad target
        that fixes them for this TP size.
    """
    dims = ModelDims.from_config(config)
    probs = _problems(dims, tp, group_size)
    if not any(p.intermediate for p in probs):
        return [p.message for p in probs]
    try:
        fix = (
            f"; pad intermediate_size to {_target_for(dims, [tp], group_size)} "
            f"(`harness pad SRC DST --tp {tp}"
            + (f" --group-size {group_size}`)" if group_size is not None else "`)")
        )
    except PaddingError as e:
        fix = f"; no padding fixes it: {e}"
    return [p.message + (fix if p.intermediate else "") for p in probs]


def valid_tp_sizes(
    config: Mapping[str, Any],
    group_size: int | None,
    candidates: Iterable[int] = DEFAULT_TP_CANDIDATES,
) -> list[int]:
    """The candidate tensor parallel sizes at which the model can be served.

    Args:
        config: The model's ``config.json`` dict.
        group_size: AWQ group size (or -1), or None for an unquantised model.
        candidates: TP sizes to try (default 1..16).

    Returns:
        The sizes with no problems, ascending.
    """
    dims = ModelDims.from_config(config)
    return [tp for tp in sorted(set(candidates)) if not _problems(dims, tp, group_size)]


def pad_target(config: Mapping[str, Any], tp_sizes: Iterable[int], group_size: int | None) -> int:
    """The smallest ``intermediate_size`` >= the current one that serves every TP size.

    Args:
        config: The model's ``config.json`` dict.
        tp_sizes: Tensor parallel sizes that must all work.
        group_size: AWQ group size (or -1), or None for an unquantised model.

    Returns:
        The target (the current size when it already works).

    Raises:
        PaddingError: A TP size fails for a reason padding the MLP cannot fix (attention
            heads, hidden size), listing every such reason.
    """
    dims = ModelDims.from_config(config)
    tps = sorted(set(tp_sizes))
    if not tps:
        raise PaddingError("no tensor parallel sizes given")
    unfixable = [
        f"tp {tp}: {p.message}"
        for tp in tps
        for p in _problems(dims, tp, group_size)
        if not p.intermediate
    ]
    if unfixable:
        raise PaddingError(
            "padding intermediate_size cannot make this model serve at the requested tensor "
            "parallel sizes:\n" + "\n".join(f"  - {m}" for m in unfixable)
        )
    target = _target_for(dims, tps, group_size)
    padded = dims.with_intermediate(target)
    assert all(not _problems(padded, tp, group_size) for tp in tps)
    return target


def awq_shape_problems(
    config: Mapping[str, Any], group_size: int, autoawq: bool = True
) -> list[str]:
    """Shapes AutoAWQ 0.2.9 cannot quantise (checked before any work).

    Every quantised linear (q/k/v/o_proj, gate/up/down_proj) needs its input dim divisible by
    the group size (``pseudo_quantize_tensor``) and its output dim by the pack factor 8
    (``WQLinear_GEMM``); the linears its clipping search visits (all but q_proj and k_proj)
    need their output dim divisible by 64 (``_compute_best_clip``). A tiny model with
    ``intermediate_size`` 352 = 32 x 11 fails the last rule and cannot be quantised at all.

    Args:
        config: The model's ``config.json`` dict.
        group_size: AWQ group size (or -1: one group per input row).
        autoawq: Check AutoAWQ's own output-dim rules; False: only the group rule, which
            every group-wise quantiser shares (llm-compressor packs along the input dim).

    Returns:
        One message per violated rule (empty when the model can be quantised).
    """
    _check_group_size(group_size)
    d = ModelDims.from_config(config)
    q_out = d.num_attention_heads * d.head_dim
    kv_out = d.num_key_value_heads * d.head_dim
    linears = {
        "q_proj": (d.hidden_size, q_out),
        "k_proj": (d.hidden_size, kv_out),
        "v_proj": (d.hidden_size, kv_out),
        "o_proj": (q_out, d.hidden_size),
        "gate_proj": (d.hidden_size, d.intermediate_size),
        "up_proj": (d.hidden_size, d.intermediate_size),
        "down_proj": (d.intermediate_size, d.hidden_size),
    }
    out = []
    for name, (n_in, n_out) in linears.items():
        if group_size != -1 and n_in % group_size:
            out.append(f"{name}: in_features {n_in} is not divisible by group_size {group_size}")
        if not autoawq:
            continue
        if n_out % AWQ_PACK_FACTOR:
            out.append(
                f"{name}: out_features {n_out} is not divisible by the pack factor "
                f"{AWQ_PACK_FACTOR}"
            )
        elif name not in AWQ_UNCLIPPED and n_out % AWQ_CLIP_MULTIPLE:
            out.append(
                f"{name}: out_features {n_out} is not divisible by {AWQ_CLIP_MULTIPLE} "
                "(AutoAWQ's clipping search asserts it)"
            )
    return out


def padding_table(
    config: Mapping[str, Any],
    group_size: int | None,
    tp_sizes: Iterable[int] = (),
    candidates: Iterable[int] = DEFAULT_TP_CANDIDATES,
    target: int | None = None,
) -> dict[str, Any]:
    """Which TP sizes work before and after padding.

    Args:
        config: The model's ``config.json`` dict.
        group_size: AWQ group size (or -1), or None for an unquantised model.
        tp_sizes: TP sizes the target must serve.
        candidates: TP sizes tabulated.
        target: An explicit target (default: :func:`pad_target` for ``tp_sizes``).

    Returns:
        ``{"group_size", "tp_sizes", "target", "serves_tp_sizes", "before", "after"}``; each
        side has ``intermediate_size``, ``valid_tp`` and ``problems`` (failing TP size ->
        reasons), plus ``awq_shape_problems`` when a group size is given.

    Raises:
        PaddingError: No target can be derived, or ``target`` is below the current size.
    """
    tps = sorted(set(tp_sizes))
    if target is None:
        target = pad_target(config, tps, group_size)
    current = ModelDims.from_config(config).intermediate_size
    if target < current:
        raise PaddingError(
            f"target intermediate_size {target} is smaller than the current {current}"
        )
    cands = sorted(set(candidates) | set(tps))

    def side(cfg: Mapping[str, Any]) -> dict[str, Any]:
        probs = {str(tp): check_tp(cfg, tp, group_size) for tp in cands}
        entry: dict[str, Any] = {
            "intermediate_size": cfg["intermediate_size"],
            "valid_tp": [tp for tp in cands if not probs[str(tp)]],
            "problems": {k: v for k, v in probs.items() if v},
        }
        if group_size is not None:
            entry["awq_shape_problems"] = awq_shape_problems(cfg, group_size)
        return entry

    after = side({**config, "intermediate_size": target})
    return {
        "group_size": group_size,
        "tp_sizes": tps,
        "target": target,
        "serves_tp_sizes": all(tp in after["valid_tp"] for tp in tps),
        "before": side(config),
        "after": after,
    }
