"""The inputs the official evaluators are run on for ``golden/official`` (see
:mod:`tests.support.official_goldens`), written to ``tests/data/predictions_corpus``:

* ``official_parser_inputs.json`` — ``[{"raw", "task_types"}]``: the parser tests' fixed cases
  (:mod:`tests.support.parser_cases`, the kit's quirks) and generated text: random Unicode,
  answer-like alphabets, number lists, Python literals, bulleted number and entity lists;
* ``official_shopbench_predictions.json`` — ``{"fixture" | "real": {"perturbed/SEED":
  [prediction per row]}}``: right, wrong and malformed outputs for the development-format
  fixture and for the real development set (that part only when the set is found);
* ``official_shopping_mmlu_outputs.json`` — ``{"FOLDER/NAME": {"styled/SEED" | "perfect" |
  "random/N": [output per row]}}`` for every file of the miniature Shopping MMLU release
  (``experiments/data/shopping_mmlu_mini``).

Everything is deterministic (``random.Random`` with fixed seeds). Regenerate with
``python -m tests.support.official_corpus`` from the repository root; the tests check that
the committed files are what this module builds.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.shopbench.data import load_shopbench
from harness.shopbench.prompt_info import mc_options
from harness.shopbench.types import Record
from tests.support import parser_cases
from tests.support.paths import DATA, DEV_FIXTURE, REPO, real_dev_set

CORPUS_DIR = DATA / "predictions_corpus"
PARSER_INPUTS = CORPUS_DIR / "official_parser_inputs.json"
SHOPBENCH_PREDICTIONS = CORPUS_DIR / "official_shopbench_predictions.json"
MMLU_OUTPUTS = CORPUS_DIR / "official_shopping_mmlu_outputs.json"
MMLU_RELEASE = REPO / "experiments" / "data" / "shopping_mmlu_mini"
MMLU_BUILDER = DATA / "shopping_mmlu" / "build_fixture.py"

TASK_TYPES = ("multiple-choice", "ranking", "retrieval", "named_entity_recognition", "generation")
# Perturbation seeds: five per development file (they exercise every quirk listed in the
# parity test) and 7 for the multilingual variant.
FIXTURE_SEEDS = (17, 18, 19, 20, 21)
REAL_SEEDS = (0, 1, 2, 3, 4)
MULTILINGUAL_SEED = 7
MMLU_STYLED_SEEDS = tuple(range(8))
MMLU_RANDOM_DRAWS = 4


# --------------------------------------------------------------------------- parser inputs


def _unicode_text(rng: random.Random, max_size: int) -> str:
    """Random text over all of Unicode (no surrogates), weighted towards what parsers see."""
    specials = "0123456789 ,\n\t\r\x0b\x0c\x1c\x85\u2028[]()'\"-.:٣１½²۷߁"
    out = []
    for _ in range(rng.randint(0, max_size)):
        roll = rng.random()
        if roll < 0.4:
            out.append(rng.choice(specials))
        elif roll < 0.7:
            out.append(chr(rng.randint(0x20, 0x7E)))
        else:
            cp = rng.randint(0, 0x10FFFF)
            out.append(chr(cp if not 0xD800 <= cp <= 0xDFFF else 0x41))
    return "".join(out)


def _alphabet_text(rng: random.Random) -> str:
    alphabet = "0123456789 ,.[]()>\n'\"*_`:-abcAnswerOutput٣１"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))


def _number_list(rng: random.Random) -> str:
    return ", ".join(str(rng.randint(-3, 30)) for _ in range(rng.randint(0, 8)))


def _python_literal(rng: random.Random) -> str:
    words = ["cadbury", "New York", "a", "", "LEGO", "1", "x, y"]
    items: list[Any] = [rng.choice(words) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.3:
        items.append(rng.randint(-2, 9))
    if rng.random() < 0.2:
        items.append([rng.choice(words)])
    shape = rng.choice(["list", "tuple", "json", "set", "bare"])
    if shape == "tuple":
        return repr(tuple(items))
    if shape == "json":
        return json.dumps(items)
    if shape == "set":
        return "{" + ", ".join(repr(i) for i in items if not isinstance(i, list)) + "}"
    if shape == "bare":
        return repr(rng.choice(words))
    return repr(items)


_WORDS = "abcdefghijklmnopqrstuvwxyz"
_SYMBOL_STYLES = ["- ", "* ", "• ", "+ "]
_NUMBER_STYLES = ["{i}. ", "{i}) ", "({i}) "]


def _word(rng: random.Random) -> str:
    while True:
        w = "".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 8)))
        if w not in {"none", "na", "nil", "null"}:
            return w


def _phrase(rng: random.Random) -> str:
    return " ".join(_word(rng) for _ in range(rng.randint(1, 3)))


def _bulleted(rng: random.Random, items: list[str]) -> str:
    style = rng.choice([*_SYMBOL_STYLES, *_NUMBER_STYLES, ""])
    indent = rng.choice(["", "  "])
    gap = rng.choice(["\n", "\n\n"])
    lines = [indent + style.format(i=i) + item for i, item in enumerate(items, start=1)]
    return gap.join(lines) + rng.choice(["", "\n"])


def _bulleted_numbers(rng: random.Random) -> tuple[str, str]:
    task_type = rng.choice(["ranking", "retrieval"])
    pool = list(range(1, 6)) if task_type == "ranking" else list(range(1, 16))
    most = 5 if task_type == "ranking" else 3
    numbers = rng.sample(pool, rng.randint(2, most))
    label = rng.choice(["", "Product ", "Item ", "#", "Snippet "])
    notes = [
        rng.choice(["", ": " + _phrase(rng), " - " + _phrase(rng), f" ({_word(rng)})"])
        for _ in numbers
    ]
    raw = _bulleted(rng, [f"{label}{n}{note}" for n, note in zip(numbers, notes, strict=True)])
    if rng.random() < 0.5:
        raw = rng.choice(["Output:\n", "Here is the list:\n", "Ranking: "]) + raw
    return task_type, raw


def _bulleted_entities(rng: random.Random) -> str:
    entities: list[str] = []
    for _ in range(rng.randint(1, 5)):
        e = _phrase(rng)
        if e.lower() not in {x.lower() for x in entities}:
            entities.append(e)
    raw = _bulleted(rng, entities)
    if rng.random() < 0.5:
        raw = rng.choice(["Entities:\n", "Here are the brand entities:\n"]) + raw
    return raw


def _fixed_parser_cases() -> list[tuple[str, str]]:
    cases = [(t, raw) for t, raw, _ in parser_cases.OFFICIAL_DOCUMENTED]
    cases += [(t, raw) for t, _, raw in parser_cases.GOLDEN_INPUTS]
    cases += [(t, raw) for t, _, raw, _ in parser_cases.BULLET_CASES]
    cases += [
        ("retrieval", " " * 5000 + "1, 2, 3"),
        ("multiple-choice", " " * 4999 + "2"),
        ("generation", "x" * 4999 + "\n3"),
        ("multiple-choice", "٣"),
        ("ranking", "１,２"),
        ("ranking", "6, 7, 1"),
        ("retrieval", "3, 3, 3"),
        ("named_entity_recognition", "['a', 1]"),
        ("named_entity_recognition", "- tablette"),
        ("retrieval", "- 6\n- 9\n- 15"),
    ]
    return cases


def parser_inputs() -> list[dict[str, Any]]:
    """The parser corpus, ``[{"raw", "task_types"}]``: fixed cases, generated text under every
    task type, then bulleted lists; each text once, with the task types it is parsed as."""
    rng = random.Random(20240318)
    cases = _fixed_parser_cases()
    texts = [_unicode_text(rng, 300) for _ in range(150)]
    texts += [_alphabet_text(rng) for _ in range(150)]
    texts += [_number_list(rng) for _ in range(100)]
    texts += [_python_literal(rng) for _ in range(60)]
    cases += [(t, text) for text in texts for t in TASK_TYPES]
    cases += [_bulleted_numbers(rng) for _ in range(120)]
    cases += [("named_entity_recognition", _bulleted_entities(rng)) for _ in range(120)]
    grouped: dict[str, list[str]] = {}
    for task_type, raw in cases:
        types = grouped.setdefault(raw, [])
        if task_type not in types:
            types.append(task_type)
    return [{"raw": raw, "task_types": types} for raw, types in grouped.items()]


# --------------------------------------------------------------------------- ShopBench


def _mc(rng: random.Random, r: Record) -> str:
    t = r.output_field
    other = rng.choice(mc_options(r.input_field) or [0, 1])
    return rng.choice(
        [
            str(t),
            str(t),
            str(other),
            f"{t}. the option text",
            f"Answer: {t}",
            "",
            " ",
            f"\n {t}",
            "a",
            f"**{t}**",
            "٣",
            "10",
            f"{t}" + "x" * 6000,
            "x" * 5001 + str(t),
            "-1",
            "½",
        ]
    )


def _ranking(rng: random.Random, r: Record) -> str:
    w = r.output_field
    ideal = sorted(range(1, len(w) + 1), key=lambda i: -w[i - 1])
    perm = list(ideal)
    rng.shuffle(perm)
    return rng.choice(
        [
            ", ".join(map(str, ideal)),
            ", ".join(map(str, perm)),
            " ".join(map(str, perm)),
            json.dumps(perm),
            "1, 2, 2, 3",
            "0, 1, 2, 3, 4",
            "5, 0",
            "6, 7, 1, 2",
            "1,2,3,4,5,6",
            "",
            "Ranking: 2 > 1",
            "１,２,３",
            "2, 1",
            "10, 1",
        ]
    )


def _retrieval(rng: random.Random, r: Record) -> str:
    t = r.output_field
    picks = rng.sample(range(1, 16), 3)
    return rng.choice(
        [
            ", ".join(map(str, t)),
            ", ".join(map(str, picks)),
            "100, 200, 300",
            " ".join(map(str, picks)),
            "",
            json.dumps(t),
            "3,3,3",
            "0",
            "1,,2",
            "1, " + "9" * 4500,
            f"Output: {', '.join(map(str, t))}",
        ]
    )


def _ner(rng: random.Random, r: Record) -> str:
    t = r.output_field
    return rng.choice(
        [
            ", ".join(t),
            repr(t),
            json.dumps(t),
            "[" + ", ".join(t) + "]",
            "['a', 1]",
            "",
            ", ".join(x.upper() for x in t),
            f"{t[0]}, {t[0]}",
            f" {t[0]} ",
            "None",
            "('a', 'b')",
            "[[[",
        ]
    )


def _generation(rng: random.Random, r: Record) -> str:
    t = r.output_field if isinstance(r.output_field, str) else r.output_field[0]
    return rng.choice(
        [
            t,
            t + "\nsecond line",
            "\n\n" + t,
            "",
            "Output: " + t,
            "some unrelated words here",
            "   ",
            t.upper(),
            "x" * 6000,
            t[: len(t) // 2],
        ]
    )


_MAKERS = {
    "multiple-choice": _mc,
    "ranking": _ranking,
    "retrieval": _retrieval,
    "named_entity_recognition": _ner,
    "generation": _generation,
}


def perturbed_predictions(records: list[Record], seed: int) -> list[str]:
    """Random right, wrong and malformed outputs, one per record."""
    rng = random.Random(seed)
    return [_MAKERS[r.task_type or ""](rng, r) for r in records]


def _perturbed_set(path: Path, seeds: tuple[int, ...]) -> dict[str, list[str]]:
    records = load_shopbench(path)
    return {
        f"perturbed/{seed}": perturbed_predictions(records, seed)
        for seed in (*seeds, MULTILINGUAL_SEED)
    }


def shopbench_predictions(real: Path | None) -> dict[str, dict[str, list[str]]]:
    """Perturbed predictions for the fixture and, when ``real`` is given, the real set."""
    out = {"fixture": _perturbed_set(DEV_FIXTURE, FIXTURE_SEEDS)}
    if real is not None:
        out["real"] = _perturbed_set(real, REAL_SEEDS)
    return out


# --------------------------------------------------------------------------- Shopping MMLU


def mmlu_fixture() -> ModuleType:
    """``tests/data/shopping_mmlu/build_fixture.py`` as a module."""
    spec = importlib.util.spec_from_file_location("shopping_mmlu_fixture", MMLU_BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mmlu_key(f: Any) -> str:
    """The corpus key of a loaded task or skill file: ``FOLDER/NAME``."""
    return f"{f.folder}/{f.name}"


_JUNK = "0123456789١½,,, \n\n\t-_[]abcXYZ.é水"


def _junk(rng: random.Random) -> str:
    return "".join(rng.choice(_JUNK) for _ in range(rng.randint(0, 24)))


def random_outputs(rng: random.Random, perfect: list[str]) -> list[str]:
    """Per row: junk, the perfect answer, or the perfect answer inside junk."""
    out = []
    for p in perfect:
        kind = rng.randrange(3)
        out.append(_junk(rng) if kind == 0 else p if kind == 1 else _junk(rng) + p + _junk(rng))
    return out


def mmlu_outputs() -> dict[str, dict[str, list[str]]]:
    """Outputs for every task and skill file of the miniature release."""
    from harness.shopbench.mmlu import load_benchmark

    fixture = mmlu_fixture()
    bench = load_benchmark(MMLU_RELEASE)
    rng = random.Random(20240711)
    out: dict[str, dict[str, list[str]]] = {}
    for f in (*bench.tasks, *bench.skills):
        perfect = fixture.perfect_predictions(f)
        sets = {f"styled/{s}": fixture.styled_predictions(f, s) for s in MMLU_STYLED_SEEDS}
        sets["perfect"] = perfect
        for n in range(MMLU_RANDOM_DRAWS):
            sets[f"random/{n}"] = random_outputs(rng, perfect)
        out[mmlu_key(f)] = sets
    return out


# --------------------------------------------------------------------------- files


def dump(value: Any) -> str:
    """The text a corpus file holds."""
    return json.dumps(value, indent=1, ensure_ascii=False) + "\n"


def built() -> dict[Path, str]:
    """Path -> text of every corpus file this module writes. The real development set's
    part of the ShopBench file is kept from the committed file when the set is not found."""
    real = real_dev_set()
    shop = shopbench_predictions(real)
    if real is None and SHOPBENCH_PREDICTIONS.is_file():
        committed = json.loads(SHOPBENCH_PREDICTIONS.read_text("utf-8"))
        if "real" in committed:
            shop["real"] = committed["real"]
    return {
        PARSER_INPUTS: dump(parser_inputs()),
        SHOPBENCH_PREDICTIONS: dump(shop),
        MMLU_OUTPUTS: dump(mmlu_outputs()),
    }


def main() -> None:
    """Write the corpus files."""
    for path, text in built().items():
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(REPO))


if __name__ == "__main__":
    main()
