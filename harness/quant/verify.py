"""Post-conditions of a quantised checkpoint: it is complete, smaller, close to its source.

Users' most common complaint about quantisers is that they "succeed" while doing nothing (no
linear matched, a checkpoint larger than the source). Every check here reads the files that
were written, not the quantiser's own account.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness.atomic import write_json
from harness.quant import QuantizeError
from harness.quant.autoawq_backend import ScaleRecord

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)
"""Files copied from the source model (AutoAWQ saves no tokenizer and flips sampling on in
``generation_config.json``)."""

MAX_REL_ERROR = 0.5
"""A dequantised linear further than this from its source weight (relative Frobenius error)
is broken: 4-bit group quantisation lands near 0.1."""


def weight_files(d: Path) -> list[Path]:
    """The safetensors files of a model dir."""
    return sorted(d.glob("*.safetensors"))


def weight_bytes(d: Path) -> int:
    """Bytes of a model dir's safetensors files."""
    return sum(p.stat().st_size for p in weight_files(d))


def _tensor_index(d: Path) -> dict[str, Path]:
    from safetensors import safe_open

    index: dict[str, Path] = {}
    for f in weight_files(d):
        with safe_open(str(f), framework="pt") as sf:
            for k in sf.keys():  # noqa: SIM118 (safe_open has no __iter__)
                index[k] = f
    if not index:
        raise QuantizeError(f"{d}: no safetensors weights")
    return index


def parameter_count(d: Path) -> int:
    """Number of parameters stored in a model dir (from the safetensors headers)."""
    from safetensors import safe_open

    n = 0
    for f in weight_files(d):
        with safe_open(str(f), framework="pt") as sf:
            for k in sf.keys():  # noqa: SIM118
                n += math.prod(sf.get_slice(k).get_shape())
    return n


FORMAT_TENSORS: dict[str, tuple[str, ...]] = {
    "awq": ("qweight", "qzeros", "scales"),
    "compressed-tensors": ("weight_packed", "weight_scale", "weight_shape"),
}
"""The tensors every quantised linear has, per checkpoint format (``quant_method``): AutoAWQ's
GEMM layout, compressed-tensors' ``pack-quantized`` (``weight_zero_point`` only when
asymmetric)."""


def quantized_linears(d: Path, fmt: str = "awq") -> list[str]:
    """Names of the quantised linears in a checkpoint: those with every tensor of
    :data:`FORMAT_TENSORS` of ``fmt``."""
    keys = set(_tensor_index(d))
    first, *rest = FORMAT_TENSORS[fmt]
    return sorted(
        k[: -len(first) - 1]
        for k in keys
        if k.endswith("." + first) and all(k[: -len(first)] + t in keys for t in rest)
    )


def finalize_model_dir(
    src: Path,
    out: Path,
    quant: dict[str, Any] | Callable[[dict[str, Any]], dict[str, tuple[Any, Any]]],
) -> dict[str, Any]:
    """Copy the tokenizer and chat template from the source and check ``config.json``.

    Args:
        src: Source model dir.
        out: The quantised model dir the quantiser wrote.
        quant: The expected ``quantization_config`` entries, or a function of the written
            ``quantization_config`` giving what differs (field -> (have, want)).

    Returns:
        The final ``config.json`` dict.

    Raises:
        QuantizeError: ``quantization_config`` missing or different from what was asked.
    """
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    src_cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    qc = cfg.get("quantization_config") or {}
    wrong = (
        quant(qc)
        if callable(quant)
        else {k: (qc.get(k), v) for k, v in quant.items() if qc.get(k) != v}
    )
    if wrong:
        raise QuantizeError(
            f"{cfg_path}: quantization_config differs from the request (have, want): {wrong}"
        )
    # The quantisers turn the KV cache off for calibration and save that; serving wants it back.
    # The positions limit (`model.max_position_embeddings`) is the source's, whatever AutoAWQ
    # rebuilt the config from.
    for key in ("use_cache", "max_position_embeddings"):
        if key in src_cfg:
            cfg[key] = src_cfg[key]
    write_json(cfg_path, cfg, sort_keys=False)
    return cfg


def check_linears(found: list[str], expected: list[str]) -> None:
    """Fail unless exactly the expected linears were quantised.

    Raises:
        QuantizeError: Zero linears, or a different set than the architecture has.
    """
    if not found:
        raise QuantizeError(
            f"the quantised checkpoint has no quantised linears (expected {len(expected)}): the "
            "quantiser matched nothing"
        )
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise QuantizeError(
            f"quantised {len(found)} linears, expected {len(expected)}; missing: "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}; unexpected: {extra[:5]}"
        )


