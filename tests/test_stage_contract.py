"""The stage contract: declared code dependencies are complete, the import layering holds,
stage order and sections derive from the declarations, and a plugin stage needs one module."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.codehash import (
    CONTRACT_MODULES,
    PACKAGE_ROOTS,
    imported_modules,
    module_files,
    module_name,
    normalized_source,
    source_file,
)
from harness.stages.base import default_stages, stage_defs

REPO = Path(__file__).resolve().parents[1]
LIBRARY = (
    "harness/data",
    "harness/training",
    "harness/inference",
    "harness/quant",
    "harness/shopbench",
)
CONTRACT_SIDE = (
    "harness.contract",
    "harness.stages",
    "harness.plan",
    "harness.run",
    "harness.stage_main",
)


def _covered(module: str, declared: tuple[str, ...]) -> bool:
    return any(module == d or module.startswith(d + ".") for d in declared)


def _exempt(module: str) -> bool:
    return module in PACKAGE_ROOTS or any(
        module == m or module.startswith(m + ".") for m in CONTRACT_MODULES
    )


@pytest.mark.parametrize("name", list(stage_defs()))
def test_declared_code_covers_every_project_module_a_stage_imports(name: str) -> None:
    """The transitive closure of project imports from a stage's module and from every module
    of its declared code (whose files its key digests, whether the stage imports them or runs
    them as a child process or a lazily registered engine), minus the contract's own
    modules, lies inside its declared code dependencies."""
    d = stage_defs()[name]
    declared = d.code_modules
    digested = [module_name(f) for m in declared for f in module_files(m) if REPO in f.parents]
    todo, seen, missing = [d.module, *digested], set(), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        f = source_file(mod)
        if f is None:
            continue
        for imp in imported_modules(f):
            if _exempt(imp) or imp in seen or _trivial_package(imp):
                continue
            if not _covered(imp, declared):
                missing.add(imp)
            todo.append(imp)
    assert not missing, f"stage `{name}` imports undeclared code: {sorted(missing)}"


def _trivial_package(module: str) -> bool:
    """A package whose ``__init__`` holds only its docstring (importing it runs no code)."""
    f = source_file(module)
    return (
        f is not None
        and f.name == "__init__.py"
        and normalized_source(f.read_text()).strip() in {"", "pass"}
    )


def _imports_of(folder: str) -> dict[str, set[str]]:
    return {
        p.relative_to(REPO).as_posix(): imported_modules(p)
        for p in sorted((REPO / folder).rglob("*.py"))
    }


@pytest.mark.parametrize("folder", LIBRARY)
def test_library_packages_do_not_import_the_stage_contract(folder: str) -> None:
    bad = {
        f: sorted(m for m in mods if _covered(m, CONTRACT_SIDE))
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
    for f in ("harness/contract.py", "harness/tracking.py", "harness/artifacts.py"):
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
from harness.contract import StageContext, StageResult
from harness.stages.base import stage


@stage(name="count_rows", reads=("eval.data",), files=("eval.data",), inputs={"preds": ("infer",)})
def count_rows(ctx: StageContext) -> StageResult:
    n = len((ctx.inputs["preds"] / "predictions.jsonl").read_text().splitlines())
    return StageResult(metrics={"rows": float(n)})
"""


def _plan_names(env: dict[str, str], cwd: Path, *extra: str) -> str:
    code = (
        "from harness.plan import build_plan\n"
        "from harness.spec import load_spec\n"
        f"p = build_plan(load_spec({str(REPO / 'experiments' / 'tiny_cpu.yaml')!r}, {list(extra)!r}), strict=False)\n"
        "print(','.join(s.name for s in p.stages))\n"
        "print(p.by_name('count_rows').inputs)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_plugin_stage_is_one_module_via_the_variable(tmp_path: Path) -> None:
    import os

    (tmp_path / "rowcount_plugin.py").write_text(textwrap.dedent(PLUGIN))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HARNESS_STAGE_PLUGINS": "rowcount_plugin"}
    out = _plan_names(env, tmp_path, "stages=[model,infer,count_rows]")
    assert out.splitlines() == ["model,infer,count_rows", "{'preds': 'infer'}"]


def test_plugin_stage_is_one_module_via_an_entry_point(tmp_path: Path) -> None:
    """An installed distribution (a dist-info on the path) naming the module in the
    ``harness.stages`` group adds the stage; nothing in the harness is edited."""
    import os

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
