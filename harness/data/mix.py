"""The training mix: weighted sources in ECInstruct format, caps, a held-out split, a seeded
shuffle, a contamination check against the evaluation prompts, and per-task statistics.

Order of operations (all seeded, so the mix is a pure function of its inputs):

1. each source is read, deduplicated (by its training text) and capped at ``max_items``;
   an item already taken from an earlier source is dropped;
2. per task, ``heldout_fraction`` of the items is held out (before any up-sampling, so a
   held-out item never appears in training);
3. each source's remaining items are taken ``weight`` times (``total`` set: a
   ``weight``-proportional share of ``total``); a factor above 1 repeats items, below 1
   samples;
4. training items are capped at ``cap_per_task`` per task and shuffled;
5. no evaluation prompt may appear in training: an item matches when its input, its
   instruction + input, or its dev-format prompt equals an evaluation prompt (whitespace
   normalised, trailing ``Answer:``/``Output:`` ignored).
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from harness.data.catalogue import Catalogue
from harness.data.clean import normalize_prompt
from harness.data.ecinstruct import (
    EC_KEYS,
    dev_to_ec,
    ec_to_dev,
    load_ecinstruct,
    mc_answer_index,
    record_to_dev,
)
from harness.data.errors import ContaminationError, MixError
from harness.jsonl import numbered_json_lines
from harness.spec.schema import MixConfig, MixSource

_SUFFIX = re.compile(r"\s*(?:Answer|Output)\s*:\s*$", re.I)
SCORABLE = {"accuracy", "hit rate@3", "ndcg", "micro f1", "rougel", "bleu", "jp-bleu"}
SCORABLE |= {"sent-transformer", "multilingual-sent-transformer"}


@dataclass
class MixItem:
    """One training item, its dev-format form when it has one, and the source it came from."""

    ec: dict[str, Any]
    dev: dict[str, Any] | None
    source: str

    @property
    def task(self) -> str:
        """The item's task name."""
        return str(self.ec["task"])

    def text_key(self) -> str:
        """Whitespace-normalised training text (the dedupe key)."""
        opts = "\n".join(self.ec.get("options") or [])
        return normalize_prompt(f"{self.ec['instruction']}\n{self.ec['input']}\n{opts}")


@dataclass
class MixResult:
    """The mix and its statistics."""

    train: list[MixItem] = field(default_factory=list)
    heldout: list[MixItem] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    contaminated: list[dict[str, Any]] = field(default_factory=list)


def prompt_keys(text: str) -> set[str]:
    """Normalised forms of a prompt compared by the contamination check."""
    norm = normalize_prompt(text)
    core = normalize_prompt(_SUFFIX.sub("", norm))
    return {norm, core} - {""}


def _dev_items(
    rows: list[dict[str, Any]], source: str, catalogue: Catalogue | None
) -> list[MixItem]:
    out = []
    for row in rows:
        spec = catalogue.tasks.get(row["task_name"]) if catalogue else None
        dev = {k: row[k] for k in row if k != "meta"}
        scorable = dev.get("metric") in SCORABLE
        ec = dev_to_ec(dev, spec.instruction if spec else None)
        out.append(MixItem(ec, dev if scorable else None, source))
    return out


