"""Synthetic inputs of the run page: rows with distinct texts, their scores, a baseline, and
hostile outputs, for the page tests and the explorer benchmark (no pipeline needed)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from harness.explorer import ExplorerRow, build_run_page
from harness.explorer.rows import Scored

TASKS = [
    ("task1", "multiple-choice", "amazon-kdd-cup-24-understanding-shopping-concepts"),
    ("task2", "generation", "amazon-kdd-cup-24-shopping-knowledge-reasoning"),
    ("task3", "ranking", "amazon-kdd-cup-24-user-behavior-alignment"),
    ("task4", "named_entity_recognition", "amazon-kdd-cup-24-multi-lingual-abilities"),
    ("task5", "retrieval", "amazon-kdd-cup-24-user-behavior-alignment"),
]
HOSTILE = [
    "<script>window.__pwned = 1; alert(1)</script>",
    '</textarea><img src=x onerror="window.__pwned = 2">',
    "</script><script>window.__pwned = 3</script>",
    "<img src=x onerror=window.__pwned=4> & \u2028 <b>bold</b>",
]
WORDS = [
    "wireless",
    "charger",
    "cable",
    "phone",
    "case",
    "organic",
    "coffee",
    "beans",
    "running",
    "shoes",
    "kitchen",
    "knife",
    "set",
    "bluetooth",
    "speaker",
    "yoga",
    "mat",
    "water",
    "bottle",
    "desk",
    "lamp",
    "backpack",
    "headphones",
    "notebook",
    "pen",
    "blender",
    "pillow",
    "blanket",
    "mug",
    "tea",
    "kettle",
    "charger",
    "adapter",
    "hdmi",
    "laptop",
    "stand",
    "keyboard",
    "mouse",
]


def _text(rng: random.Random, n_words: int, i: int) -> str:
    return f"[{i}] " + " ".join(rng.choice(WORDS) for _ in range(n_words))


def rows(n: int, seed: int = 0, hostile: bool = True, prompt_words: int = 90) -> list[ExplorerRow]:
    """``n`` rows over five tasks with distinct prompts and outputs (about 600 characters of
    prompt a row, as in the ShopBench development set), a fixed share whose parse failed,
    rows where the parsers disagree, and a baseline ``base``; with ``hostile``, the first rows'
    outputs are markup that must show as text."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        task, type_, track = TASKS[i % len(TASKS)]
        output = HOSTILE[i] if hostile and i < len(HOSTILE) else _text(rng, 12, i)
        ok = i % 7 != 3
        robust_ok = ok or i % 2 == 0
        score = round(rng.random(), 6) if ok else 0.0
        robust = score if ok else (round(rng.random(), 6) if robust_ok else 0.0)
        base_score = round(rng.random(), 6)
        out.append(
            ExplorerRow(
                index=i,
                task=task,
                type=type_,
                track=track,
                messages=[
                    {"role": "system", "content": "You are a helpful online shopping assistant."},
                    {"role": "user", "content": _text(rng, prompt_words, i)},
                ],
                truth=[f"answer {i}"] if i % 2 else f"answer {i}",
                run=Scored(
                    output,
                    parsed={
                        "official": f"p{i}" if ok else None,
                        "robust": f"p{i}" if robust_ok else None,
                    },
                    parse_ok={"official": ok, "robust": robust_ok},
                    score={"official": score, "robust": robust},
                ),
                baselines={
                    "base": Scored(
                        _text(rng, 6, i),
                        parsed={"official": f"b{i}", "robust": f"b{i}"},
                        parse_ok={"official": True, "robust": True},
                        score={"official": base_score, "robust": base_score},
                    )
                },
            )
        )
    return out


def scores(rs: list[ExplorerRow]) -> dict[str, dict[str, Any]]:
    """Per mode the ``scores_<mode>.json`` of the rows (task means), with intervals."""
    out: dict[str, dict[str, Any]] = {}
    for mode in ("official", "robust"):
        tasks: dict[str, Any] = {}
        for task, type_, _ in TASKS:
            vals = [r.run.score[mode] for r in rs if r.task == task]
            if vals:
                mean = sum(vals) / len(vals)
                tasks[task] = {
                    "task_type": type_,
                    "metric": "accuracy",
                    "n": len(vals),
                    "score": mean,
                    "ci": [max(0.0, mean - 0.1), min(1.0, mean + 0.1)],
                    "stderr": 0.05,
                }
        tracks: dict[str, float] = {}
        for _, _, track in TASKS:
            ts = [tasks[t]["score"] for t, _, tr in TASKS if tr == track and t in tasks]
            tracks[track] = sum(ts) / len(ts)
        tracks["all-tracks"] = sum(tracks.values()) / len(tracks)
        overall = sum(t["score"] for t in tasks.values()) / len(tasks)
        out[mode] = {"parser": mode, "tasks": tasks, "tracks": tracks, "overall": overall}
    return out


def facts(sc: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A ``report.json`` with a baseline comparison and one stage."""
    return {
        "stages": {
            "score": {
                "key": "abc123",
                "metrics": {"overall": 0.5, "rows": 86},
                "summary": {"parser": "official"},
            }
        },
        "scores": {m: {"overall": s["overall"], "tracks": s["tracks"]} for m, s in sc.items()},
        "baselines": {
            "this run": {
                "overall": sc["official"]["overall"],
                "task_types": {"ranking": 0.5},
                "parse_rates": {},
                "inference": {},
            },
            "base": {
                "overall": 0.25,
                "task_types": {"ranking": 0.125},
                "parse_rates": {},
                "inference": {},
            },
        },
        "comparisons": {
            "base": {
                "overall": {
                    "a": 0.25,
                    "b": sc["official"]["overall"],
                    "delta": sc["official"]["overall"] - 0.25,
                    "ci": [0.01, 0.4],
                    "p_value": 0.03,
                }
            }
        },
    }


def write_page(path: Path, n: int, **kw: Any) -> tuple[Path, list[ExplorerRow], dict[str, Any]]:
    """Write the page of ``n`` synthetic rows; returns the path, the rows and the scores."""
    rs = rows(n, hostile=kw.pop("hostile", True))
    sc = scores(rs)
    html = build_run_page(
        title="synthetic <run>",
        header={
            "spec": "synthetic <run>",
            "platform": "cpu",
            "engine": "vllm",
            "model": "tiny",
            "stages": [{"name": "score", "key": "abc123", "wall_s": 1.5}],
            "data": [{"name": "eval.data", "path": "eval.jsonl", "sha256": "0" * 64}],
        },
        scores=sc,
        facts=facts(sc),
        rows=rs,
        parser="official",
        **kw,
    )
    path.write_text(html, encoding="utf-8")
    return path, rs, sc
