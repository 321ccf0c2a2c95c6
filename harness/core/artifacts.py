"""The typed artifacts stages hand to each other: what files make each one, and accessors,
so that no reader or writer spells a file name.

A stage declares the artifacts it outputs; the executor refuses to publish a stage dir in
which one of them is incomplete (:meth:`Artifact.missing`). Readers take a finished stage dir
and use the accessors (``MODEL.dir(d)``, ``PREDICTIONS.file(d)``, ``SCORES.file(d, "robust")``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    """An artifact kind.

    Attributes:
        name: The kind's name (``model``, ``mix``, ...).
        required: Files (relative to the stage dir) that must exist; a tuple inside the tuple
            means "one of these".
        description: What it holds, for docs and messages.
    """

    name: str
    required: tuple[str | tuple[str, ...], ...]
    description: str

    def missing(self, stage_dir: Path) -> list[str]:
        """Required files absent from ``stage_dir`` (empty when complete)."""
        out = []
        for need in self.required:
            options = need if isinstance(need, tuple) else (need,)
            if not any((stage_dir / o).exists() for o in options):
                out.append(" or ".join(options))
        return out


class _Model(Artifact):
    def dir(self, stage_dir: Path) -> Path:
        """The Hugging Face model dir: ``model/``, or where ``model_ref.json`` points (a
        model used in place, not copied)."""
        ref = stage_dir / "model_ref.json"
        if ref.is_file():
            return Path(json.loads(ref.read_text(encoding="utf-8"))["path"])
        return stage_dir / "model"

    def ref_file(self, stage_dir: Path) -> Path:
        """Where a stage records a model it uses in place."""
        return stage_dir / "model_ref.json"


class _Files(Artifact):
    def file(self, stage_dir: Path, name: str | None = None) -> Path:
        """The artifact's main file, or one of its named files."""
        first = self.required[0]
        main = first if isinstance(first, str) else first[0]
        return stage_dir / (name or main)


class _Mix(Artifact):
    def train(self, stage_dir: Path) -> Path:
        """The training rows (ECInstruct JSON Lines)."""
        return stage_dir / "train.jsonl"

    def heldout(self, stage_dir: Path) -> Path:
        """The held-out rows (ECInstruct JSON Lines)."""
        return stage_dir / "heldout.jsonl"

    def heldout_shopbench(self, stage_dir: Path) -> Path:
        """The held-out rows that have a ShopBench dev-format form."""
        return stage_dir / "heldout_shopbench.jsonl"


class _Scores(Artifact):
    def file(self, stage_dir: Path, mode: str | None = None) -> Path:
        """``scores.json`` (the primary parser mode), or one mode's ``scores_<mode>.json``."""
        return stage_dir / ("scores.json" if mode is None else f"scores_{mode}.json")

    def rows(self, stage_dir: Path, mode: str | None = None) -> Path:
        """Per-row scores of the primary mode, or of one mode."""
        return stage_dir / ("rows.jsonl" if mode is None else f"rows_{mode}.jsonl")


MODEL = _Model(
    "model",
    (("model/config.json", "model_ref.json"),),
    "a Hugging Face model dir (`model/`), or `model_ref.json` naming one used in place",
)
EXAMPLES = _Files(
    "examples", ("examples.jsonl", "rejected.jsonl"), "synthetic ShopBench-format examples"
)
MIX = _Mix("mix", ("train.jsonl", "heldout.jsonl"), "the training mix (ECInstruct rows)")
PREDICTIONS = _Files(
    "predictions", ("predictions.jsonl", "requests.jsonl"), "raw outputs, one per eval row"
)
SCORES = _Scores("scores", ("scores.json", "rows.jsonl"), "scores per task, track and overall")
MMLU_PREDICTIONS = _Files(
    "mmlu_predictions",
    ("mmlu_predictions.jsonl",),
    "raw Shopping MMLU outputs, one per question of every evaluated file",
)
MMLU_SCORES = _Files(
    "mmlu_scores",
    ("mmlu_scores.json",),
    "Shopping MMLU scores under every profile: tasks, skills, leaderboard columns",
)
REPORT = _Files(
    "report", ("report.md", "report.json", "report.html"), "the run's report and its page"
)


def manifest(stage_dir: Path) -> dict[str, Any]:
    """The manifest of a finished stage dir."""
    return json.loads((stage_dir / MANIFEST).read_text(encoding="utf-8"))


def result(stage_dir: Path) -> dict[str, Any]:
    """The stage result (metrics, tables, images, series, summary) of a finished stage dir."""
    return manifest(stage_dir)["result"]
