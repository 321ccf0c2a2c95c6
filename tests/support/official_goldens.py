"""Write ``golden/official/*.json``: what the official evaluators give on the project's
corpora, computed by the official code itself, imported from checkouts the user provides.

    python -m tests.support.official_goldens --kit KIT_DIR --mmlu MMLU_DIR [--dev-set FILE]

or with the checkouts in the environment (``nox -s golden -- --update "reason"`` passes them
on)::

    SHOPBENCH_KIT_DIR=KIT_DIR SHOPPING_MMLU_DIR=MMLU_DIR python -m tests.support.official_goldens

* ``--kit`` / ``SHOPBENCH_KIT_DIR``: a git checkout of the Amazon KDD Cup 2024 starter kit
  (https://github.com/Keita18/amazon-kdd-cup-2024-starter-kit, a copy of the kit's history)
  at commit ``4835f57faef0e77e2a9a56f846873f53a1111502``; writes ``kit_parsers.json``,
  ``kit_evaluation_fixture.json`` and, when the real development set is found (``--dev-set``,
  else the data cache or the shared copy, see :mod:`tests.support.paths`),
  ``kit_evaluation_real.json``.
* ``--mmlu`` / ``SHOPPING_MMLU_DIR``: a git checkout of https://github.com/KL4805/ShoppingMMLU
  at commit ``7b118da15635e0d61c45fe1713420a344ac5b738``; writes ``mmlu_task_wise.json`` and
  ``mmlu_skill_wise.json`` for the miniature release ``experiments/data/shopping_mmlu_mini``.

Each checkout's ``git rev-parse HEAD`` must be the pinned commit. Either one alone regenerates
its own files. Get them with, e.g., ``git clone URL DIR && git -C DIR checkout COMMIT``.

The inputs are the committed corpora of :mod:`tests.support.official_corpus` (and the varied
corpora ``tests/data/predictions_corpus/*_varied.jsonl``); each golden file records the source
repository and commit, the corpus and data files with their sha256, and what was substituted
for what cannot run here (see :mod:`tests.support.official_run`, :mod:`tests.support.official_kit`
and :mod:`tests.support.official_mmlu`).

Needs the project's environment (``.venv``: pandas, numpy, rouge_score, sacrebleu with
mecab-python3 and ipadic, sentence-transformers, torch, transformers, nltk, loguru, tqdm).
The ``evaluate`` package is not needed: its ``load("sacrebleu")`` downloads a metric script,
so a local stand-in makes the same ``sacrebleu`` call.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.support import official_corpus as corpus
from tests.support.official_run import KIT, MMLU, CheckoutError, Source, verify_checkout
from tests.support.paths import DEV_CORPUS, DEV_FIXTURE, FIXTURE_CORPUS, REPO, real_dev_set

OUT = REPO / "golden" / "official"

SACREBLEU_NOTE = (
    'evaluate.load("sacrebleu") downloads its metric script from the Hugging Face Hub; a local '
    "stand-in (tests/support/official_run.py SacreBleuMetric) makes the wrapper's call: "
    "sacrebleu.corpus_bleu with exp smoothing, no smoothing value, force=False, no effective "
    "order, references transposed, non-string inputs refused"
)


def sha256(path: Path) -> str:
    """The file's sha256 (hex)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_entry(path: Path) -> dict[str, str]:
    """``{"path", "sha256"}``; the path relative to the repository when inside it."""
    shown = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    return {"path": shown, "sha256": sha256(path)}


def source_entry(source: Source, files: tuple[str, ...]) -> dict[str, Any]:
    """Where the official code came from."""
    return {"repository": source.url, "commit": source.commit, "files": list(files)}


