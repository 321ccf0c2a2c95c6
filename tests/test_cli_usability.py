"""The command line as a user meets it: every user error is one ``error:`` line with exit
status 2 and no traceback; help, docs and messages tell the truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

TINY = REPO / "experiments" / "tiny_cpu.yaml"
EVAL_TINY = REPO / "experiments" / "data" / "eval_tiny.jsonl"


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``harness ARGS`` from the project root, output captured (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The error line of a command that failed as a user error, checked: exit 2, no
    traceback, one ``error:`` line holding every fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    return errors[0]


def test_score_output_option_naming_a_directory(tmp_path: Path) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"prediction": "0"}\n')
    for option in ("--out", "--rows"):
        proc = harness(
            "score", "--data", str(EVAL_TINY), "--predictions", str(preds), option, str(tmp_path)
        )
        user_error(proc, f"{option} {tmp_path}: is a directory")


def test_docs_readme_missing_file(tmp_path: Path) -> None:
    user_error(harness("docs", "--readme", str(tmp_path / "missing.md")), "file not found")


def cached_dataset(cache: Path, name: str, content: bytes) -> Path:
    """A data cache holding dataset ``name`` (one-file layout) with ``content`` as its file,
    recorded in a manifest as the fetcher writes it."""
    from harness.atomic import write_json
    from harness.public_data import get_dataset
    from harness.public_data.cache import MANIFEST

    entry = get_dataset(name)
    (f,) = entry.files
    ddir = cache / name
    ddir.mkdir(parents=True)
    (ddir / f.path).write_bytes(content)
    record = {"path": f.path, "sha256": f.sha256, "git_blob": f.git_blob}
    write_json(ddir / MANIFEST, {"name": name, "files": [record]})
    return ddir / f.path


def test_score_resolves_named_datasets(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rows = EVAL_TINY.read_bytes()
    cached_dataset(cache, "shopbench-dev", rows)
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"prediction": "0"}\n' * len(rows.splitlines()))
    out = tmp_path / "scores.json"
    args = ("score", "--data", "data://shopbench-dev", "--predictions", str(preds))
    proc = harness(*args, "--out", str(out), env={"HARNESS_DATA_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    proc = harness(*args, env={"HARNESS_DATA_DIR": str(tmp_path / "empty")})
    user_error(proc, "data://shopbench-dev", "fetch it with: harness data fetch shopbench-dev")


def test_compare_resolves_named_datasets_and_checks_its_output(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rows = EVAL_TINY.read_bytes()
    cached_dataset(cache, "shopbench-dev", rows)
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"prediction": "0"}\n' * len(rows.splitlines()))
    out = tmp_path / "cmp.json"
    args = ("compare", "--data", "data://shopbench-dev", "--predictions", str(preds))
    args = (*args, "--predictions", str(preds), "--resamples", "200")
    proc = harness(*args, "--out", str(out), env={"HARNESS_DATA_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["overall"]["delta"] == 0
    proc = harness(*args, env={"HARNESS_DATA_DIR": str(tmp_path / "empty")})
    user_error(proc, "data://shopbench-dev", "fetch it with: harness data fetch shopbench-dev")
    proc = harness(*args, "--out", str(tmp_path), env={"HARNESS_DATA_DIR": str(cache)})
    user_error(proc, "is a directory")


def test_data_path_takes_a_bare_name_and_refuses_anything_else(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = cached_dataset(cache, "shopbench-dev", b"{}\n")
    env = {"HARNESS_DATA_DIR": str(cache)}
    for ref in ("shopbench-dev", "data://shopbench-dev"):
        proc = harness("data", "path", ref, env=env)
        assert proc.returncode == 0 and proc.stdout.strip() == str(path), proc.stderr
    user_error(harness("data", "path", "/no/such/file", env=env), "not a dataset name")
    user_error(harness("data", "path", "shopbench-dv", env=env), "did you mean `shopbench-dev`")


def test_run_force_names_a_stage_of_the_plan() -> None:
    user_error(harness("run", str(TINY), "--force", "modle"), "did you mean `model`")
    proc = harness("run", str(TINY), "--force", "pad", "stages=[model]")
    user_error(proc, "--force pad", "not in the plan", "its stages: model")


def test_overrides_positional_or_set_for_every_spec_command(tmp_path: Path) -> None:
    bad = "eval.data=no/such.jsonl"
    for args in (
        ("plan", str(TINY), bad),
        ("plan", str(TINY), "--set", bad),
        ("plan", str(TINY), "--json", bad),
    ):
        proc = harness(*args)
        assert proc.returncode == 1, (args, proc.stderr)  # the override took: an input is missing
        assert "no/such.jsonl" in proc.stdout
    typo = "infer.tensor_paralel_size=2"
    for args in (("validate", str(TINY), typo), ("validate", "--set", typo, str(TINY))):
        user_error(harness(*args), "command-line override", "tensor_parallel_size")
    proc = harness("plan", str(TINY), "stages=[model]", "--set", "stages=[model,infer]")
    assert proc.returncode == 0, proc.stderr
    assert "`stages` is overridden twice" in proc.stderr and "last one wins" in proc.stderr
    assert " infer " in proc.stdout


def test_validate_recognises_a_sweep_by_content(tmp_path: Path) -> None:
    sweep = tmp_path / "decoding.yaml"  # not under a sweeps/ directory
    text = (REPO / "experiments" / "sweeps" / "decoding.yaml").read_text(encoding="utf-8")
    sweep.write_text(text.replace("spec: ../tiny_cpu.yaml", f"spec: {TINY}"), encoding="utf-8")
    proc = harness("validate", str(sweep), str(TINY))
    assert proc.returncode == 0, proc.stderr
    assert f"ok    {sweep} (sweep)" in proc.stdout and "2/2 valid (1 spec, 1 sweep)" in proc.stdout
    broken = tmp_path / "broken.yaml"  # a sweep without parameters is still a sweep
    broken.write_text(f"spec: {TINY}\nmethod: grid\n", encoding="utf-8")
    proc = harness("validate", str(broken))
    user_error(proc, "parameters")
    assert f"error {broken} (sweep)" in proc.stdout and "`model`" not in proc.stderr

    from harness.cli import SWEEP_KEYS
    from harness.spec import Spec

    assert not set(SWEEP_KEYS) & set(Spec.model_fields)  # no spec is taken for a sweep


def test_validate_checks_inputs_run_reports_them_all(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {"HARNESS_DATA_DIR": str(cache), "HARNESS_RUNS_ROOT": str(tmp_path / "runs")}
    user_error(
        harness("validate", str(TINY), "eval.data=data://shopbench-dv", env=env),
        "`eval.data`",
        "unknown",
        "shopbench-dev",
    )
    proc = harness("validate", str(TINY), "eval.data=data://shopbench-dev", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "warning: `eval.data`: data://shopbench-dev" in proc.stdout.replace("\n", " ")
    assert "harness data fetch shopbench-dev" in proc.stdout
    mmlu = REPO / "experiments" / "shopping_mmlu" / "tiny_cpu.yaml"
    proc = harness("validate", str(mmlu), "shopping_mmlu.files=[skill1_concpt]", env=env)
    user_error(proc, "`shopping_mmlu.files`", "`skill1_concpt`", "did you mean `skill1_concept`")
    # run: every missing input at once, before any stage runs
    proc = harness(
        "run", str(TINY), "data.sources.products=no/p.jsonl", "eval.data=no/e.jsonl", env=env
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "no/p.jsonl" in proc.stderr and "no/e.jsonl" in proc.stderr
    assert not (tmp_path / "runs" / "stages").exists()


def test_plan_marks_blocked_stages_and_exits_1() -> None:
    proc = harness("plan", str(TINY), "data.sources.reviews=no/r.jsonl")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    synth = next(ln for ln in lines if " synthesize " in ln)
    assert synth.startswith("missing input")
    for later in ("mix", "finetune", "infer", "score"):
        row = next(ln for ln in lines if f" {later} " in ln and not ln.startswith(" "))
        assert row.startswith("blocked (by synthesize)"), row
    proc = harness("plan", "--help")
    assert "exit status: 0" in proc.stdout.replace("\n", " ")


def test_env_check_role_typo_platform_and_stray_overrides() -> None:
    user_error(harness("env", "--check", "serv"), "unknown role 'serv'", "did you mean `serve`")
    gpu_spec = str(REPO / "experiments" / "gpu_small.yaml")
    proc = harness("env", "--check", gpu_spec, "--platform", "cpu", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    import json

    assert json.loads(proc.stdout)["platform"] == "cpu"
    user_error(harness("env", "--check", "--set", "run.platform=cpu"), "need a spec")
    user_error(harness("env", "serve", "run.platform=cpu"), "need a spec")


MINI = REPO / "experiments" / "data" / "shopping_mmlu_mini"


def predictions_for(path: Path, out: Path) -> Path:
    """A predictions file with one answer per row of a Shopping MMLU file."""
    from harness.shopbench.mmlu import load_task_file

    out.write_text('{"prediction": "1"}\n' * len(load_task_file(path)), encoding="utf-8")
    return out


def test_score_of_shopping_mmlu_csv_with_the_default_parser_names_the_profile(
    tmp_path: Path,
) -> None:
    data = MINI / "multiple_choice" / "product_category_selection_dataset.csv"
    preds = predictions_for(data, tmp_path / "p.jsonl")
    proc = harness("score", "--data", str(data), "--predictions", str(preds))
    user_error(proc, "Shopping MMLU", "--parser shopping-mmlu-task")


def test_score_missing_sentence_model_names_the_cli_options(tmp_path: Path) -> None:
    data = MINI / "skills" / "skill4_multilingual.json"
    preds = predictions_for(data, tmp_path / "p.jsonl")
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    args = ("score", "--data", str(data), "--predictions", str(preds))
    proc = harness(*args, "--parser", "shopping-mmlu-skill", env=env)
    line = user_error(proc, "--sentence-model paraphrase-multilingual-MiniLM-L12-v2=PATH")
    assert "--missing-sentence-model nan" in line and "eval.sentence_models" not in line
    out = tmp_path / "scores.json"
    proc = harness(
        *args, "--parser", "shopping-mmlu-skill", "--missing-sentence-model", "nan",
        "--out", str(out), env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "sentence model not available, its tasks score NaN" in proc.stdout.replace("\n", " ")
    import json

    scores = json.loads(out.read_text(encoding="utf-8"))
    assert any(t["score"] != t["score"] for t in scores["tasks"].values())  # NaN
    assert any(t["score"] == t["score"] for t in scores["tasks"].values())  # not all


def test_partial_shopping_mmlu_output_labels_both_scales(tmp_path: Path) -> None:
    skill = MINI / "skills" / "skill3_behavior.json"
    preds = tmp_path / "preds"
    preds.mkdir()
    predictions_for(skill, preds / "skill3_behavior.jsonl")
    proc = harness(
        "score", "--data", str(MINI), "--predictions", str(preds),
        "--parser", "shopping-mmlu-skill",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "score (0-1)" in proc.stdout and "x 100, 0-100" in proc.stdout


def test_empty_stage_list_is_an_error() -> None:
    for command in ("validate", "plan"):
        user_error(harness(command, str(TINY), "stages=[]"), "`stages`", "plans nothing")


def test_spec_messages_name_where_and_say_null(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: a\nbase: missing.yaml\n", encoding="utf-8")
    user_error(harness("validate", str(spec)), f"{spec}:2: `base`: file not found: missing.yaml")
    spec.write_text(f"base: {TINY}\ninfer:\n", encoding="utf-8")
    line = harness("validate", str(spec)).stderr
    assert f"{spec}:2: `infer`:" in line and "(got null)" in line and "NoneType" not in line
    spec.write_text(
        f"base: {TINY}\nreport:\n  baselines:\n    x: ['a=${{oc.env:NO_SUCH_VAR_26}}']\n",
        encoding="utf-8",
    )
    err = harness("validate", str(spec)).stderr
    assert f"{spec}:4: `report.baselines.x[0]`: interpolation failed:" in err, err
    assert "KeyError" not in err and "NO_SUCH_VAR_26" in err
    err = harness("validate", str(TINY), "description=${oc.env:NO_SUCH_VAR_26}").stderr
    assert "command-line override: `description`: interpolation failed" in err, err
    spec.write_text(f"base: {TINY}\nfinetune:\n  lora:\n    rnak: 16\n", encoding="utf-8")
    user_error(harness("validate", str(spec)), "did you mean `finetune.lora.rank`")


def test_prediction_of_the_wrong_type_says_null(tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    n = len(EVAL_TINY.read_text(encoding="utf-8").splitlines())
    preds.write_text('{"prediction": null}\n' * n, encoding="utf-8")
    proc = harness("score", "--data", str(EVAL_TINY), "--predictions", str(preds))
    line = user_error(proc, "got null")
    assert "NoneType" not in line


def test_offline_fetch_names_each_failing_url_once(tmp_path: Path) -> None:
    from tests.support.vllm_server import free_port

    url = f"http://127.0.0.1:{free_port()}/development.json"
    proc = harness(
        "data",
        "fetch",
        "shopbench-dev",
        "--url",
        url,
        "--data-dir",
        str(tmp_path),
        "--timeout",
        "2",
    )
    user_error(proc, "could not download")
    assert proc.stderr.count(url) == 1 and "attempts)" in proc.stderr, proc.stderr


def test_help_is_plain_and_complete_and_version_is_the_distribution() -> None:
    import argparse
    from importlib.metadata import version

    from harness.cli import build_parser

    top = harness("--help")
    assert top.returncode == 0 and ":data:" not in top.stdout and "``" not in top.stdout
    undocumented = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, p in action.choices.items():
                    walk(p, f"{name} {sub}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                undocumented.append(f"{name} {action.dest}")

    walk(build_parser(), "harness")
    assert undocumented == []
    proc = harness("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"harness {version('shopbench-harness')}"


def test_non_terminal_output_fits_80_columns_without_bars(tmp_path: Path) -> None:
    import json

    rows = [json.loads(ln) for ln in EVAL_TINY.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        r["task_name"] = f"product_category_and_attribute_{r['task_name']}"
    data = tmp_path / "long_names.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"prediction": "0"}\n' * len(rows), encoding="utf-8")
    score = harness("score", "--data", str(data), "--predictions", str(preds))
    assert score.returncode == 0, score.stderr
    assert "…" not in score.stdout  # names are folded, never cut
    for proc in (score, harness("stages"), harness("validate", str(REPO / "experiments"))):
        assert proc.returncode == 0, proc.stderr
        long = [ln for ln in proc.stdout.splitlines() if len(ln) > 80 and " " in ln.strip()]
        assert long == [], long
    code = (
        "from harness.cli import main\n"
        "main(['stages'])\n"
        "from tqdm import tqdm\n"
        "from huggingface_hub.utils import are_progress_bars_disabled\n"
        "print('bars off:', tqdm(range(2)).disable, are_progress_bars_disabled())\n"
    )
    from harness.cli import PROGRESS_OFF

    env = {k: v for k, v in os.environ.items() if k not in PROGRESS_OFF}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert "bars off: True True" in proc.stdout, proc.stderr


def test_readme_and_noxfile_name_every_command_stage_and_session() -> None:
    import ast
    import re

    from harness.cli import COMMANDS
    from harness.core.stage import stage_defs

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert [c for c in COMMANDS if f"harness {c}" not in readme] == []
    how = readme.split("## How a run works", 1)[1].split("\n## ", 1)[0]
    built_in = [n for n, d in stage_defs().items() if d.module.startswith("harness.stages.")]
    assert len(built_in) >= 11
    assert [n for n in built_in if not re.search(rf"\b{n}\b", how)] == []
    tree = ast.parse((REPO / "noxfile.py").read_text(encoding="utf-8"))
    sessions = []
    for fn in tree.body:
        for deco in getattr(fn, "decorator_list", []):
            if isinstance(deco, ast.Call) and ast.unparse(deco.func) == "nox.session":
                names = [k.value.value for k in deco.keywords if k.arg == "name"]
                sessions.append(names[0] if names else fn.name)  # type: ignore[attr-defined]
    assert len(sessions) >= 10
    listed = (ast.get_docstring(tree) or "").splitlines()[0]
    assert [s for s in sessions if not re.search(rf"\b{s}\b(?!-)", listed)] == []
    assert [s for s in sessions if f"nox -s {s}" not in readme] == []


def test_caches_follow_xdg_cache_home_and_harness_variables_win(tmp_path: Path) -> None:
    code = (
        "from harness.public_data import data_dir\n"
        "from harness.core.envs import env_root\n"
        "from harness.shopbench.embed_cache import configured_root\n"
        "print(data_dir(), env_root(), configured_root(), sep='\\n')\n"
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HARNESS_DATA_DIR", "HARNESS_ENV_ROOT", "HARNESS_EMBEDDING_CACHE")
    }

    def defaults(**env: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={**base, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout.split()

    xdg = tmp_path / "xdg"
    root = xdg / "shopbench-harness"
    assert defaults(XDG_CACHE_HOME=str(xdg)) == [
        str(root / "data"),
        str(root / "envs"),
        str(root / "embeddings"),
    ]
    home = tmp_path / "home"
    fallback = home / ".cache" / "shopbench-harness"
    for unset in ("", "relative/dir"):  # unset, or not absolute: ignored, as XDG says
        assert defaults(XDG_CACHE_HOME=unset, HOME=str(home)) == [
            str(fallback / "data"),
            str(fallback / "envs"),
            str(fallback / "embeddings"),
        ]
    mine = [str(tmp_path / n) for n in ("d", "e", "m")]
    assert (
        defaults(
            XDG_CACHE_HOME=str(xdg),
            HARNESS_DATA_DIR=mine[0],
            HARNESS_ENV_ROOT=mine[1],
            HARNESS_EMBEDDING_CACHE=mine[2],
        )
        == mine
    )
    proc = harness("data", "list", env={**base, "XDG_CACHE_HOME": str(xdg)})
    assert proc.returncode == 0 and f"cache: {root / 'data'}\n" in proc.stdout
