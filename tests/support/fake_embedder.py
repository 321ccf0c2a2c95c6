"""A deterministic stand-in for a sentence-transformer model, so that scoring tests (and the
Shopping MMLU goldens) need no model download."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np


class FakeSentenceModel:
    """A signed, hashed bag of words in float32; the empty text maps to the zero vector.

    Args:
        salt: Mixed into every token's hash, so two models give different vectors.
        dim: Vector length.
    """

    def __init__(self, salt: str, dim: int = 48) -> None:
        self.salt = salt
        self.dim = dim

    def vector(self, text: str) -> np.ndarray:
        """The embedding of one text."""
        v = np.zeros(self.dim, dtype=np.float32)
        for token in re.findall(r"\w+", text.lower()):
            h = hashlib.sha256((self.salt + token).encode("utf-8")).digest()
            sign = 1.0 if h[4] % 2 == 0 else -1.0
            v[int.from_bytes(h[:4], "little") % self.dim] += sign * (1 + h[5] % 3)
        return v

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        """Embeddings of ``texts``, one row each (``SentenceTransformer.encode``'s shape)."""
        return np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, self.dim))

    def cuda(self) -> FakeSentenceModel:
        """Itself: callers that move a model to a GPU keep working on CPU."""
        return self

    def to(self, _device: Any) -> FakeSentenceModel:
        """Itself (see :meth:`cuda`)."""
        return self


# The two models the Shopping MMLU tests embed with, by the sentence-transformer name they
# stand in for.
EN = FakeSentenceModel("en")
MULTI = FakeSentenceModel("multi", dim=40)
BY_MODEL_NAME = {"all-MiniLM-L6-v2": EN, "paraphrase-multilingual-MiniLM-L12-v2": MULTI}
EMBED = {"sent-transformer": EN.encode, "multilingual-sent-transformer": MULTI.encode}