def write(name: str, doc: dict[str, Any]) -> Path:
    """Write ``golden/official/NAME.json``."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    doc = {"generated_by": "python -m tests.support.official_goldens", **doc}
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(path.relative_to(REPO))
    return path


# --------------------------------------------------------------------------- starter kit


def _multilingual_variant(data: Path, out: Path) -> Path:
    """``data`` with its bleu and jp-bleu rows scored by multilingual-sent-transformer (the
    multilingual parity check: the development set has no such task)."""
    rows = [json.loads(x) for x in data.read_text("utf-8").splitlines() if x.strip()]
    for row in rows:
        if row["metric"] in ("bleu", "jp-bleu"):
            row["metric"] = "multilingual-sent-transformer"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return out


def _varied(path: Path) -> list[str]:
    return [json.loads(x)["prediction"] for x in path.read_text("utf-8").splitlines() if x.strip()]


def kit_goldens(kit: Path, dev_set: Path | None) -> None:
    """Write the starter kit's goldens."""
    import tempfile

    from tests.support.official_kit import evaluate_predictions, kit_modules, parse_all
    from tests.support.official_run import sentence_models

    models, used = sentence_models()
    source = source_entry(KIT, KIT.files)
    predictions = json.loads(corpus.SHOPBENCH_PREDICTIONS.read_text("utf-8"))
    with kit_modules(kit, models) as local_evaluation:
        inputs = json.loads(corpus.PARSER_INPUTS.read_text("utf-8"))
        write(
            "kit_parsers",
            {
                "source": source,
                "corpus": file_entry(corpus.PARSER_INPUTS),
                "substitutions": {"sacrebleu": "imported, not called: " + SACREBLEU_NOTE},
                "what": (
                    "local_evaluation.get_task_parsers()[task_type].parse(raw): per corpus "
                    "case, in the corpus's order, its task types' parsed values"
                ),
                "cases": parse_all(local_evaluation, inputs),
            },
        )
        sets = [("fixture", DEV_FIXTURE, FIXTURE_CORPUS)]
        if dev_set is not None:
            sets.append(("real", dev_set, DEV_CORPUS))
        else:
            print("the real development set was not found: kit_evaluation_real.json is kept")
        for label, data, varied in sets:
            runs: dict[str, Any] = {}
            for key, preds in predictions[label].items():
                if key != f"perturbed/{corpus.MULTILINGUAL_SEED}":
                    runs[key] = evaluate_predictions(local_evaluation, data, preds)
            runs["varied"] = evaluate_predictions(local_evaluation, data, _varied(varied))
            ml_key = f"multilingual/perturbed/{corpus.MULTILINGUAL_SEED}"
            if "paraphrase-multilingual-MiniLM-L12-v2" in models:
                with tempfile.TemporaryDirectory() as tmp:
                    variant = _multilingual_variant(data, Path(tmp) / "ml.jsonl")
                    preds = predictions[label][f"perturbed/{corpus.MULTILINGUAL_SEED}"]
                    runs[ml_key] = evaluate_predictions(local_evaluation, variant, preds)
            else:
                runs[ml_key] = {"unavailable": "paraphrase-multilingual-MiniLM-L12-v2 not found"}
            write(
                f"kit_evaluation_{label}",
                {
                    "source": source,
                    "data": file_entry(data),
                    "corpora": {
                        "perturbed": file_entry(corpus.SHOPBENCH_PREDICTIONS),
                        "varied": file_entry(varied),
                    },
                    "what": (
                        "local_evaluation.evaluate_outputs + aggregate_scores: per task the "
                        "overall_score, per row the metric value (micro f1: [tp, fp, fn]); "
                        f"runs keyed by the corpus's {label!r} entry, 'varied' is the varied "
                        "corpus, 'multilingual/...' the data with bleu and jp-bleu rows scored "
                        "by multilingual-sent-transformer"
                    ),
                    "substitutions": {
                        "sacrebleu": SACREBLEU_NOTE,
                        "sentence_models": used,
                        "model_outputs": "set as the model_output_str column row by row (the "
                        "kit's main joins its model's outputs on the prompt text)",
                    },
                    "runs": runs,
                },
            )


# --------------------------------------------------------------------------- Shopping MMLU


def _release_files() -> dict[str, str]:
    return {
        p.relative_to(corpus.MMLU_RELEASE).as_posix(): sha256(p)
        for p in sorted(corpus.MMLU_RELEASE.rglob("*"))
        if p.is_file()
    }


def mmlu_goldens(mmlu: Path) -> None:
    """Write the Shopping MMLU goldens."""
    from tests.support.official_mmlu import Runner, data_file

    outputs = json.loads(corpus.MMLU_OUTPUTS.read_text("utf-8"))
    common = {
        "release": {
            "path": corpus.MMLU_RELEASE.relative_to(REPO).as_posix(),
            "files_sha256": _release_files(),
        },
        "corpus": file_entry(corpus.MMLU_OUTPUTS),
        "substitutions": {
            "sacrebleu": SACREBLEU_NOTE,
            "sentence_models": "SentenceTransformer(name) gives tests/support/fake_embedder.py's "
            "models (all-MiniLM-L6-v2: EN, paraphrase-multilingual-MiniLM-L12-v2: MULTI), the "
            "embedder the Shopping MMLU tests give the harness",
            "llm": "utils.load_tokenizer_and_model gives a replay tokenizer and model that "
            "'generate' the corpus's outputs in order",
        },
    }
    tasks: dict[str, Any] = {}
    skills: dict[str, Any] = {}
    with Runner(mmlu, corpus.MMLU_RELEASE) as runner:
        for key, sets in outputs.items():
            folder, name = key.split("/", 1)
            if folder == "skills":
                skills[key] = _skill(runner, name, sets)
                continue
            mc = folder == "multiple_choice"
            variants = {"plain": (False, False), "task_specific": (True, False)}
            if mc:
                variants["letters"] = (False, True)
            prompts = {
                v: runner.task_prompts(folder, name, *flags) for v, flags in variants.items()
            }
            runs: dict[str, Any] = {"plain": {}}
            if mc:
                runs["letters"] = {}
            caps = set()
            for variant in runs:
                letters = variant == "letters"
                for set_key, outs in sets.items():
                    result, replay = runner.run_task(folder, name, outs, letters=letters)
                    runs[variant][set_key] = result
                    _check_prompts(replay.prompts, prompts[variant], key)
                    caps.update(replay.max_new_tokens)
            _, replay = runner.run_task(folder, name, sets["perfect"], task_specific=True)
            _check_prompts(replay.prompts, prompts["task_specific"], key)
            tasks[key] = {
                "data": data_file(folder, name),
                "prompts": prompts,
                "max_new_tokens": sorted(caps),
                "runs": runs,
            }
    script_files = ("task_wise_eval/utils.py", *(f"task_wise_eval/{s}" for s in _scripts()))
    write(
        "mmlu_task_wise",
        {
            "source": source_entry(MMLU, script_files),
            **common,
            "what": (
                "per task file: every row's prompt (utils.gen_system_prompt + "
                "utils.format_example: plain, --use_task_specific_prompt, --use_letter_choices), "
                "the max_new_tokens its script generates with, and per output set of the corpus "
                "the script's score (its printed expression at full precision), per-row values "
                "(entities: [tp, fp, fn]) and ill-format count, or what it raises; 'letters' "
                "runs pass --use_letter_choices"
            ),
            "tasks": tasks,
        },
    )
    write(
        "mmlu_skill_wise",
        {
            "source": source_entry(
                MMLU,
                (
                    "skill_wise_eval/hf_skill_inference.py",
                    "skill_wise_eval/skill_evaluation.py",
                    "skill_wise_eval/metrics.py",
                    "skill_wise_eval/utils.py",
                ),
            ),
            **common,
            "what": (
                "per skill file: every row's prompt and max_new_tokens "
                "(hf_skill_inference.py, --multi_choice_tokens 1 and 4), and per output set "
                "skill_evaluation.py's track-wise score, task scores and per-row values "
                "(null where it scores none; micro f1: [tp, fp, fn]), or what it raises; "
                "'tasks' holds the evaluation of each task's rows alone"
            ),
            "skills": skills,
        },
    )