def size_report(src: Path, out: Path) -> dict[str, float]:
    """Sizes of source and output, and their ratio; fails when the output is not smaller.

    Returns:
        ``source_bytes``, ``output_bytes``, ``size_ratio`` (output / source on disk) and
        ``size_ratio_vs_16bit`` (output / 2 bytes per source parameter).

    Raises:
        QuantizeError: The output is at least as large as the source.
    """
    s, o = weight_bytes(src), weight_bytes(out)
    if s == 0:
        raise QuantizeError(f"{src}: no safetensors weights")
    if o >= s:
        raise QuantizeError(
            f"the quantised checkpoint ({o} bytes in {out}) is not smaller than its source "
            f"({s} bytes in {src})"
        )
    params16 = 2 * parameter_count(src)
    return {
        "source_bytes": float(s),
        "output_bytes": float(o),
        "size_ratio": o / s,
        "size_ratio_vs_16bit": o / params16,
    }


def _scalings(records: Iterable[ScaleRecord]) -> tuple[dict[str, Any], dict[str, Any]]:
    col: dict[str, Any] = {}
    row: dict[str, Any] = {}
    for r in records:
        for name in r.layers:
            col[name] = r.scales if name not in col else col[name] * r.scales
        if r.prev_is_linear:
            row[r.prev_op] = r.scales
    return col, row


def _dequantized(out_index: dict[str, Path], name: str, group_size: int, fmt: str) -> Any:
    """A quantised linear of the checkpoint, dequantised to float64 ``[out, in]``."""
    import numpy as np
    import torch
    from safetensors import safe_open

    def get(suffix: str) -> Any:
        with safe_open(str(out_index[name + suffix]), framework="pt") as sf:
            return sf.get_tensor(name + suffix)

    if fmt == "compressed-tensors":
        from shopbench_kernels.ct_dequant import dequantize_pack_quantized

        zp = get(".weight_zero_point").numpy() if name + ".weight_zero_point" in out_index else None
        shape = tuple(int(x) for x in get(".weight_shape").tolist())
        deq = dequantize_pack_quantized(
            get(".weight_packed").numpy(),
            get(".weight_scale").to(torch.float32).numpy(),
            zp,
            (shape[0], shape[1]),
        )
        return deq.astype(np.float64)
    from shopbench_kernels.awq_dequant import dequantize_gemm

    deq = dequantize_gemm(
        get(".qweight").numpy(),
        get(".qzeros").numpy(),
        get(".scales").to(torch.float32).numpy(),
        group_size,
    )  # [in, out]
    return deq.T.astype(np.float64)


def reconstruction_errors(
    src: Path,
    out: Path,
    names: list[str],
    group_size: int,
    records: list[ScaleRecord],
    fmt: str = "awq",
) -> list[dict[str, Any]]:
    """Relative Frobenius error of each dequantised linear against its source weight.

    The reference is the source weight under AWQ's equivalent scaling (input columns times the
    recorded scales, output rows divided by the scales of the linear after it), which is the
    weight the quantiser clipped and rounded; the model's other tensors absorb the scaling
    exactly.

    Args:
        src: Source model dir.
        out: Quantised model dir.
        names: Linear names (``model.layers.0.self_attn.q_proj``...).
        group_size: Quantisation group size.
        records: Scales recorded during quantisation (empty: compare unscaled).
        fmt: Checkpoint format, a key of :data:`FORMAT_TENSORS`.

    Returns:
        One row per linear: ``layer``, ``index``, ``kind``, ``in_features``, ``out_features``,
        ``rel_error``.
    """
    import torch
    from safetensors import safe_open

    from shopbench_kernels.awq_dequant import relative_error

    col, row = _scalings(records)
    src_index, out_index = _tensor_index(src), _tensor_index(out)
    rows = []
    for name in names:
        with safe_open(str(src_index[name + ".weight"]), framework="pt") as sf:
            ref = sf.get_tensor(name + ".weight").to(torch.float64)  # [out, in]
        if name in col:
            ref = ref * col[name].to(torch.float64)[None, :]
        if name in row:
            s = row[name].to(torch.float64)
            ref[-s.shape[0] :, :] = ref[-s.shape[0] :, :] / s[:, None]
        deq = _dequantized(out_index, name, group_size, fmt)  # [out, in]
        parts = name.split(".")
        rows.append(
            {
                "layer": name,
                "index": int(parts[2]),
                "kind": parts[-1],
                "in_features": int(deq.shape[1]),
                "out_features": int(deq.shape[0]),
                "rel_error": relative_error(ref.numpy(), deq),
            }
        )
    return rows


def check_errors(rows: list[dict[str, Any]], limit: float = MAX_REL_ERROR) -> dict[str, float]:
    """Summary statistics of the per-linear errors; fails on NaN/inf or an error above ``limit``.

    Raises:
        QuantizeError: A broken linear (named).
    """
    errs = [r["rel_error"] for r in rows]
    bad = [r for r in rows if not math.isfinite(r["rel_error"]) or r["rel_error"] > limit]
    if bad:
        listed = ", ".join(f"{r['layer']} ({r['rel_error']:.3g})" for r in bad[:5])
        raise QuantizeError(
            f"{len(bad)} quantised linear(s) do not reconstruct their source weight (relative "
            f"error above {limit} or not finite): {listed}"
        )
    ordered = sorted(errs)
    return {
        "recon_error_mean": sum(errs) / len(errs),
        "recon_error_median": ordered[len(ordered) // 2],
        "recon_error_max": ordered[-1],
    }
