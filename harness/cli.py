"""``harness`` command line: validate, plan, run, stages, env, docs, and the commands of
:data:`COMMANDS` (score, pad, sweep, data, plus any installed under the ``harness.commands``
entry-point group)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from harness.errors import USER_ERRORS, HarnessError, StageError
from harness.registry import Registry, import_target

console = Console(stderr=True)
out = Console()


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help and the module (``add_arguments``, ``main``) or the
    two functions that implement it."""

    help: str
    target: str | tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]

    def functions(self) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]:
        """``(add_arguments, main)``, importing the module on first use."""
        if isinstance(self.target, tuple):
            return self.target
        mod = import_target(self.target)
        return mod.add_arguments, mod.main


COMMANDS: Registry[Command] = Registry("command", entry_points="harness.commands")


def command(
    name: str,
    help_: str,
    arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None,
) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register a built-in command; ``arguments`` adds its options to its parser."""

    def deco(fn: Callable[..., int]) -> Callable[..., int]:
        COMMANDS.add(name, Command(help_, (arguments, fn)))
        return fn

    return deco


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="experiment spec YAML")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides")


def spec_files(paths: list[str]) -> list[Path]:
    """Spec files named or found recursively under directories (prompt sets excluded)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*.yaml") if "prompts" not in f.relative_to(p).parts)
        else:
            found.append(p)
    return found


def is_sweep_file(path: Path) -> bool:
    """Sweep files live under a ``sweeps`` directory."""
    return "sweeps" in path.parts


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="key=value")


