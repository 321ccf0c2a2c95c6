"""Inference: engines behind one interface (vLLM offline, transformers, OpenAI-compatible),
prompting with named per-task template sets, per-task decoding, constrained outputs,
batching by task type, data-parallel Ray replicas and tensor-parallel validation.

Nothing here imports torch, vLLM or transformers at module load; engines import them when
they start.
"""
