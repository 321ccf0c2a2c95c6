"""Build the varied-format prediction corpora: ``fixture_varied.jsonl``, one prediction per row
of the project's development-format fixture (``tests/data/shopbench_dev/development.jsonl``),
and ``dev_varied.jsonl``, one per row of the real ShopBench development set (built only when
that set is found; see :func:`tests.support.paths.real_dev_set`). Each holds the many formats
LLMs answer in (bare answers, "Answer: 2", bold, echoed options, sentences, code fences, JSON
lists, arrows, one number per line, quoted or prefixed generations), with some wrong answers,
some empty outputs and some ambiguous ones (several different answers asserted).

The generation texts are written here by hand (no reference answer is copied); the other
answers are option indices, candidate numbers and entity words. Run from the repository
root: ``python -m tests.data.predictions_corpus.build_dev_varied``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.shopbench.data import load_shopbench
from harness.shopbench.prompt_info import mc_option_texts, mc_options
from harness.shopbench.types import Record
from tests.support.paths import DEV_FIXTURE, real_dev_set

HERE = Path(__file__).resolve().parent

# Hand-written generation outputs for the real development set, by task and occurrence.
GENERATION = {
    "task1": [
        "A toggle switch is a switch that is turned on or off by moving a small lever.",
        "A watch band is the strap that holds a wristwatch on the wrist.",
        "A handbag is a bag carried by hand or on the shoulder to hold personal items.",
        "A water purification unit removes contaminants from water to make it safe to drink.",
    ],
    "task6": [
        "They are comfortable",
        "too big",
        "super convenient",
        "comfy and cute",
        "Super comfortable",
        "soft and comfortable",
        "works just fine",
        "too big",
    ],
    "task17": [
        "Staedtler Fimo Soft Starter Set 12 x 57 g bunte Blöcke",
        "Cepillo de dientes eléctrico sónico con 8 cabezales, 40000 VPM, 5 modos, recargable",
        "Casque de jeu Corsair HS60 PRO Surround 7.1 avec microphone antibruit amovible - Jaune",
        "Actesso Tutore Polso Traspirante per Tunnel Carpale e Tendinite (Nero, Sinistra, L)",
        "JETech iPad 9.7インチ 2018/2017 第6/5世代用 ケース スマートカバー オートスリープ (ライトパープル)",
    ],
}

# Hand-written generation outputs for the project's fixture, by task and occurrence.
FIXTURE_GENERATION = {
    "task1": [
        "A pepper mill grinds peppercorns so you can add fresh pepper to food.",
        "A bike lock secures a bicycle to a rack or post to stop theft.",
    ],
    "task6": ["louder than my old one", "half size large", "bright enough"],
    "task17": [
        "Lumora LED-Schreibtischlampe mit USB-Anschluss, dimmbar, weiß",
        "Trekka sac à dos de randonnée 30L étanche vert",
        "Kumo 水筒 ステンレス 500ml 真空断熱 ネイビー",
    ],
}

MC_FORMATS = (
    "plain",
    "answer_prefix",
    "sentence",
    "bold",
    "echo_option",
    "option_text",
    "fenced",
    "parenthesized",
    "explained",
    "chatty",
    "ambiguous",
    "empty",
)
LIST_FORMATS = ("plain", "arrows", "lines", "json", "spaces", "prefixed", "explained", "ambiguous")
# The fixture's retrieval rows in this order put its ambiguous output (which the official
# parser reads as its first list) in task14 beside one that only the robust parser reads, as
# the development set's order does in task7.
FIXTURE_LIST_FORMATS = (
    "plain",
    "arrows",
    "lines",
    "json",
    "prefixed",
    "explained",
    "spaces",
    "ambiguous",
)
RANKING_FORMATS = ("arrows", "lines", "spaces", "plain")
NER_FORMATS = (
    "plain",
    "python_list",
    "none",
    "json_list",
    "bullets",
    "prefixed",
    "type_prefix",
    "explained",
    "quoted",
)
GEN_FORMATS = ("plain", "prefixed", "quoted", "preamble", "fenced", "plain", "empty")


def _mc(rng: random.Random, r: Record, fmt: str) -> tuple[str, str]:
    options = mc_options(r.input_field)
    texts = mc_option_texts(r.input_field)
    answer = r.output_field if rng.random() < 0.75 else rng.choice(options)
    if fmt == "option_text" and answer not in texts:
        fmt = "sentence"
    if fmt == "echo_option" and answer not in texts:
        fmt = "plain"
    other = rng.choice([o for o in options if o != answer])
    out = {
        "plain": f"{answer}",
        "answer_prefix": f"Answer: {answer}",
        "sentence": f"The correct option is {answer}.",
        "bold": f"**{answer}**",
        "echo_option": f"{answer}. {texts.get(answer, '')}",
        "option_text": texts.get(answer, ""),
        "fenced": f"```\n{answer}\n```",
        "parenthesized": f"({answer})",
        "explained": f"{answer}\nThis option matches the description best.",
        "chatty": f"Sure! Based on the information given, the answer is {answer}.",
        "ambiguous": f"{answer} or {other}",
        "empty": "",
    }[fmt]
    return out, fmt


def _ranked(rng: random.Random, r: Record) -> list[int]:
    order = sorted(range(1, len(r.output_field) + 1), key=lambda i: -r.output_field[i - 1])
    if rng.random() < 0.4:
        rng.shuffle(order)
    return order


def _retrieved(rng: random.Random, r: Record) -> list[int]:
    picks = list(r.output_field)
    pool = [i for i in range(1, 11) if i not in picks]
    while len(picks) < 3:
        picks.append(rng.choice(pool))
        pool.remove(picks[-1])
    if rng.random() < 0.3:
        picks[0] = rng.choice(pool)
    return picks[:3]


def _list(rng: random.Random, values: list[int], fmt: str) -> str:
    joined = ", ".join(map(str, values))
    return {
        "plain": joined,
        "arrows": "Ranking: " + " > ".join(map(str, values)),
        "lines": "\n".join(map(str, values)),
        "json": f"```json\n{json.dumps(values)}\n```",
        "spaces": " ".join(map(str, values)),
        "prefixed": f"Output: {joined}",
        "explained": f"{joined}\nItem {values[0]} is the best match.",
        "ambiguous": f"{joined} or maybe {', '.join(map(str, _alternative(values)))}",
    }[fmt]


def _alternative(values: list[int]) -> list[int]:
    """A different answer: another first item and the rest reversed."""
    others = [v for v in range(1, 16) if v not in values]
    return [others[0], *reversed(values[1:])]


def _ner(rng: random.Random, r: Record, fmt: str) -> str:
    entities = list(r.output_field) if rng.random() < 0.8 else ["unknown"]
    entity_type = r.input_field.split("entity type '")[1].split("'")[0]
    return {
        "plain": ", ".join(entities),
        "python_list": repr(entities),
        "json_list": json.dumps(entities),
        "bullets": "\n".join(f"- {e}" for e in entities),
        "prefixed": "Output: " + ", ".join(entities),
        "type_prefix": f"{entity_type}: " + ", ".join(entities),
        "quoted": ", ".join(f'"{e}"' for e in entities),
        "explained": ", ".join(entities)
        + f"\nThe query mentions {entities[0]} as its {entity_type}.",
        "none": "None",
    }[fmt]


def _gen(text: str, fmt: str) -> str:
    return {
        "plain": text,
        "prefixed": f"Output: {text}",
        "quoted": f'"{text}"',
        "preamble": f"Here is the answer:\n{text}",
        "fenced": f"```\n{text}\n```",
        "empty": "",
    }[fmt]


def build(
    records: list[Record],
    generation: dict[str, list[str]],
    seed: int = 2024,
    list_formats: tuple[str, ...] = LIST_FORMATS,
) -> list[dict[str, str]]:
    """One prediction object per record; formats cycle per task type (retrieval through
    ``list_formats``); generation texts come from ``generation`` (task -> texts by
    occurrence)."""
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    per_type: dict[str, int] = {}
    out = []
    for r in records:
        assert r.task_name is not None and r.task_type is not None
        k = seen.get(r.task_name, 0)
        seen[r.task_name] = k + 1
        j = per_type.get(r.task_type, 0)
        per_type[r.task_type] = j + 1
        if r.task_type == "multiple-choice":
            text, fmt = _mc(rng, r, MC_FORMATS[j % len(MC_FORMATS)])
        elif r.task_type == "ranking":
            fmt = RANKING_FORMATS[j % len(RANKING_FORMATS)]
            text = _list(rng, _ranked(rng, r), fmt)
        elif r.task_type == "retrieval":
            fmt = list_formats[j % len(list_formats)]
            text = _list(rng, _retrieved(rng, r), fmt)
        elif r.task_type == "named_entity_recognition":
            fmt = NER_FORMATS[j % len(NER_FORMATS)]
            text = _ner(rng, r, fmt)
        else:
            fmt = GEN_FORMATS[j % len(GEN_FORMATS)]
            text = _gen(generation[r.task_name][k], fmt)
        out.append({"prediction": text, "format": fmt})
    return out


def write(rows: list[dict[str, str]], path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    print(f"wrote {len(rows)} predictions to {path}")


def main() -> None:
    fixture = build(
        load_shopbench(DEV_FIXTURE), FIXTURE_GENERATION, list_formats=FIXTURE_LIST_FORMATS
    )
    write(fixture, HERE / "fixture_varied.jsonl")
    dev = real_dev_set()
    if dev is None:
        print("the real development set is not available: dev_varied.jsonl left as it is")
    else:
        write(build(load_shopbench(dev), GENERATION), HERE / "dev_varied.jsonl")


if __name__ == "__main__":
    main()