@command("validate", "validate specs (files or directories, recursively)", _validate_arguments)
def cmd_validate(args: argparse.Namespace) -> int:
    from harness.spec import load_spec

    files = spec_files(args.paths)
    if not files:
        raise HarnessError(f"no spec files found under {' '.join(args.paths)}")
    problems: list[str] = []
    for f in files:
        try:
            if is_sweep_file(f):
                from harness.sweep import load_sweep

                load_sweep(f)
            else:
                load_spec(f, args.overrides)
            out.print(f"[green]ok[/]    {f}", soft_wrap=True)
        except HarnessError as e:
            out.print(f"[red]error[/] {f}", soft_wrap=True)
            problems.append(str(e))
    out.print(f"{len(files) - len(problems)}/{len(files)} specs valid")
    if problems:
        raise HarnessError("\n".join(problems))
    return 0


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    _spec_args(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def plan_rows(plan: Any) -> list[dict[str, Any]]:
    """The plan as data: per stage its environments, inputs, key, status and reasons."""
    from harness.plan import load_history, reasons

    why = reasons(plan, load_history(plan))
    rows = []
    for st in plan.stages:
        status = "cached" if plan.is_cached(st) else "will run"
        if st.missing:
            status = "missing input"
        rows.append(
            {
                "stage": st.name,
                "envs": list(st.envs),
                "inputs": dict(st.inputs),
                "key": st.key,
                "dir": str(plan.stage_dir(st)),
                "status": status,
                "reasons": why[st.name]
                if not st.missing
                else [{"kind": "missing input", "detail": m} for m in st.missing],
            }
        )
    return rows


def wrap_words(text: str, indent: int = 0, width: int = 80, hang: int = 2) -> str:
    """``text`` wrapped at spaces to ``width`` columns (continuation lines indented by
    ``hang`` more); a word (a path) is never split."""
    import textwrap

    pad = " " * indent
    return "\n".join(
        textwrap.wrap(
            text,
            width=width,
            initial_indent=pad,
            subsequent_indent=pad + " " * hang,
            break_long_words=False,
            break_on_hyphens=False,
        )
    )


@command("plan", "show the stage DAG, keys, and what will run and why", _plan_arguments)
def cmd_plan(args: argparse.Namespace) -> int:
    from harness.plan import build_plan
    from harness.spec import load_spec

    plan = build_plan(load_spec(args.spec, args.overrides), strict=False)
    rows = plan_rows(plan)
    if args.json:
        doc = {
            "spec": plan.loaded.spec.name,
            "root": str(plan.root),
            "platform": plan.platform,
            "env_mode": plan.env_mode,
            "stages": rows,
        }
        print(json.dumps(doc, indent=2))
        return 0
    # One line per stage and one per reason, never cut or wrapped by us: readable in an
    # 80-column log, and a terminal wraps long paths at its own edge.
    out.print(
        f"plan: {plan.loaded.spec.name}  platform: {plan.platform}"
        + ("  env: current interpreter" if plan.env_mode == "current" else "")
        + f"  stages: {plan.root / 'stages'}",
        soft_wrap=True,
        highlight=False,
    )
    colour = {"cached": "green", "will run": "yellow", "missing input": "red"}
    for r in rows:
        inputs = ", ".join(f"{role}<-{s}" for role, s in r["inputs"].items() if role != s)
        line = f"{r['status']:<14} {r['stage']} {r['key']} ({'+'.join(r['envs'])})"
        text = Text(wrap_words(line + (f" inputs: {inputs}" if inputs else ""), hang=8))
        text.stylize(colour[r["status"]], 0, len(r["status"]))
        text.stylize("bold", 15, 15 + len(r["stage"]))
        out.print(text, soft_wrap=True, highlight=False)
        for why in r["reasons"]:
            detail = f": {why['detail']}" if why["detail"] else ""
            out.print(
                wrap_words(f"- {why['kind']}{detail}", indent=6),
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
    return 0


def _run_arguments(p: argparse.ArgumentParser) -> None:
    _spec_args(p)
    p.add_argument("--force", action="append", metavar="STAGE", help="re-run this stage")


@command("run", "run a spec (only stages whose inputs changed)", _run_arguments)
def cmd_run(args: argparse.Namespace) -> int:
    from harness.plan import build_plan
    from harness.run import execute
    from harness.spec import load_spec

    plan = build_plan(load_spec(args.spec, args.overrides))
    summary = execute(plan, console=console, force=tuple(args.force or ()))
    say: dict[str, Any] = {"soft_wrap": True, "highlight": False, "markup": False}
    out.print(f"run manifest: {summary.run_dir / 'run.json'}", **say)
    if summary.wandb_dir:
        out.print(f"W&B run: {summary.wandb_dir}", **say)
        if "offline" in summary.wandb_dir.name:
            out.print(f"  sync it with: wandb sync {summary.wandb_dir}", **say)
    report = next((o for o in summary.outcomes if o.name == "report"), None)
    if report:
        out.print(f"report: {report.dir / 'report.md'}", **say)
    return 0


@command("stages", "list the stages the harness and its plugins declare")
def cmd_stages(args: argparse.Namespace) -> int:
    from harness.stages.base import stage_defs

    for name, d in stage_defs().items():
        inputs = ", ".join(
            f"{r}<-{'|'.join(c)}" for r, c in {**d.inputs, **d.optional_inputs}.items()
        )
        out.print(
            f"{name:<11} section: {d.section or '-'}  envs: {'+'.join(d.envs)}  "
            f"outputs: {', '.join(a.name for a in d.outputs) or '-'}"
            + (f"  inputs: {inputs}" if inputs else "")
            + ("  (sees every stage before it)" if d.upstream_all else ""),
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
    return 0


def _env_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "roles",
        nargs="*",
        help="roles whose environments to create (serve, train, quant, llmcompressor; with --check "
        "also core)",
    )
    p.add_argument("--platform", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="SPEC",
        help="create nothing: list the pins the current interpreter leaves unmet, per role "
        "and pin file (of the spec's stages on its platform, else of the roles named, else of "
        "every role), and whether `kernels` is Hugging Face's; exit 1 when any is unmet",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], help="with a spec: key=value"
    )
    p.add_argument("--json", action="store_true", help="with --check: print JSON")


def env_check(
    spec: str | None,
    roles: list[str],
    platform_setting: str,
    overrides: list[str] | None = None,
) -> tuple[str, dict[str, dict[str, list[str]]]]:
    """The unmet pins of environment roles in the current interpreter.

    Args:
        spec: A spec whose stages' roles and platform are checked (None: ``roles``).
        roles: Roles to check without a spec (empty: every role).
        platform_setting: ``auto``, ``cpu`` or ``gpu`` (without a spec).
        overrides: ``key=value`` overrides of the spec.

    Returns:
        ``(platform, {role: {pin file: ["name==wanted (have X | missing)", ...]}})``; every
        checked role appears, with an empty list when all its pins hold.
    """
    from harness import envs
    from harness.stages.base import ENVS

    if spec:
        from harness.plan import build_plan
        from harness.spec import load_spec

        plan = build_plan(load_spec(spec, overrides or []), strict=False)
        platform = plan.platform
        used = {r for st in plan.stages for r in st.envs}
        wanted = [r for r in ENVS if r in used]
    else:
        platform = envs.detect_platform(platform_setting)
        wanted = roles or list(ENVS)
    installed = envs.installed_versions()
    report: dict[str, dict[str, list[str]]] = {}
    for role in wanted:
        path = envs.env_file(role, platform)
        unmet = [str(p) for p in envs.check_pins(path, installed) if not p.ok]
        report[role] = {f"harness/envs/{path.name}": unmet}
    return platform, report


@command("env", "create stage environments, or check them (--check)", _env_arguments)
def cmd_env(args: argparse.Namespace) -> int:
    from harness import envs
    from harness.stages.base import ENVS

    # Every role can be checked; "core" (this interpreter) is never created.
    known = list(ENVS) if args.check is not None else [r for r in ENVS if r != "core"]
    if args.check in known:  # `env --check serve train`: roles, not a spec
        args.roles, args.check = [args.check, *args.roles], ""
    bad_roles = [r for r in args.roles if r not in known]
    if bad_roles:
        raise HarnessError(
            f"`harness env`: unknown role {bad_roles[0]!r} (choose from {', '.join(known)})"
        )
    if args.check is not None:
        platform, report = env_check(args.check or None, args.roles, args.platform, args.overrides)
        problems = [p for p in (envs.kernels_problem(),) if p]
        bad = sum(len(u) for files in report.values() for u in files.values()) + len(problems)
        if args.json:
            print(
                json.dumps({"platform": platform, "unmet": report, "problems": problems}, indent=2)
            )
            return 1 if bad else 0
        for problem in problems:
            out.print(f"kernels: {problem}", soft_wrap=True, highlight=False, markup=False)
        for role, files in report.items():
            for f, unmet in files.items():
                state = f"{len(unmet)} unmet" if unmet else "all pins met"
                out.print(f"{role} ({platform}): {f}: {state}", soft_wrap=True, highlight=False)
                for u in unmet:
                    out.print(f"  {u}", soft_wrap=True, highlight=False, markup=False)
        return 1 if bad else 0
    if not args.roles:
        raise HarnessError("`harness env`: name the roles to create (serve, train, quant)")
    platform = envs.detect_platform(args.platform)
    for role in args.roles:
        req = envs.env_file(role, platform)
        py = envs.ensure_env(req)
        out.print(f"{role} ({platform}): {req.name} -> {py}", soft_wrap=True)
    return 0


def _docs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--readme",
        metavar="PATH",
        help="rewrite the generated sections (spec reference, environment variables) of "
        "this file instead",
    )


