"""Child process of the ``llmcompressor`` backend: ``python -m harness.quant.llmcompressor_child
JOB.json`` in the ``llmcompressor`` environment (harness/envs/llmcompressor-*.txt).

Runs llm-compressor's AWQ with its current API (``modifiers.transform.AWQModifier``, which
only searches and folds the smoothing scales, followed by a ``QuantizationModifier`` that
quantises; the older ``modifiers.awq.AWQModifier`` is a shim over the two) on the calibration
blocks the job names, and saves a compressed-tensors checkpoint (``pack-quantized``). The
job file holds the source and output dirs, the calibration blocks (token ids), the bits,
group size and zero point; the child writes ``result.json`` (timings) and ``scales.pt`` (the
smoothing scales, in the :class:`~harness.quant.autoawq_backend.ScaleRecord` fields) beside it.

Imports only the standard library, torch, transformers and llm-compressor, plus
:mod:`harness.quant.llmc_recipe`: the environment holds no other harness dependency.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def _cpu_without_pinning() -> None:
    """Turn off the pinning of llm-compressor's intermediates cache where no accelerator exists.

    AWQ's smoothing pins every cached batch (``IntermediatesCache.pin_memory``) so that the
    grid search can copy it to the GPU without blocking. Pinned memory is page-locked host
    memory for device DMA; torch 2.13 refuses it without an accelerator ("Cannot access
    accelerator device when none is available"), and on CPU there is no copy to speed up. The
    cached values are used unpinned, exactly as on a GPU before they are pinned.
    """
    import torch

    if torch.accelerator.is_available():
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    def _no_pin(self: Any, batch_index: int, input_names: list[str] | None = None) -> None:
        return None

    IntermediatesCache.pin_memory = _no_pin  # type: ignore[method-assign]


def _recording_awq(records: list[dict[str, Any]]) -> Any:
    """The AWQ transform modifier, recording each mapping's scales."""
    import torch
    from llmcompressor.modifiers.transform import AWQModifier

    class RecordingAWQ(AWQModifier):  # type: ignore[misc,valid-type]
        def _compute_best_scale(self, mapping, fp16_outputs, orig_layer_weights):  # type: ignore[no-untyped-def]
            scales = super()._compute_best_scale(mapping, fp16_outputs, orig_layer_weights)
            records.append(
                {
                    "prev_op": mapping.smooth_name,
                    "prev_is_linear": isinstance(mapping.smooth_layer, torch.nn.Linear),
                    "layers": list(mapping.balance_names),
                    "scales": scales.detach().float().cpu(),
                }
            )
            return scales

    return RecordingAWQ


def run(job: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    """Quantise ``job["src"]`` into ``job["out"]``; returns the timing facts."""
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM

    from harness.quant.llmc_recipe import quantization_config_groups

    _cpu_without_pinning()
    records: list[dict[str, Any]] = []
    blocks: list[list[int]] = job["blocks"]
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        job["src"], dtype=getattr(torch, job["dtype"]), trust_remote_code=job["trust_remote_code"]
    )
    t_load = time.perf_counter() - t0
    data = Dataset.from_dict(
        {"input_ids": blocks, "attention_mask": [[1] * len(b) for b in blocks]}
    )
    recipe = [
        # AWQ's default duo scaling and grid, as AutoAWQ's search.
        _recording_awq(records)(),
        QuantizationModifier(
            config_groups=quantization_config_groups(
                job["w_bit"], job["group_size"], job["zero_point"]
            ),
            ignore=["lm_head"],
        ),
    ]
    oneshot(
        model=model,
        dataset=data,
        recipe=recipe,
        max_seq_length=job["max_seq_len"],
        num_calibration_samples=len(blocks),
        shuffle_calibration_samples=False,
    )
    t_quant = time.perf_counter() - t0 - t_load
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), save_compressed=True)
    torch.save(records, job_dir / "scales.pt")
    import llmcompressor

    return {
        "load_s": t_load,
        "quantize_s": t_quant,
        "total_s": time.perf_counter() - t0,
        "load_dtype": job["dtype"],
        "llmcompressor": llmcompressor.__version__,
        "scale_records": len(records),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the job file given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.quant.llmcompressor_child JOB.json", file=sys.stderr)
        return 2
    job_file = Path(args[0])
    job = json.loads(job_file.read_text(encoding="utf-8"))
    result = run(job, job_file.parent)
    (job_file.parent / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
