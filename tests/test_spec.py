"""Spec loading: strict validation with one message listing every problem, composition,
interpolation, overrides, and the generated spec reference in README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import is_sweep_file, spec_files
from harness.cli import main as cli_main
from harness.errors import SpecError
from harness.spec import load_spec
from harness.spec.docs import generated_sections, section_markers
from tests.support.paths import REPO
from tests.support.paths import TINY_CPU as TINY


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_every_experiment_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["validate", str(REPO / "experiments")]) == 0
    out = capsys.readouterr().out
    files = spec_files([str(REPO / "experiments")])
    n = len(files)
    sweeps = sum(1 for f in files if is_sweep_file(f))
    assert n >= 6 and sweeps >= 3
    assert f"{n}/{n} valid ({n - sweeps} specs, {sweeps} sweeps)" in out


def test_typo_names_key_and_suggests(tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", f"base: {TINY}\nfinetune:\n  lora:\n    rnak: 16\n")
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    msg = str(e.value)
    assert "finetune.lora.rnak" in msg
    assert "did you mean `finetune.lora.rank`" in msg
    assert f"{spec}:4" in msg


def test_several_problems_in_one_message(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        "s.yaml",
        f"base: {TINY}\nstages: [model, infer, scor]\nfinetune:\n  max_steps: lots\n"
        "infer:\n  tensor_paralel_size: 2\n",
    )
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    problems = e.value.problems
    assert len(problems) == 3
    text = "\n".join(problems)
    assert "finetune.max_steps" in text and "'lots'" in text
    assert "did you mean `infer.tensor_parallel_size`" in text
    assert "unknown stage `scor`" in text and "did you mean `score`" in text


def test_duplicate_key_names_file_and_line(tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", "name: a\nmodel:\n  source: tiny\nname: b\n")
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    assert f"{spec}:4" in str(e.value) and "duplicate key" in str(e.value)


def test_listed_stage_needs_its_section(tmp_path: Path) -> None:
    spec = write(
        tmp_path, "s.yaml", "name: a\nstages: [model, pad]\nmodel: {source: tiny, tiny: {}}\n"
    )
    with pytest.raises(SpecError, match="section `pad` is missing"):
        load_spec(spec)


def test_composition_interpolation_and_overrides(tmp_path: Path) -> None:
    base = write(
        tmp_path,
        "base.yaml",
        "name: base\nmodel: {source: tiny, tiny: {seed: 3}}\n"
        "decoding:\n  generation: {max_tokens: '${model.tiny.seed}'}\n",
    )
    child = write(tmp_path, "child.yaml", f"base: {base.name}\nname: child\n")
    loaded = load_spec(child, ["decoding.multiple-choice.temperature=0.5", "model.tiny.seed=7"])
    spec = loaded.spec
    assert spec.name == "child"
    assert spec.decoding.for_task("multiple-choice").temperature == 0.5
    assert spec.decoding.generation.max_tokens == 7  # interpolation sees the override
    assert loaded.files == (base.resolve(), child.resolve())


def test_override_typo_is_reported_as_override() -> None:
    with pytest.raises(SpecError) as e:
        load_spec(TINY, ["decoding.multiple-choice.temprature=1"])
    assert "command-line override" in str(e.value)
    assert "did you mean `decoding.multiple-choice.temperature`" in str(e.value)


def test_bad_interpolation(tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", "name: ${nope}\nmodel: {source: tiny, tiny: {}}\n")
    with pytest.raises(SpecError, match="interpolation failed"):
        load_spec(spec)


def test_cli_exit_2_without_traceback(tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", f"base: {TINY}\nfinetune:\n  lora:\n    rnak: 16\n")
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", str(spec)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "finetune.lora.rnak" in proc.stderr and "rank" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_spec_is_frozen() -> None:
    spec = load_spec(TINY).spec
    with pytest.raises(Exception, match="frozen"):
        spec.infer.tensor_parallel_size = 3  # type: ignore[misc]


def test_readme_generated_sections_are_current() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, body in generated_sections().items():
        start_marker, end_marker = section_markers(name)
        start = readme.index(start_marker) + len(start_marker)
        end = readme.index(end_marker)
        assert readme[start:end].strip() == body.strip(), (
            f"README section {name} is stale: regenerate it with `harness docs --readme README.md`"
        )


def test_partial_decoding_section_keeps_task_cap(tmp_path: Path) -> None:
    spec = load_spec(
        TINY, ["decoding.generation.temperature=0.3", "decoding.ranking.top_p=0.9"]
    ).spec
    assert spec.decoding.generation.max_tokens == 50
    assert spec.decoding.ranking.max_tokens == 9
    assert spec.decoding.for_task("multiple-choice").max_tokens == 1


def test_tensor_parallel_that_cannot_shard_fails_validation_with_pad_target() -> None:
    # 320 = 64 x 5: at TP 2 with AWQ group 64 each down_proj shard holds 160 columns.
    with pytest.raises(SpecError) as e:
        load_spec(TINY, ["stages=[model,quantize,infer]"])
    msg = str(e.value)
    assert "infer.tensor_parallel_size" in msg and "384" in msg
    # With the pad stage (auto target) the same spec is valid.
    assert (
        load_spec(TINY, ["stages=[model,pad,quantize,infer]"]).spec.infer.tensor_parallel_size == 2
    )
    with pytest.raises(SpecError, match=r"num_key_value_heads|KV heads|key_value"):
        load_spec(TINY, ["infer.tensor_parallel_size=3"])


def test_reference_shows_the_defaults_a_spec_gets(tmp_path: Path) -> None:
    """Every default the reference shows is the value a spec that leaves the key out gets
    (the decoding caps differ per task type; a section's own default sets them)."""
    from harness.spec.docs import spec_reference

    spec = write(tmp_path, "s.yaml", "name: a\nmodel: {source: tiny, tiny: {}}\n")
    dumped = load_spec(spec).spec.model_dump(mode="python", by_alias=True)
    checked = 0
    for line in spec_reference().splitlines()[2:]:
        key, _, default = (c.strip() for c in line.split("|")[1:4])
        key = key.strip("`")
        if "[]" in key or not default.startswith("`"):
            continue
        value, found = dumped, True
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                found = False
                break
            value = value[part]
        if found and not isinstance(value, dict):
            assert default == f"`{value!r}`", key
            checked += 1
    assert checked > 50
    loaded = load_spec(spec).spec.decoding
    caps = {t: loaded.for_task(t).max_tokens for t in ("multiple-choice", "generation")}
    assert caps == {"multiple-choice": 1, "generation": 50}
    assert f"| `decoding.generation.max_tokens` | int | `{caps['generation']}` |" in (
        spec_reference()
    )