@command("docs", "print the spec reference (Markdown)", _docs_arguments)
def cmd_docs(args: argparse.Namespace) -> int:
    from harness.spec.docs import spec_reference, splice_reference

    if args.readme is None:
        out.print(spec_reference(), markup=False, highlight=False, soft_wrap=True)
        return 0
    path = Path(args.readme)
    path.write_text(splice_reference(path.read_text(encoding="utf-8"), path), encoding="utf-8")
    out.print(f"updated the generated sections of {path}")
    return 0


COMMANDS.add(
    "score",
    Command("score predictions against ShopBench-format data", "harness.shopbench.score_cli"),
)
COMMANDS.add(
    "pad",
    Command(
        "pad a checkpoint's intermediate_size for tensor parallel AWQ", "shopbench_kernels.pad_cli"
    ),
)
COMMANDS.add("sweep", Command("run a W&B sweep file over a spec", "harness.sweep"))
COMMANDS.add(
    "data", Command("list, fetch and locate the named public datasets", "harness.data_cli")
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``harness``.

    Args:
        only: Import and add the options of this command alone (every command is still
            listed): ``harness score`` does not import the sweep or padding code. None: all.
    """
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        cmd = COMMANDS.get(name)
        p = sub.add_parser(name, help=cmd.help)
        if only is not None and name != only:
            continue
        add, main_fn = cmd.functions()
        add(p)
        p.set_defaults(func=main_fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point. User errors exit 2 with one message and no traceback; a failed stage 1."""
    words = sys.argv[1:] if argv is None else argv
    first = next((w for w in words if not w.startswith("-")), None)
    args = build_parser(first if first in COMMANDS else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
