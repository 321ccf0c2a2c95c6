"""The official starter kit's evaluation as a command (the scoring benchmark's baseline).

    python -m tests.benchmarks.kit_score DATA PREDICTIONS OUT --model NAME=PATH ...

Runs :func:`tests.reference_evaluator.ref_evaluate` (the independent transcription of the
kit: pandas loading, one ``encode`` call per text, a new ROUGE scorer per row) on a
development-format JSONL file and a predictions JSONL (``prediction`` per row), and writes
``{task name: score}`` as JSON. Not part of the package.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tests.reference_evaluator import ref_evaluate


def main() -> None:
    """Parse the arguments, evaluate, write the task scores."""
    parser = argparse.ArgumentParser(prog="kit_score")
    parser.add_argument("data", type=Path)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model)
    outputs = [
        json.loads(line)["prediction"]
        for line in args.predictions.read_text("utf-8").splitlines()
        if line.strip()
    ]
    scores, _ = ref_evaluate(args.data, outputs, models)
    args.out.write_text(json.dumps(scores, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
