"""Edits of a Hugging Face model dir's ``config.json`` without copying its weights.

* :func:`update_config` rewrites ``config.json`` in place (atomically).
* :func:`link_model_dir` makes a model dir whose every entry is a symbolic link to the source's,
  except ``config.json``, which it writes: a changed config for a checkpoint of 145 GB costs no
  copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.atomic import write_json
from harness.errors import HarnessError

CONFIG_NAME = "config.json"


def read_config(model_dir: Path, *, error: type[HarnessError] = HarnessError) -> dict[str, Any]:
    """A model dir's ``config.json``.

    Args:
        model_dir: A Hugging Face model directory.
        error: The error class raised when it cannot be read.

    Raises:
        HarnessError: No readable ``config.json`` (as ``error``).
    """
    path = model_dir / CONFIG_NAME
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise error(f"{path}: cannot read the model config: {e}") from None
    if not isinstance(cfg, dict):
        raise error(f"{path}: the model config must be a JSON object")
    return cfg


def _write_config(model_dir: Path, cfg: dict[str, Any]) -> None:
    write_json(model_dir / CONFIG_NAME, cfg)


def update_config(model_dir: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Set keys of ``model_dir/config.json`` (a real file, not a link).

    Args:
        model_dir: The model dir.
        values: Keys to set.

    Returns:
        The previous values of those keys (None where absent).
    """
    cfg = read_config(model_dir)
    before = {k: cfg.get(k) for k in values}
    _write_config(model_dir, {**cfg, **values})
    return before


def link_model_dir(src: Path, dst: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Make ``dst`` a model dir linking every entry of ``src``, with ``config.json`` changed.

    Args:
        src: The source model dir (its links, e.g. a hub cache snapshot's, are resolved).
        dst: The new dir (must not exist yet).
        values: ``config.json`` keys to set.

    Returns:
        The previous values of those keys (None where absent).
    """
    cfg = read_config(src)
    dst.mkdir(parents=True)
    for entry in sorted(src.iterdir()):
        if entry.name != CONFIG_NAME:
            (dst / entry.name).symlink_to(entry.resolve())
    _write_config(dst, {**cfg, **values})
    return {k: cfg.get(k) for k in values}