def load_source(
    src: MixSource,
    *,
    root: Path,
    synthetic: Path | None,
    catalogue: Catalogue | None,
    skipped: list[str] | None = None,
) -> list[MixItem]:
    """Read one mix source into items.

    Args:
        src: The source entry of ``data.mix.sources``.
        root: Project root (relative ``path`` values resolve against it).
        synthetic: The synthetic examples file (for ``kind: synthetic``).
        catalogue: Task catalogue (instructions of synthetic/dev-format tasks).
        skipped: Collects malformed EC-Guide rows that were left out.

    Returns:
        The items, in source order.

    Raises:
        MixError: Missing path or upstream, unreadable data.
    """

    from harness.public_data import resolve_path
    from harness.shopbench.data import load_ec_guide, load_shopbench

    if src.kind == "synthetic":
        if synthetic is None:
            raise MixError(
                f"mix source `{src.name}` is `kind: synthetic` but the plan has no synthesize "
                "stage (add `synthesize` to `stages`)"
            )
        lines = synthetic.read_text(encoding="utf-8").splitlines()
        rows = [row for _, row in numbered_json_lines(lines, synthetic, MixError)]
        return _dev_items(rows, src.name, catalogue)
    if not src.path:
        raise MixError(f"mix source `{src.name}` (kind {src.kind}) needs `path`")
    path = resolve_path(src.path, root)
    if not path.exists():
        raise MixError(f"mix source `{src.name}`: {path} not found")
    if src.kind == "shopbench":
        return _dev_items([record_to_dev(r) for r in load_shopbench(path)], src.name, catalogue)
    if src.kind == "ec_guide":
        recs = load_ec_guide(path, skipped=skipped if skipped is not None else [])
        return _dev_items([record_to_dev(r) for r in recs], src.name, None)
    return _ecinstruct_items(load_ecinstruct(path, src.split, src.setting), src.name, skipped)


def _ecinstruct_items(
    records: list[dict[str, Any]], source: str, skipped: list[str] | None
) -> list[MixItem]:
    """Imported ECInstruct records as mix items, multiple-choice answers as option indices.

    Training lays options out numbered from 0 (as ShopBench does), so an answer given as a
    letter (``B``) or as the option text becomes that option's index. An answer that names no
    option is skipped and recorded in ``skipped`` (never dropped silently).
    """
    out = []
    for ec in records:
        dev = ec_to_dev(ec)  # from the original answer: a digit answer may also be option text
        if ec["task_type"] == "multiple-choice":
            idx = mc_answer_index(ec)
            if idx is None:
                if skipped is None:
                    raise MixError(
                        f"mix source `{source}`: {ec['task']}: answer {ec['output']!r} names "
                        "none of the options"
                    )
                skipped.append(
                    f"{source}: {ec['task']}: answer {ec['output']!r} names none of the options"
                )
                continue
            ec = {**ec, "output": str(idx)}
        out.append(MixItem(ec, dev, source))
    return out


def _take(rng: random.Random, items: list[MixItem], n: int) -> list[MixItem]:
    """n items: a sample when n <= len, else whole copies plus a sample of the rest."""
    if not items or n <= 0:
        return []
    whole, rest = divmod(n, len(items))
    return items * whole + rng.sample(items, rest)


def _position(item: MixItem) -> int | None:
    if item.ec["task_type"] != "multiple-choice":
        return None
    if item.dev is not None and isinstance(item.dev.get("output_field"), int):
        return int(item.dev["output_field"])
    return mc_answer_index(item.ec)


def task_statistics(train: list[MixItem], heldout: list[MixItem]) -> dict[str, dict[str, Any]]:
    """Per task: counts, sources, input/output lengths and (MC) answer positions."""
    by_task: dict[str, list[MixItem]] = defaultdict(list)
    for it in train:
        by_task[it.task].append(it)
    held = Counter(it.task for it in heldout)
    out: dict[str, dict[str, Any]] = {}
    for task in sorted(set(by_task) | set(held)):
        items = by_task.get(task, [])
        st: dict[str, Any] = {
            "task_type": (items[0].ec["task_type"] if items else None),
            "train": len(items),
            "heldout": held.get(task, 0),
            "sources": dict(Counter(it.source for it in items)),
        }
        if items:
            ins = [len(it.ec["instruction"]) + len(it.ec["input"]) for it in items]
            outs = [len(it.ec["output"]) for it in items]
            st.update(
                {
                    "input_chars_mean": round(mean(ins), 1),
                    "input_chars_max": max(ins),
                    "output_chars_mean": round(mean(outs), 1),
                    "output_chars_max": max(outs),
                }
            )
        positions = [p for p in map(_position, items) if p is not None]
        if positions:
            counts = Counter(positions)
            st["answer_positions"] = {str(k): counts[k] for k in sorted(counts)}
            st["answer_position_max_share"] = round(max(counts.values()) / len(positions), 4)
        out[task] = st
    return out


