"""Keeping secrets out of logs, manifests, W&B configs and run dirs."""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_ENV = ("OPENAI_API_KEY", "WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|password)$", re.IGNORECASE)
_SAFE_NAME = re.compile(r"(_env|max_tokens|tokens?_?\w*count)$", re.IGNORECASE)
REDACTED = "***"


def secret_values() -> list[str]:
    """Values of secret-looking environment variables (long enough to be real)."""
    vals = []
    for name, value in os.environ.items():
        if (name in SECRET_ENV or _SECRET_NAME.search(name)) and len(value) >= 8:
            vals.append(value)
    return vals


def redact(obj: Any, values: list[str] | None = None) -> Any:
    """A copy of ``obj`` with secret-named keys and known secret values replaced.

    Args:
        obj: Any JSON-like structure.
        values: Secret strings to scrub (default: from the environment).

    Returns:
        The redacted copy.
    """
    values = secret_values() if values is None else values
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            named = isinstance(k, str) and _SECRET_NAME.search(k) and not _SAFE_NAME.search(k)
            out[k] = REDACTED if named and v not in (None, "") else redact(v, values)
        return out
    if isinstance(obj, list | tuple):
        return [redact(v, values) for v in obj]
    if isinstance(obj, str):
        for s in values:
            if s in obj:
                obj = obj.replace(s, REDACTED)
        return obj
    return obj


def scrub_text(text: str, values: list[str] | None = None) -> str:
    """Replace known secret values in free text (logs)."""
    for s in secret_values() if values is None else values:
        text = text.replace(s, REDACTED)
    return text
