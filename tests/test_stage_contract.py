"""The stage contract: code dependencies are derived from imports (and re-key exactly the
stages that depend on a change), the import layering holds, stage order and sections derive
from the declarations, and a plugin stage needs one module."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from harness.core.codehash import code_closure, contract_module, imported_modules
from harness.core.stage import VLLM_PLUGINS, default_stages, stage_defs
from tests.support.clone import plan_of_copy, project_copy
from tests.support.paths import REPO

LIBRARY = (
    "harness/data",
    "harness/training",
    "harness/inference",
    "harness/quant",
    "harness/shopbench",
)


def _covered(module: str, declared: tuple[str, ...]) -> bool:
    return any(module == d or module.startswith(d + ".") for d in declared)


def test_the_closure_follows_lazy_imports_string_targets_and_packages() -> None:
    """What a stage runs but never imports at module level is in its code: engines registered
    as ``module:attr`` strings, a ``python -m`` child, imports inside functions, the
    ``__init__`` of a package whose module it imports; the contract's side is not."""
    defs = stage_defs()
    infer = set(defs["infer"].code_modules)
    assert {
        "harness.inference.engines.vllm_engine",  # a lazily registered engine
        "harness.inference.engines.hf_engine",
        "harness.inference.runner",  # imported inside the stage function
        "harness.inference.awq_dense",
        *VLLM_PLUGINS,  # declared: vLLM loads it through an entry point
    } <= infer
    assert "harness.inference.awq_dense" in defs["mmlu_infer"].code_modules
    assert "harness.shopbench.mmlu" in defs["mmlu_infer"].code_modules  # a package's __init__
    assert "harness.quant.llmcompressor_backend" in defs["quantize"].code_modules
    for d in defs.values():
        assert not [m for m in d.code_modules if contract_module(m)], d.name
        assert d.module in d.code_modules
        assert d.code_modules == code_closure((d.module, *d.code))
    # Only what a stage reaches: the scorer does not carry the serving code, nor the reverse.
    assert not [m for m in defs["score"].code_modules if m.startswith("harness.inference")]
    assert "harness.shopbench.parsers" not in infer
    # A reader of another stage's result model carries that module, not the stage's work.
    report = defs["report"].code_modules
    assert "harness.stages.infer" in report and "harness.inference.runner" not in report


def test_vllm_plugins_are_the_entry_points_pyproject_declares() -> None:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    eps = doc["project"]["entry-points"]["vllm.general_plugins"].values()
    assert {e.partition(":")[0] for e in eps} == set(VLLM_PLUGINS)


def _keys(clone: Path, runs: Path) -> dict[str, str]:
    return {name: s["key"] for name, s in plan_of_copy(clone, runs).items()}


def test_a_new_module_the_runner_imports_rekeys_infer_and_its_dependants_only(
    tmp_path: Path,
) -> None:
    """In a throw-away copy: a new module imported by the inference runner re-keys infer
    (and score and report after it, the baseline's too) and nothing else, with no list
    edited; then an edit of the new module alone re-keys the same stages; a comment-only edit
    keeps every key."""
    clone = project_copy(tmp_path)
    runs = tmp_path / "runs"
    base = _keys(clone, runs)
    runner = clone / "harness" / "inference" / "runner.py"
    helper = clone / "harness" / "inference" / "row_order.py"
    helper.write_text('"""Row order."""\n\n\ndef first(rows):\n    return rows[0]\n')
    importing = "from __future__ import annotations\n\nfrom harness.inference import row_order\n"
    runner.write_text(
        runner.read_text().replace("from __future__ import annotations\n", importing, 1)
    )
    imported = _keys(clone, runs)
    dependants = {"infer", "score", "report", "untuned/infer", "untuned/score"}
    changed = {n for n in base if imported[n] != base[n]}
    assert changed == dependants & set(base), changed

    helper.write_text(helper.read_text().replace("rows[0]", "rows[-1]"))
    edited = _keys(clone, runs)
    assert {n for n in base if edited[n] != imported[n]} == changed

    helper.write_text(
        helper.read_text().replace('"""Row order."""', '"""Row order, at last."""\n# a note')
    )
    assert _keys(clone, runs) == edited


def _imports_of(folder: str) -> dict[str, set[str]]:
    return {
        p.relative_to(REPO).as_posix(): imported_modules(p)
        for p in sorted((REPO / folder).rglob("*.py"))
    }


@pytest.mark.parametrize("folder", LIBRARY)
def test_library_packages_do_not_import_the_stage_contract(folder: str) -> None:
    bad = {
        f: sorted(m for m in mods if _covered(m, ("harness.core", "harness.stages")))
        for f, mods in _imports_of(folder).items()
    }
    assert not {f: m for f, m in bad.items() if m}


def test_kernels_import_nothing_from_harness() -> None:
    bad = {
        f: sorted(m for m in mods if m.split(".")[0] == "harness")
        for f, mods in _imports_of("kernels/shopbench_kernels").items()
    }
    assert not {f: m for f, m in bad.items() if m}


def test_contract_module_and_tracking_do_not_import_stage_bodies() -> None:
    for f in ("harness/core/contract.py", "harness/tracking.py", "harness/core/artifacts.py"):
        mods = imported_modules(REPO / f)
        assert not [m for m in mods if m.startswith("harness.stages")], f


