"""Planning: content-addressed keys (hypothesis properties), DAG wiring, change detection,
and that planning imports neither torch nor vllm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.plan import build_plan, reasons, stage_key
from harness.spec import load_spec
from tests.support.paths import REPO
from tests.support.paths import TINY_CPU as TINY

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
slices = st.dictionaries(st.text(min_size=1, max_size=10), json_value, max_size=4)
upstreams = st.dictionaries(
    st.sampled_from(["model", "data"]), st.text("0123456789abcdef", min_size=4, max_size=8)
)


@given(slices, upstreams)
def test_key_ignores_key_order(slice_: dict, up: dict) -> None:
    reordered = dict(reversed(list(slice_.items())))
    assert stage_key("s", "1", slice_, {}, up) == stage_key(
        "s", "1", reordered, {}, dict(reversed(list(up.items())))
    )


@given(slices, slices, upstreams, upstreams)
def test_key_changes_iff_slice_or_upstream_changes(a: dict, b: dict, ua: dict, ub: dict) -> None:
    same_inputs = a == b and ua == ub
    assert (stage_key("s", "1", a, {}, ua) == stage_key("s", "1", b, {}, ub)) == same_inputs


@given(slices)
def test_key_depends_on_stage_version_and_files(slice_: dict) -> None:
    k = stage_key("s", "1", slice_, {}, {})
    assert k != stage_key("s", "2", slice_, {}, {})
    assert k != stage_key("s", "1", slice_, {"a.path": "sha"}, {})


def _plan(*overrides: str):
    return build_plan(load_spec(TINY, ["stages=[toy_a,toy_b]", *overrides]), REPO)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.floats(0, 2, allow_nan=False))
def test_fields_outside_slice_do_not_enter_keys(seed: int, temperature: float) -> None:
    base = _plan()
    p = _plan(
        f"finetune.lora.rank={seed % 64 + 1}", "tracking.mode=disabled", "run.root=/elsewhere"
    )
    assert [s.key for s in p.stages] == [s.key for s in base.stages]
    q = _plan(f"decoding.generation.temperature={temperature}")
    a0, b0 = base.stages
    a1, b1 = q.stages
    assert a1.key == a0.key  # upstream stage unaffected
    assert (b1.key == b0.key) == (temperature == 0.0)  # downstream re-keyed iff changed
    if b1.key != b0.key:
        why = reasons(q, {"toy_a": a0.record(), "toy_b": b0.record()})
        assert why["toy_a"] == [] or why["toy_a"][0]["kind"] == "not in the store"
        assert why["toy_b"] == [
            {"kind": "spec changed", "detail": "decoding.generation.temperature"}
        ]


def test_upstream_change_propagates() -> None:
    base = _plan()
    p = _plan("model.tiny.seed=5")
    assert all(x.key != y.key for x, y in zip(base.stages, p.stages, strict=True))
    assert p.stages[1].inputs == {"numbers": "toy_a"}


def test_input_file_content_enters_key(tmp_path: Path) -> None:
    data = tmp_path / "eval.jsonl"
    data.write_text('{"a": 1}\n')
    loaded = load_spec(TINY, ["stages=[model,infer,score]", f"eval.data={data}"])
    k1 = build_plan(loaded, REPO).by_name("score").key
    data.write_text('{"a": 2}\n')
    k2 = (
        build_plan(load_spec(TINY, ["stages=[model,infer,score]", f"eval.data={data}"]), REPO)
        .by_name("score")
        .key
    )
    assert k1 != k2


def test_paper_plan_has_every_stage_without_heavy_imports() -> None:
    code = (
        "import sys\n"
        "from harness.core.plan import build_plan\n"
        "from harness.spec import load_spec\n"
        "p = build_plan(load_spec('experiments/qwen2_awq.yaml'), strict=False)\n"
        "print(','.join(s.name for s in p.stages))\n"
        "print(sorted(m for m in ('torch', 'vllm', 'transformers', 'awq', 'trl') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    names, heavy = proc.stdout.strip().splitlines()
    assert names == "model,synthesize,mix,finetune,pad,quantize,infer,score,report"
    assert heavy == "[]"


def test_plan_cli_shows_every_paper_stage(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    rc = main(["plan", str(REPO / "experiments" / "qwen2_awq.yaml")])
    out = capsys.readouterr().out
    assert rc == (1 if "missing input" in out else 0)  # its data is not in the repository
    import re

    lines = [
        re.match(r"(cached|will run|missing input|blocked \(by \S+\)) +(\S+) [0-9a-f]{20} ", ln)
        for ln in out.splitlines()
    ]
    names = [m.group(2) for m in lines if m]
    assert names == [
        "model",
        "synthesize",
        "mix",
        "finetune",
        "pad",
        "quantize",
        "infer",
        "score",
        "report",
    ]
    # Readable in an 80-column log: lines wrap at spaces, and a word (a path) is never split.
    for ln in out.splitlines()[1:]:
        assert len(ln) <= 80 or " " not in ln.strip(), ln
    assert "data/amazon_m2/products_train.jsonl" in out


def test_registry_files_a_stage_reads_enter_its_key(tmp_path: Path) -> None:
    """Editing a prompt variant re-keys infer (not upstream); editing the synthesis
    catalogue re-keys synthesize and mix (not the model)."""
    import shutil

    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    # The tiny model's tokenizer corpus defaults to include experiments/prompts: keep it out.
    loaded = load_spec(TINY, ["model.tiny.corpus=[experiments/data]"])
    before = {st.name: st.key for st in build_plan(loaded, tmp_path).stages}

    variant = tmp_path / "experiments" / "prompts" / f"{loaded.spec.prompts.variant}.yaml"
    variant.write_text(variant.read_text() + "\n# edited\n")
    after = {st.name: st.key for st in build_plan(loaded, tmp_path).stages}
    changed = {n for n in before if before[n] != after[n]}
    assert {"infer", "score", "report"} <= changed
    assert not changed & {"model", "synthesize", "mix", "finetune", "pad", "quantize"}

    task = next((tmp_path / "experiments" / "prompts" / "synth").glob("task*.md"))
    task.write_text(task.read_text() + "\n")
    again = {st.name: st.key for st in build_plan(loaded, tmp_path).stages}
    changed = {n for n in after if after[n] != again[n]}
    assert {"synthesize", "mix", "finetune", "infer"} <= changed
    assert "model" not in changed


def test_a_runs_root_of_the_previous_contract_is_not_reused_and_plan_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stage dirs and history written under contract v1 (keys without code or environments)
    are not taken for results of the new keys, and the plan names the reason."""
    import json

    from harness.cli import main

    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(tmp_path))
    old = tmp_path / "stages" / "model" / "0123456789abcdef0123"
    old.mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"stage": "model", "key": old.name}))
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "tiny_cpu.json").write_text(
        json.dumps({"synthesize": {"slice": {}, "files": {}, "version": "1"}})
    )
    assert main(["plan", "--json", str(TINY)]) == 0
    stages = {s["stage"]: s for s in json.loads(capsys.readouterr().out)["stages"]}
    for name in ("model", "synthesize"):
        assert stages[name]["status"] == "will run"
        assert [r["kind"] for r in stages[name]["reasons"]] == ["earlier version"], name
        assert "not reused" in stages[name]["reasons"][0]["detail"]
    assert [r["kind"] for r in stages["mix"]["reasons"]] == ["no previous run"]
    assert main(["plan", str(TINY)]) == 0
    assert "earlier version: results of an earlier harness version" in capsys.readouterr().out
