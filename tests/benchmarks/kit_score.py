"""The official starter kit's evaluation as a command (the scoring benchmark's baseline).

    python -m tests.benchmarks.kit_score DATA PREDICTIONS OUT --model NAME=PATH ... [--kit DIR]

Imports the kit's ``local_evaluation`` (with its ``parsers`` and ``metrics``) from a checkout
(``--kit``, else ``$SHOPBENCH_KIT_DIR``; verified to be at the pinned commit, see
:mod:`tests.support.official_run`) and runs ``evaluate_outputs`` + ``aggregate_scores`` on a
development-format JSONL file and a predictions JSONL (``prediction`` per row): pandas
loading, one ``encode`` call per text, a new ROUGE scorer per row. The kit's model cache is
filled with the local models given by ``--model``. Writes ``{task name: score}`` as JSON. Not
part of the package.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    """Parse the arguments, evaluate with the kit, write the task scores."""
    from sentence_transformers import SentenceTransformer

    from tests.support.official_kit import evaluate_predictions, kit_modules
    from tests.support.official_run import KIT, verify_checkout

    parser = argparse.ArgumentParser(prog="kit_score")
    parser.add_argument("data", type=Path)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--kit", default=os.environ.get(KIT.env), help=f"default ${KIT.env}")
    args = parser.parse_args()
    if not args.kit:
        parser.error(f"give the starter kit checkout: --kit DIR or {KIT.env}=DIR")
    kit = verify_checkout(KIT, args.kit)
    models = {
        name: SentenceTransformer(path, device="cpu")
        for name, path in (item.split("=", 1) for item in args.model)
    }
    outputs = [
        json.loads(line)["prediction"]
        for line in args.predictions.read_text("utf-8").splitlines()
        if line.strip()
    ]
    with kit_modules(kit, models) as local_evaluation:
        result = evaluate_predictions(local_evaluation, args.data, outputs)
    if "raises" in result:
        raise SystemExit(f"kit_score: the kit raised {result['raises']}")
    args.out.write_text(json.dumps(result["tasks"], indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
