"""The ShopBench evaluation core: data loading, task-type routing, prompt facts, parsers,
validators, metrics and aggregation.

Nothing here imports torch or sentence-transformers at module load; the embedding metrics
import them on first use.
"""
