"""``harness score`` (score_cli.main) and the ``score`` stage, on the project's
development-format fixture and its varied-format corpus; their error cases."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from harness.core.contract import StageContext
from harness.core.stage import stage_defs
from harness.errors import HarnessError
from harness.shopbench.errors import DataError, ScoringError
from harness.shopbench.score_cli import add_arguments, main, parse_sentence_models
from tests.support.paths import FIXTURE_CORPUS as CORPUS
from tests.support.paths import TINY_CPU
from tests.support.stages import run_stage, stage_context


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harness score")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def _run(args: argparse.Namespace) -> str:
    buf = io.StringIO()
    assert main(args, Console(file=buf, width=160)) == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def dev_path(dev_fixture: Path) -> Path:
    return dev_fixture


def test_score_cli_writes_scores_rows_and_prints_a_table(dev_path: Path, tmp_path: Path) -> None:
    out, rows = tmp_path / "s" / "scores.json", tmp_path / "rows.jsonl"
    text = _run(
        _args(
            "--data", str(dev_path), "--predictions", str(CORPUS), "--parser", "robust",
            "--out", str(out), "--rows", str(rows),
        )
    )  # fmt: skip
    scores = json.loads(out.read_text("utf-8"))
    assert scores["parser"] == "robust" and len(scores["tasks"]) == 18
    assert len(rows.read_text("utf-8").splitlines()) == 44
    assert "ShopBench scores (robust parser)" in text and "task17" in text
    assert f"{scores['overall']:.4f}" in text and "all-tracks" in text


def test_score_cli_default_is_official_and_writes_nothing(dev_path: Path, tmp_path: Path) -> None:
    text = _run(_args("--data", str(dev_path), "--predictions", str(CORPUS)))
    assert "official parser" in text
    assert list(tmp_path.iterdir()) == []


def test_score_cli_errors(dev_path: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.jsonl"
    short.write_text('{"prediction": "1"}\n', "utf-8")
    with pytest.raises(ScoringError, match=r"1 predictions but .* has 44 rows"):
        main(_args("--data", str(dev_path), "--predictions", str(short)))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prediction": "1"}\n{"prediction": \n', "utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl:2: invalid JSON"):
        main(_args("--data", str(dev_path), "--predictions", str(broken)))
    with pytest.raises(HarnessError, match="NAME=PATH"):
        parse_sentence_models(["all-MiniLM-L6-v2"])
    assert parse_sentence_models(["a=/x", " b = /y "]) == {"a": "/x", "b": "/y"}
    with pytest.raises(SystemExit):
        _args("--data", "d", "--predictions", "p", "--parser", "lenient")


def test_score_cli_sentence_model_override_is_used(dev_path: Path, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a directory"):
        main(
            _args(
                "--data", str(dev_path), "--predictions", str(CORPUS),
                "--sentence-model", f"all-MiniLM-L6-v2={tmp_path / 'missing'}",
            )
        )  # fmt: skip


# --------------------------------------------------------------------------- the score stage


def _context(tmp_path: Path, dev_path: Path, *overrides: str, out: str = "out") -> StageContext:
    """The score stage of the tiny_cpu spec on the development-format fixture, scoring the
    predictions in ``<tmp_path>/infer``."""
    return stage_context(
        TINY_CPU,
        "score",
        f"eval.data={dev_path}",
        *overrides,
        out=tmp_path / out,
        inputs={"predictions": tmp_path / "infer"},
        run_dir=tmp_path / "run",
    )


def _infer_dir(tmp_path: Path, dev_path: Path, n: int | None = None) -> None:
    d = tmp_path / "infer"
    d.mkdir()
    data = [json.loads(x) for x in dev_path.read_text("utf-8").splitlines() if x.strip()]
    preds = [json.loads(x) for x in CORPUS.read_text("utf-8").splitlines()]
    rows = [
        {"prediction": p["prediction"], "task_name": r["task_name"], "task_type": r["task_type"]}
        for p, r in zip(preds, data, strict=True)
    ][:n]
    (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")


def test_score_stage_writes_both_modes(dev_path: Path, tmp_path: Path) -> None:
    stage = stage_defs()["score"]
    assert stage.env == "core" and stage.inputs == {"predictions": ("infer",)}
    _infer_dir(tmp_path, dev_path)
    ctx = _context(tmp_path, dev_path, "eval.parser=robust")
    result = run_stage(ctx)
    files = sorted(p.name for p in ctx.out.iterdir())
    assert files == [
        "rows.jsonl",
        "rows_official.jsonl",
        "rows_robust.jsonl",
        "scores.json",
        "scores.png",
        "scores_official.json",
        "scores_robust.json",
    ]
    robust = json.loads((ctx.out / "scores_robust.json").read_text("utf-8"))
    official = json.loads((ctx.out / "scores_official.json").read_text("utf-8"))
    assert json.loads((ctx.out / "scores.json").read_text("utf-8")) == robust
    m = result.metrics
    assert m["overall"] == robust["overall"] == m["robust/overall"]
    assert m["official/overall"] == official["overall"] < robust["overall"]
    assert m["robust/parse_rate/ranking"] == 1.0
    assert m["official/task/task12"] == official["tasks"]["task12"]["score"]
    assert "robust/track/all-tracks" in m
    assert result.images == {"scores": "scores.png"}
    assert set(result.tables) == {"rows_official", "rows_robust"}


def test_score_stage_limit_tracks_and_misalignment(dev_path: Path, tmp_path: Path) -> None:
    _infer_dir(tmp_path, dev_path, n=17)
    track = "eval.tracks=[amazon-kdd-cup-24-understanding-shopping-concepts]"
    ctx = _context(tmp_path, dev_path, track, "infer.limit=17")
    assert ctx.config["eval"]["parser"] == "official"
    result = run_stage(ctx)
    assert result.summary["rows"] == 17  # the first 17 rows are all in track 1
    with pytest.raises(ScoringError, match=r"17 predictions but .* has 44 rows"):
        run_stage(_context(tmp_path, dev_path, track, out="out2"))


def test_score_stage_detects_out_of_order_predictions(dev_path: Path, tmp_path: Path) -> None:
    _infer_dir(tmp_path, dev_path)
    path = tmp_path / "infer" / "predictions.jsonl"
    lines = path.read_text("utf-8").splitlines()
    lines[0], lines[4] = lines[4], lines[0]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(ScoringError, match=r"predictions\.jsonl:1: prediction is for task 'task3'"):
        run_stage(_context(tmp_path, dev_path))
