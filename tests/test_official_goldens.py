"""The official goldens' machinery: checkouts are verified by their commit, the command says
what it needs, the committed goldens name the pinned sources and the corpora they came from,
and a missing golden fails."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import official_corpus as corpus
from tests.support.goldens import OFFICIAL, check_file, official_golden
from tests.support.official_goldens import main
from tests.support.official_run import KIT, MMLU, CheckoutError, Replay, verify_checkout
from tests.support.paths import REPO


def _git_repo(path: Path) -> str:
    path.mkdir()
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (path / "parsers.py").write_text("")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_checkout_at_another_commit_is_refused(tmp_path: Path) -> None:
    head = _git_repo(tmp_path / "kit")
    with pytest.raises(CheckoutError) as e:
        verify_checkout(KIT, tmp_path / "kit")
    message = str(e.value)
    assert str(tmp_path / "kit") in message and head in message and KIT.commit in message


def test_a_directory_that_is_not_a_checkout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckoutError, match="is not a git checkout"):
        verify_checkout(MMLU, tmp_path)
    with pytest.raises(CheckoutError, match="is not a directory"):
        verify_checkout(MMLU, tmp_path / "absent")


def test_the_command_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(KIT.env, raising=False)
    monkeypatch.delenv(MMLU.env, raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    for needle in (KIT.env, MMLU.env, KIT.commit, MMLU.commit, "--kit", "--mmlu"):
        assert needle in err, needle
    _git_repo(tmp_path / "mmlu")
    monkeypatch.setenv(MMLU.env, str(tmp_path / "mmlu"))
    assert main([]) == 2
    err = capsys.readouterr().err
    assert f"expected {MMLU.commit}" in err and str(tmp_path / "mmlu") in err


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("kit_parsers", KIT),
        ("kit_evaluation_fixture", KIT),
        ("kit_evaluation_real", KIT),
        ("mmlu_task_wise", MMLU),
        ("mmlu_skill_wise", MMLU),
    ],
)
def test_each_golden_names_its_pinned_source_and_inputs(name: str, source: object) -> None:
    golden = official_golden(name)
    assert golden["source"]["repository"] == source.url  # type: ignore[attr-defined]
    assert golden["source"]["commit"] == source.commit  # type: ignore[attr-defined]
    entries = [golden[k] for k in ("corpus", "data") if k in golden]
    entries += list(golden.get("corpora", {}).values())
    assert entries
    for entry in entries:
        path = REPO / entry["path"]
        if name == "kit_evaluation_real" and entry is golden["data"]:
            continue  # the real development set is not in the repository
        check_file(name, entry, path)
    assert golden["substitutions"]["sacrebleu"]


def test_a_missing_golden_fails_the_test() -> None:
    assert OFFICIAL.is_dir()
    with pytest.raises(pytest.fail.Exception, match="is missing: nox -s golden"):
        official_golden("no_such_golden")


def test_the_parser_golden_covers_every_corpus_case() -> None:
    golden = official_golden("kit_parsers")
    cases = json.loads(corpus.PARSER_INPUTS.read_text("utf-8"))
    assert [sorted(c["task_types"]) for c in cases] == [sorted(p) for p in golden["cases"]]


def test_replay_generates_the_given_outputs_in_order() -> None:
    seen: list[int] = []
    replay = Replay(["a", "b"], on_generate=seen.append)
    tokenizer, model = replay.load("any-model")
    for prompt, want in (("p1", "a"), ("p2", "b")):
        inputs = tokenizer(prompt, return_tensors="pt")
        ids = model.generate(inputs.input_ids.cuda(), max_new_tokens=7)
        assert tokenizer.batch_decode(ids)[0][len(prompt) :] == want
    assert replay.prompts == ["p1", "p2"] and replay.max_new_tokens == [7, 7] and seen == [0, 1]
