"""The reference engine: transformers ``generate`` in batches, left-padded.

It takes the same token ids, decoding parameters, constraint grammars and logit edits as
vLLM (grammars through :class:`~harness.inference.constraints.GrammarLogitsProcessor`, edits
through :class:`~harness.inference.decoding.TokenEditsProcessor`, applied before the
repetition penalty as vLLM does), so at float32 its greedy tokens are vLLM's. Sampling seeds the torch generator with the first request's seed
of each batch (deterministic, but not per request as in vLLM). An AutoAWQ GEMM checkpoint is
served with its linears dequantised at load (:mod:`harness.inference.awq_dense`): the
quantised weights exactly, in dense matmuls (``weights`` says which).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.inference.engines.base import EngineSpec, GenRequest, GenResult, strip_stop
from harness.inference.errors import InferenceError
from harness.inference.validate import awq_group_size, read_model_config, resolve_quantization

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
        from transformers import AutoTokenizer

        from harness.inference.awq_dense import load_causal_lm
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
        quant = resolve_quantization(spec.infer.quantization, config, str(model_dir))
        group = awq_group_size(config) if quant == "awq" else None
        ct = quant == "compressed-tensors"
        self.weights = (
            "awq-dequantized" if group is not None else "ct-dequantized" if ct else "dense"
        )
        self.infer = spec.infer
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype: Any = "auto"
        if spec.infer.dtype in _DTYPES:
            dtype = getattr(torch, _DTYPES[spec.infer.dtype])
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_dir, trust_remote_code=spec.trust_remote_code
        )
        self.model = load_causal_lm(
            model_dir,
            dtype=dtype,
            device=self.device,
            trust_remote_code=spec.trust_remote_code,
            awq_group_size=group,
            compressed_tensors=ct,
        )
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
        processors: list[Any] = []
        grammar = self._grammars.processor([r.constraint for r in reqs])
        if grammar is not None:
            processors.append(grammar)
        if any(r.logit_bias or r.allowed_token_ids is not None for r in reqs):
            from transformers import RepetitionPenaltyLogitsProcessor

            from harness.inference.decoding import TokenEditsProcessor

            processors.append(
                TokenEditsProcessor(
                    [r.logit_bias for r in reqs], [r.allowed_token_ids for r in reqs]
                )
            )
            if p.repetition_penalty != 1.0:
                # vLLM penalises after the edits; transformers' own penalty would come first.
                processors.append(RepetitionPenaltyLogitsProcessor(p.repetition_penalty))
                kwargs["repetition_penalty"] = None
        if processors:
            kwargs["logits_processor"] = processors
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

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """Teacher-forced log-probs, ``infer.batch_size`` right-padded sequences a forward."""
        torch = self._torch
        out: list[list[float]] = []
        bs = self.infer.batch_size
        for start in range(0, len(sequences), bs):
            batch = [list(s) for s in sequences[start : start + bs]]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, s in enumerate(batch):
                ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
                mask[i, : len(s)] = 1
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            picked = logp.gather(-1, ids[:, 1:].unsqueeze(-1).to(self.device)).squeeze(-1)
            out += [picked[i, : len(s) - 1].tolist() for i, s in enumerate(batch)]
        return out

    def close(self) -> None:
        """Drop the model."""
        self.model = None