def test_order_sections_and_defaults_derive_from_declarations() -> None:
    defs = stage_defs()
    order = list(defs)
    for n, d in defs.items():
        for cands in (*d.inputs.values(), *d.optional_inputs.values()):
            for c in cands:
                if c in defs:
                    assert order.index(c) < order.index(n), (c, n)
    assert order[-1] == "report" and defs["report"].upstream_all
    every = default_stages(lambda section: True)
    assert every == [n for n in order if defs[n].section is not None]
    assert default_stages(lambda section: section in {"model", "eval"}) == [
        n for n in order if set(defs[n].sections) & {"model", "eval"}
    ]
    # The report follows either evaluation section; the Shopping MMLU stages only their own.
    mmlu_only = default_stages(lambda section: section in {"model", "shopping_mmlu"})
    assert "report" in mmlu_only and "infer" not in mmlu_only and "mmlu_score" in mmlu_only


PLUGIN = """
from harness.core.contract import SpecSlice, StageContext, StageResult, read
from harness.core.stage import stage


class Rows(SpecSlice):
    data: str = read("eval.data")


@stage(name="count_rows", inputs={"preds": ("infer",)})
def count_rows(ctx: StageContext, spec: Rows) -> StageResult:
    n = len((ctx.inputs["preds"] / "predictions.jsonl").read_text().splitlines())
    return StageResult(metrics={"rows": float(n)})
"""


def _plan_names(env: dict[str, str], cwd: Path, *extra: str) -> str:
    code = (
        "from harness.core.plan import build_plan\n"
        "from harness.spec import load_spec\n"
        f"p = build_plan(load_spec({str(REPO / 'experiments' / 'tiny_cpu.yaml')!r}, {list(extra)!r}), strict=False)\n"
        "print(','.join(s.name for s in p.stages))\n"
        "print(p.by_name('count_rows').inputs)\n"
        "print(sorted(p.by_name('count_rows').files))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_plugin_stage_is_one_module_via_the_variable(tmp_path: Path) -> None:

    (tmp_path / "rowcount_plugin.py").write_text(textwrap.dedent(PLUGIN))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HARNESS_STAGE_PLUGINS": "rowcount_plugin"}
    out = _plan_names(env, tmp_path, "stages=[model,infer,count_rows]")
    assert out.splitlines() == ["model,infer,count_rows", "{'preds': 'infer'}", "['eval.data']"]


def test_a_plugin_reading_a_misspelled_spec_path_fails_at_plan(tmp_path: Path) -> None:
    """``harness plan`` exits 2 naming the stage, the path and the nearest valid path; the
    file the plugin's key would have fingerprinted (``eval.data``, an input file) is derived
    from the schema for the well-spelled plugin."""

    typo = textwrap.dedent(PLUGIN).replace('read("eval.data")', 'read("eval.dta")')
    (tmp_path / "typo_plugin.py").write_text(typo)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HARNESS_STAGE_PLUGINS": "typo_plugin"}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "plan", str(REPO / "experiments" / "tiny_cpu.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr + proc.stdout
    assert "stage `count_rows`" in err and "`eval.dta`" in err, err
    assert "did you mean `eval.data`" in err, err
    assert "Traceback" not in err


def test_input_files_below_a_list_of_sections_are_fingerprinted(tmp_path: Path) -> None:
    """A plugin reading ``data.mix.sources`` (a list of sections) gets each source's
    ``path`` as an input file, fingerprinted from the read's value."""
    import os

    plugin = textwrap.dedent(PLUGIN).replace(
        'data: str = read("eval.data")', 'data: list[dict] = read("data.mix.sources")'
    )
    (tmp_path / "sources_plugin.py").write_text(plugin)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HARNESS_STAGE_PLUGINS": "sources_plugin"}
    code = (
        "from harness.core.plan import build_plan\n"
        "from harness.spec import load_spec\n"
        f"p = build_plan(load_spec({str(REPO / 'experiments' / 'tiny_cpu.yaml')!r}, "
        "['stages=[model,infer,count_rows]']), strict=False)\n"
        "fps = p.by_name('count_rows').files['data.mix.sources[*].path']\n"
        "print(len(fps), all(isinstance(f, str) and len(f) == 64 for f in fps if f))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    n, hashed = proc.stdout.split()
    assert int(n) >= 1 and hashed == "True", proc.stdout


def test_a_plugin_whose_slice_type_the_spec_does_not_match_fails_at_plan(tmp_path: Path) -> None:
    """A slice field typed ``int`` over a spec path holding a string: ``harness plan`` exits 2
    naming the spec file, the stage and the field, before anything runs."""

    wrong = textwrap.dedent(PLUGIN).replace("data: str = read(", "data: int = read(")
    (tmp_path / "wrong_plugin.py").write_text(wrong)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HARNESS_STAGE_PLUGINS": "wrong_plugin"}
    spec = REPO / "experiments" / "tiny_cpu.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "plan", str(spec), "stages=[model,infer,count_rows]"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    err = proc.stderr + proc.stdout
    assert proc.returncode == 2, err
    assert "tiny_cpu.yaml" in err and "stage `count_rows` cannot read its slice" in err, err
    assert "`eval.data`" in err and "Traceback" not in err, err


def test_plugin_stage_is_one_module_via_an_entry_point(tmp_path: Path) -> None:
    """An installed distribution (a dist-info on the path) naming the module in the
    ``harness.stages`` group adds the stage; nothing in the harness is edited."""

    (tmp_path / "rowcount_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "rowcount_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rowcount-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.stages]\ncount_rows = rowcount_plugin\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("HARNESS_STAGE_PLUGINS", None)
    out = _plan_names(env, tmp_path, "stages=[model,infer,count_rows]")
    assert out.splitlines()[0] == "model,infer,count_rows"


def test_unknown_stage_in_a_spec_lists_the_known_ones(tmp_path: Path) -> None:
    from harness.errors import SpecError
    from harness.spec import load_spec

    with pytest.raises(SpecError) as e:
        load_spec(REPO / "experiments" / "tiny_cpu.yaml", ["stages=[model,infr]"])
    assert "infr" in str(e.value) and "did you mean `infer`" in str(e.value)