def _scripts() -> list[str]:
    from tests.support.official_mmlu import SCRIPTS

    return sorted(SCRIPTS.values())


def _check_prompts(seen: list[str], built: list[str], key: str) -> None:
    if seen != built[: len(seen)]:
        raise RuntimeError(
            f"{key}: the script's prompts differ from gen_system_prompt + format_example"
        )


def _skill(runner: Any, name: str, sets: dict[str, list[str]]) -> dict[str, Any]:
    perfect = sets["perfect"]
    one = runner.skill_inference(name, perfect, 1)
    four = runner.skill_inference(name, perfect, 4)
    records = [
        json.loads(x)
        for x in (runner.data / "skills" / f"{name}.json").read_text("utf-8").split("\n")
        if x.strip()
    ]
    task_names = list(dict.fromkeys(r["task_name"] for r in records))
    subsets = {t: runner.write_skill_subset(name, t) for t in task_names}
    runs = {}
    for set_key, outs in sets.items():
        per_task = {}
        for task, (sub, picked) in subsets.items():
            part = runner.skill_evaluation(sub, [outs[i] for i in picked])
            per_task[task] = (
                part if "raises" in part else {"score": part["tasks"][task], "indices": picked}
            )
        runs[set_key] = {"whole": runner.skill_evaluation(name, outs), "tasks": per_task}
    return {
        "data": f"skills/{name}.json",
        "prompts": one.prompts,
        "max_new_tokens": {"1": one.max_new_tokens, "4": four.max_new_tokens},
        "runs": runs,
    }


# --------------------------------------------------------------------------- command line


def _checkout(given: str | None, source: Source) -> Path | None:
    value = given or os.environ.get(source.env, "").strip() or None
    return None if value is None else verify_checkout(source, value)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and write the goldens; 2 when no checkout is given or one is
    wrong (the message says which and how)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.official_goldens",
        description="Write golden/official/*.json by running the official evaluators.",
    )
    parser.add_argument("--kit", help=f"starter kit checkout (default ${KIT.env})")
    parser.add_argument("--mmlu", help=f"Shopping MMLU checkout (default ${MMLU.env})")
    parser.add_argument("--dev-set", type=Path, help="the real ShopBench development.json")
    args = parser.parse_args(argv)
    try:
        kit = _checkout(args.kit, KIT)
        mmlu = _checkout(args.mmlu, MMLU)
    except CheckoutError as e:
        print(f"official_goldens: {e}", file=sys.stderr)
        return 2
    if kit is None and mmlu is None:
        print(f"official_goldens: {needs()}", file=sys.stderr)
        return 2
    if kit is not None:
        dev = args.dev_set if args.dev_set is not None else real_dev_set()
        kit_goldens(kit, dev)
    if mmlu is not None:
        mmlu_goldens(mmlu)
    return 0


def needs() -> str:
    """What regenerating the official goldens needs, for messages."""
    return (
        f"give the official checkouts: --kit DIR or {KIT.env}=DIR ({KIT.url} at {KIT.commit}), "
        f"--mmlu DIR or {MMLU.env}=DIR ({MMLU.url} at {MMLU.commit})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
