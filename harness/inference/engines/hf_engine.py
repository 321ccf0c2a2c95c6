"""The reference engine: transformers ``generate`` in batches, left-padded.

It takes the same token ids, decoding parameters and constraint grammars as vLLM (grammars
through :class:`~harness.inference.constraints.GrammarLogitsProcessor`), so at float32 its
greedy tokens are vLLM's. Sampling seeds the torch generator with the first request's seed
of each batch (deterministic, but not per request as in vLLM).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.inference.engines.base import EngineSpec, GenRequest, GenResult, strip_stop
from harness.inference.errors import InferenceError
from harness.inference.validate import read_model_config, resolve_quantization

_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


class TransformersEngine:
    """transformers ``AutoModelForCausalLM.generate``."""

    name = "transformers"

    def __init__(self, spec: EngineSpec) -> None:
        """Load the model and tokenizer.

        Args:
            spec: Engine spec (``infer.dtype``, ``batch_size``, ``seed`` are used; TP > 1 is
                refused: this engine runs on one device).
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from harness.inference.constraints import GrammarCompiler

        if spec.model_dir is None:
            raise InferenceError("the transformers engine needs a local model dir")
        if spec.infer.tensor_parallel_size != 1:
            raise InferenceError(
                "`infer.engine: transformers` runs on one device; set "
                "`infer.tensor_parallel_size: 1` (or use `engine: vllm`)"
            )
        model_dir = Path(spec.model_dir)
        config = read_model_config(model_dir)
        if resolve_quantization(spec.infer.quantization, config, str(model_dir)) == "awq":
            raise InferenceError(
                f"{model_dir} is an AWQ checkpoint; the transformers reference engine serves "
                "unquantised models only (use `engine: vllm`)"
            )
        self.infer = spec.infer
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype: Any = "auto"
        if spec.infer.dtype in _DTYPES:
            dtype = getattr(torch, _DTYPES[spec.infer.dtype])
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_dir, trust_remote_code=spec.trust_remote_code
        )
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir,
            dtype=dtype,
            trust_remote_code=spec.trust_remote_code,
            use_safetensors=True,
        ).to(self.device)
        self.model.eval()
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = gen.pad_token_id if gen.pad_token_id is not None else self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else next(iter(self.eos_ids))
        self.vocab_size = int(self.model.config.get_text_config().vocab_size)
        self._grammars = GrammarCompiler(self.tokenizer, self.vocab_size)
        self._torch = torch

    def _token_ids(self, req: GenRequest) -> list[int]:
        if req.token_ids is not None:
            return list(req.token_ids)
        return list(self.tokenizer(req.text, add_special_tokens=False)["input_ids"])

    def _batch(self, reqs: Sequence[GenRequest]) -> list[GenResult]:
        torch = self._torch
        p = reqs[0].params
        ids = [self._token_ids(r) for r in reqs]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, width - len(x) :] = torch.tensor(x, dtype=torch.long)
            mask[i, width - len(x) :] = 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": p.max_tokens,
            "repetition_penalty": p.repetition_penalty,
            "eos_token_id": sorted(self.eos_ids),
            "pad_token_id": self.pad_id,
            "do_sample": p.temperature > 0,
        }
        if p.temperature > 0:
            kwargs.update(temperature=p.temperature, top_p=p.top_p, top_k=max(p.top_k, 0))
            torch.manual_seed(reqs[0].seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if p.stop:
            kwargs.update(stop_strings=list(p.stop), tokenizer=self.tokenizer)
        processor = self._grammars.processor([r.constraint for r in reqs])
        if processor is not None:
            kwargs["logits_processor"] = [processor]
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                **kwargs,
            )
        latency = time.perf_counter() - start
        results = []
        for i, r in enumerate(reqs):
            gen = out[i, width:].tolist()
            toks: list[int] = []
            finish = "length"
            for t in gen:
                if t in self.eos_ids:
                    finish = "stop"
                    break
                toks.append(t)
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            text, stopped = strip_stop(text, p.stop)
            if stopped:
                finish = "stop"
            results.append(
                GenResult(
                    index=r.index,
                    text=text,
                    token_ids=tuple(toks),
                    prompt_tokens=len(ids[i]),
                    output_tokens=len(toks) + (1 if finish == "stop" and not stopped else 0),
                    finish_reason=finish,
                    latency_s=latency,
                )
            )
        return results

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Generate in batches of ``infer.batch_size`` (requests share one task type)."""
        out: list[GenResult] = []
        bs = self.infer.batch_size
        for start in range(0, len(requests), bs):
            out += self._batch(requests[start : start + bs])
        return out

    def close(self) -> None:
        """Drop the model."""
        self.model = None