def build_mix(
    sources: list[tuple[MixSource, list[MixItem]]],
    cfg: MixConfig,
    eval_prompts: list[str] | None = None,
) -> MixResult:
    """Build the mix from loaded sources.

    Args:
        sources: Each ``data.mix.sources`` entry with its loaded items, in spec order.
        cfg: ``data.mix``.
        eval_prompts: Prompts of the evaluation data (None: no contamination check).

    Returns:
        Train and held-out items, statistics and any contaminated training items.

    Raises:
        MixError: The mix is empty.
        ContaminationError: An evaluation prompt appears in training and the check is on.
    """
    seen: set[str] = set()
    kept: list[tuple[MixSource, list[MixItem]]] = []
    loaded: dict[str, dict[str, int]] = {}
    for src, items in sources:
        unique = []
        dup = 0
        for it in items:
            key = it.text_key()
            if key in seen:
                dup += 1
                continue
            seen.add(key)
            unique.append(it)
        if src.max_items is not None and len(unique) > src.max_items:
            unique = random.Random(f"{cfg.seed}:{src.name}:cap").sample(unique, src.max_items)
        loaded[src.name] = {"read": len(items), "duplicates": dup, "kept": len(unique)}
        kept.append((src, unique))

    by_task: dict[str, list[MixItem]] = defaultdict(list)
    for _, items in kept:
        for it in items:
            by_task[it.task].append(it)
    held_ids: set[int] = set()
    heldout: list[MixItem] = []
    for task in sorted(by_task):
        items = list(by_task[task])
        random.Random(f"{cfg.seed}:{task}:heldout").shuffle(items)
        k = int(len(items) * cfg.heldout_fraction + 0.5) if len(items) > 1 else 0
        heldout += items[:k]
        held_ids.update(id(it) for it in items[:k])

    total_w = sum(src.weight for src, _ in kept)
    train: list[MixItem] = []
    for src, items in kept:
        pool = [it for it in items if id(it) not in held_ids]
        target = (
            round(cfg.total * src.weight / total_w) if cfg.total else round(len(pool) * src.weight)
        )
        train += _take(random.Random(f"{cfg.seed}:{src.name}:weight"), pool, target)
        loaded[src.name]["train"] = target

    if cfg.cap_per_task is not None:
        grouped: dict[str, list[MixItem]] = defaultdict(list)
        for it in train:
            grouped[it.task].append(it)
        train = []
        for task in sorted(grouped):
            items = grouped[task]
            if len(items) > cfg.cap_per_task:
                items = random.Random(f"{cfg.seed}:{task}:cap").sample(items, cfg.cap_per_task)
            train += items
    random.Random(f"{cfg.seed}:shuffle").shuffle(train)
    if not train:
        raise MixError("the training mix is empty (check `data.mix.sources` and the caps)")

    result = MixResult(train=train, heldout=heldout)
    if eval_prompts is not None:
        evals: dict[str, str] = {}
        for p in eval_prompts:
            for k in prompt_keys(p):
                evals.setdefault(k, p)
        for it in train:
            texts = [it.ec["input"], f"{it.ec['instruction']}\n{it.ec['input']}"]
            if it.dev is not None:
                texts.append(it.dev["input_field"])
            hit = next((evals[k] for t in texts for k in prompt_keys(t) if k in evals), None)
            if hit is not None:
                result.contaminated.append(
                    {"task": it.task, "source": it.source, "eval_prompt": hit[:300]}
                )
        if result.contaminated and cfg.contamination_check:
            first = result.contaminated[0]
            raise ContaminationError(
                f"{len(result.contaminated)} training item(s) contain an evaluation prompt; "
                f"first: task {first['task']} from source `{first['source']}`: "
                f"{first['eval_prompt'][:160]!r}"
            )
    result.stats = {
        "train": len(train),
        "heldout": len(heldout),
        "sources": loaded,
        "contamination_checked": eval_prompts is not None,
        "eval_prompts": len(eval_prompts) if eval_prompts is not None else 0,
        "contaminated": len(result.contaminated),
        "tasks": task_statistics(train, heldout),
    }
    return result


def ec_row(item: MixItem) -> dict[str, Any]:
    """The contract's ECInstruct row of an item."""
    return {k: item.ec[k] for k in EC_KEYS}
