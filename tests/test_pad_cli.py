"""``harness pad``: the standalone command, through the harness CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from tests.support.tiny_models import LOGIT_TOL, build_qwen2, logits, tiny_model, token_ids


def test_pad_with_tp_and_group_size(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tiny_model("pad-qwen2", tmp_path_factory.getbasetemp()), tmp_path / "dst"
    assert main(["pad", str(src), str(dst), "--tp", "2", "--tp", "4", "--group-size", "16"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["intermediate_size"] == {"before": 96, "after": 128}
    assert summary["placement"] == "interleave"
    ids = token_ids(128, 5)
    assert (logits(src, ids) - logits(dst, ids)).abs().max().item() <= LOGIT_TOL


def test_pad_with_explicit_target_and_append(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    build_qwen2(src, hidden=32, inter=40, layers=1)
    rc = main(["pad", str(src), str(dst), "--target", "48", "--placement", "append", "--no-fsync"])
    assert rc == 0
    assert json.loads((dst / "config.json").read_text())["intermediate_size"] == 48
    assert json.loads(capsys.readouterr().out)["placement"] == "append"


def test_dry_run_prints_the_table_and_writes_nothing(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tiny_model("pad-qwen2-wide", tmp_path_factory.getbasetemp()), tmp_path / "dst"
    args = ["pad", str(src), str(dst), "--tp", "2", "--group-size", "64", "--dry-run"]
    assert main([*args, "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["target"] == 384 and table["serves_tp_sizes"] is True
    assert 2 not in table["before"]["valid_tp"] and 2 in table["after"]["valid_tp"]
    assert "2" in table["before"]["problems"]
    assert main(args) == 0  # without --json: the table, as the help says
    lines = capsys.readouterr().out.splitlines()
    before = table["before"]["intermediate_size"]
    assert lines[0] == f"intermediate_size {before} -> 384 (group size 64; wanted TP 2: served)"
    assert lines[1].split() == ["TP", "before", "after"]
    rows = {int(ln.split()[0]): ln.split()[1:] for ln in lines[2:]}
    assert rows[2] == ["no", "ok"] and rows[1] == ["ok", "ok"]
    assert all(len(ln) <= 80 for ln in lines)
    assert not dst.exists()


def test_errors_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    build_qwen2(src, hidden=64, inter=96, layers=1)
    assert main(["pad", str(src), str(dst)]) == 2
    assert "give --target N or at least one --tp N" in capsys.readouterr().err
    assert main(["pad", str(src), str(dst), "--target", "64"]) == 2
    assert "smaller than the current 96" in capsys.readouterr().err
    assert (
        main(["pad", str(src), str(dst), "--target", "112", "--tp", "4", "--group-size", "16"]) == 2
    )
    err = capsys.readouterr().err
    assert "does not serve" in err and "pad intermediate_size to 128" in err
    assert not dst.exists()
    with pytest.raises(SystemExit):
        main(["pad", str(src), str(dst), "--tp", "2", "--group-size", "zero"])
