"""Quantisation with AutoAWQ 0.2.9 (the paper's tool).

AutoAWQ searches, per decoder layer, input-channel scales ``s`` that it folds into the
linears (``W * s`` on their input columns) and divides out of the operation before them (a
norm's weight, or the rows of the previous linear), then clips and quantises. The scales are
recorded here through AutoAWQ's ``quantizer_cls`` hook, so the post-check can compare each
dequantised weight with the source weight under the same equivalent scaling.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.quant import QuantizeError


@dataclass(frozen=True)
class ScaleRecord:
    """One AWQ scaling: ``layers`` got their input columns multiplied by ``scales``.

    Attributes:
        prev_op: Full name of the operation the scales were divided out of.
        prev_is_linear: Whether ``prev_op`` is a linear (then its last ``len(scales)`` output
            rows were divided by the scales) rather than a norm.
        layers: Full names of the scaled linears.
        scales: The per-input-channel scales (float32 tensor).
    """

    prev_op: str
    prev_is_linear: bool
    layers: tuple[str, ...]
    scales: Any


_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def source_dtype(config: dict[str, Any]) -> str:
    """The dtype the source checkpoint is stored in (``float16`` when unknown)."""
    name = config.get("dtype") or config.get("torch_dtype") or "float16"
    return _DTYPES.get(str(name).replace("torch.", ""), "float16")


def quantize_autoawq(
    src: Path,
    out: Path,
    *,
    tokenizer: Any,
    texts: list[str],
    max_seq_len: int,
    w_bit: int,
    group_size: int,
    zero_point: bool,
    version: str,
    trust_remote_code: bool,
) -> tuple[list[ScaleRecord], dict[str, Any]]:
    """Quantise a Hugging Face model dir into ``out`` with AutoAWQ.

    Args:
        src: Source model dir (safetensors).
        out: Destination dir (created).
        tokenizer: The source tokenizer.
        texts: Calibration texts, each at most ``max_seq_len`` tokens.
        max_seq_len: Calibration block length.
        w_bit: Weight bits.
        group_size: Quantisation group size.
        zero_point: Asymmetric quantisation.
        version: Kernel layout (``GEMM``).
        trust_remote_code: Passed to transformers.

    Returns:
        The scale records and timing facts.

    Raises:
        QuantizeError: AutoAWQ failed (its message is kept).
    """
    import torch
    from awq import AutoAWQForCausalLM
    from awq.quantize.quantizer import AwqQuantizer
    from awq.utils.module import get_op_name

    records: list[ScaleRecord] = []

    class RecordingQuantizer(AwqQuantizer):  # type: ignore[misc]
        def _compute_best_scale(  # type: ignore[no-untyped-def]
            self, x, w_mean, x_mean, module2inspect, linears2scale, fp16_output, kwargs=None
        ):
            # AutoAWQ snapshots the weights with `v.cpu()` before its in-place grid search and
            # restores them after each step. On CPU `.cpu()` returns the same tensor, so the
            # snapshot aliases the live weights and the search leaves them multiplied by the
            # first grid point's scales, which nothing divides out (on a padded MLP that
            # shrinks down_proj ~50x). Restore from a real copy.
            on_cpu = next(module2inspect.parameters()).device.type == "cpu"
            saved = (
                {k: v.detach().clone() for k, v in module2inspect.state_dict().items()}
                if on_cpu
                else None
            )
            try:
                return super()._compute_best_scale(
                    x,
                    w_mean,
                    x_mean,
                    module2inspect,
                    linears2scale,
                    fp16_output,
                    {} if kwargs is None else kwargs,
                )
            finally:
                if saved is not None:
                    module2inspect.load_state_dict(saved)

        def _search_best_scale(  # type: ignore[no-untyped-def]
            self, module, prev_op, layers, inp, module2inspect=None, kwargs=None
        ):
            result = super()._search_best_scale(
                module, prev_op, layers, inp, module2inspect, {} if kwargs is None else kwargs
            )
            prefix = get_op_name(self.model, module) + "."
            prev_name, names, scales = result
            records.append(
                ScaleRecord(
                    prefix + prev_name,
                    isinstance(prev_op, torch.nn.Linear),
                    tuple(prefix + n for n in names),
                    scales.detach().float().cpu(),
                )
            )
            return result

    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    dtype = getattr(torch, source_dtype(config))
    t0 = time.perf_counter()
    try:
        model = AutoAWQForCausalLM.from_pretrained(
            str(src),
            torch_dtype=dtype,
            trust_remote_code=trust_remote_code,
            safetensors=True,
        )
        t_load = time.perf_counter() - t0
        model.quantize(
            tokenizer,
            quant_config={
                "zero_point": zero_point,
                "q_group_size": group_size,
                "w_bit": w_bit,
                "version": version,
            },
            calib_data=texts,
            max_calib_samples=len(texts),
            max_calib_seq_len=max_seq_len,
            quantizer_cls=RecordingQuantizer,
        )
        t_quant = time.perf_counter() - t0 - t_load
        out.mkdir(parents=True, exist_ok=True)
        model.save_quantized(str(out), safetensors=True)
    except (AssertionError, RuntimeError, ValueError) as e:
        raise QuantizeError(f"AutoAWQ failed on {src}: {type(e).__name__}: {e}") from e
    return records, {
        "load_s": t_load,
        "quantize_s": t_quant,
        "total_s": time.perf_counter() - t0,
        "load_dtype": source_dtype(config),
    }
