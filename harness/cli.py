"""``harness`` command line: validate, plan, run, stages, env, docs, and the commands of
:data:`COMMANDS` (score, compare, pad, sweep, data, view, plus any installed under the
``harness.commands``
entry-point group)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from harness.errors import USER_ERRORS, HarnessError, StageError
from harness.registry import Registry, did_you_mean, import_target

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


OVERRIDES_HELP = (
    "overrides of spec keys, dotted.key=value (after the spec, or with --set anywhere; "
    "the last value of a key wins)"
)


def _set_option(
    p: argparse.ArgumentParser, help_: str = "override a spec key (repeatable)"
) -> None:
    p.add_argument(
        "--set", dest="set", action="append", default=[], metavar="KEY=VALUE", help=help_
    )


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="experiment spec YAML")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    _set_option(p)


def is_override(word: str) -> bool:
    """A ``key=value`` word on the command line (a file or directory of that name is not)."""
    return "=" in word and not Path(word).exists()


def spec_overrides(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` overrides of a command: positional ones, then ``--set`` ones; a key
    given twice with different values is warned about (the last one wins)."""
    overrides = [*getattr(args, "overrides", []), *getattr(args, "set", [])]
    seen: dict[str, str] = {}
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.strip()
        if key in seen and seen[key] != value:
            console.print(
                f"warning: `{key}` is overridden twice ({key}={seen[key]}, then {o}): the "
                "last one wins",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        seen[key] = value
    return overrides


def spec_files(paths: list[str]) -> list[Path]:
    """Spec files named or found recursively under directories (prompt sets excluded)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*.yaml") if "prompts" not in f.relative_to(p).parts)
        else:
            found.append(p)
    return found


SWEEP_KEYS = ("spec", "parameters")
"""Top-level keys of a sweep file (a W&B sweep configuration plus the spec it varies) that no
spec has."""


def is_sweep_file(path: Path) -> bool:
    """A sweep file, wherever it lives: a mapping with ``spec:`` or ``parameters:`` (keys no
    spec has; a sweep lacking one is then reported as a sweep that lacks it)."""
    import yaml

    try:
        with path.open(encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(doc, dict) and any(k in doc for k in SWEEP_KEYS)


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="spec or sweep files, or directories searched recursively for *.yaml (a file "
        "with `spec:` or `parameters:` is a sweep); KEY=VALUE words override spec keys",
    )
    _set_option(p)


@command("validate", "validate specs and sweeps (files or directories)", _validate_arguments)
def cmd_validate(args: argparse.Namespace) -> int:
    from harness.core.plan import input_problems
    from harness.spec import load_spec

    words = list(args.paths)
    args.paths = [w for w in words if not is_override(w)]
    args.overrides = [w for w in words if is_override(w)]
    overrides = spec_overrides(args)
    files = spec_files(args.paths)
    if not files:
        raise HarnessError(f"no spec files found under {' '.join(args.paths)}")
    problems: list[str] = []
    kinds = {"spec": 0, "sweep": 0}
    for f in files:
        kind = "sweep" if is_sweep_file(f) else "spec"
        kinds[kind] += 1
        try:
            if kind == "sweep":
                from harness.sweeps.cli import load_sweep

                load_sweep(f)
                warnings: list[str] = []
            else:
                errors, warnings = input_problems(load_spec(f, overrides))
                if errors:
                    raise HarnessError(f"inputs of spec {f}:\n" + _bullets(errors))
            out.print(f"[green]ok[/]    {f} ({kind})", soft_wrap=True)
            for w in warnings:
                say(f"      warning: {w}", hang=9)
        except HarnessError as e:
            out.print(f"[red]error[/] {f} ({kind})", soft_wrap=True)
            problems.append(str(e))
    counts = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in kinds.items() if n)
    out.print(f"{len(files) - len(problems)}/{len(files)} valid ({counts})")
    if problems:
        raise HarnessError("\n".join(problems))
    return 0


def _bullets(items: list[str]) -> str:
    return "\n".join(f"  - {i}" for i in items)


def say(text: str, hang: int = 2) -> None:
    """Print a plain line to stdout, wrapped at spaces to 80 columns (continuation lines
    indented ``hang`` more than the line's own leading spaces; a path is never split)."""
    lead = len(text) - len(text.lstrip(" "))
    wrapped = wrap_words(text.lstrip(" "), indent=lead, hang=hang)
    out.print(wrapped, soft_wrap=True, highlight=False, markup=False)


PLAN_EXIT = (
    "exit status: 0 when every stage is cached or can run; 1 when an input is missing (its "
    "stage shows `missing input`, the stages after it that need it `blocked (by STAGE)`); "
    "2 for an invalid spec"
)


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    _spec_args(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.epilog = PLAN_EXIT


def plan_rows(plan: Any) -> list[dict[str, Any]]:
    """The plan as data: per stage its environments, inputs, key, status and reasons.

    A stage's status is ``cached``, ``will run``, ``missing input`` (an input file is not
    there) or ``blocked (by STAGE)`` (it needs, directly or not, a stage missing an input).
    """
    from harness.core.plan import load_history, reasons

    why = reasons(plan, load_history(plan))
    rows = []
    blocked_by: dict[str, str] = {}
    for st in plan.stages:
        status = "cached" if plan.is_cached(st) else "will run"
        cause = next((blocked_by[s] for s in st.upstream_names if s in blocked_by), None)
        if st.missing:
            status = "missing input"
            blocked_by[st.name] = st.name
            reasons_ = [{"kind": "missing input", "detail": m} for m in st.missing]
        elif cause is not None:
            status = f"blocked (by {cause})"
            blocked_by[st.name] = cause
            reasons_ = [{"kind": "blocked", "detail": f"needs {cause}, which misses an input"}]
        else:
            reasons_ = why[st.name]
        rows.append(
            {
                "stage": st.name,
                "envs": list(st.envs),
                "inputs": dict(st.inputs),
                **({"baselines": st.baselines} if st.baselines else {}),
                "key": st.key,
                "dir": str(plan.stage_dir(st)),
                "status": status,
                "reasons": reasons_,
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
    from harness.core.plan import build_plan
    from harness.spec import load_spec

    plan = build_plan(load_spec(args.spec, spec_overrides(args)), strict=False)
    rows = plan_rows(plan)
    runnable = all(r["status"] in ("cached", "will run") for r in rows)
    if args.json:
        doc = {
            "spec": plan.loaded.spec.name,
            "root": str(plan.root),
            "platform": plan.platform,
            "env_mode": plan.env_mode,
            "stages": rows,
        }
        print(json.dumps(doc, indent=2))
        return 0 if runnable else 1
    # One line per stage and one per reason, wrapped at spaces to 80 columns.
    say(
        f"plan: {plan.loaded.spec.name}  platform: {plan.platform}"
        + ("  env: current interpreter" if plan.env_mode == "current" else "")
        + f"  stages: {plan.root / 'stages'}",
    )
    colour = {"cached": "green", "will run": "yellow"}
    width = max(14, *(len(r["status"]) for r in rows)) if rows else 14
    for r in rows:
        wired = [f"{role}<-{s}" for role, s in r["inputs"].items() if role != s]
        wired += [
            f"baseline {b}<-{'+'.join(st.values())}" for b, st in r.get("baselines", {}).items()
        ]
        inputs = ", ".join(wired)
        line = f"{r['status']:<{width}} {r['stage']} {r['key']} ({'+'.join(r['envs'])})"
        text = Text(wrap_words(line + (f" inputs: {inputs}" if inputs else ""), hang=8))
        text.stylize(colour.get(r["status"], "red"), 0, len(r["status"]))
        text.stylize("bold", width + 1, width + 1 + len(r["stage"]))
        out.print(text, soft_wrap=True, highlight=False)
        for why in r["reasons"]:
            detail = f": {why['detail']}" if why["detail"] else ""
            say(f"      - {why['kind']}{detail}", hang=2)
    if not runnable:
        say("not runnable: an input is missing (exit status 1)")
    return 0 if runnable else 1


def _run_arguments(p: argparse.ArgumentParser) -> None:
    _spec_args(p)
    p.add_argument("--force", action="append", metavar="STAGE", help="re-run this stage")


@command("run", "run a spec (only stages whose inputs changed)", _run_arguments)
def cmd_run(args: argparse.Namespace) -> int:
    from harness.core.executor import execute
    from harness.core.plan import build_plan
    from harness.spec import load_spec

    plan = build_plan(load_spec(args.spec, spec_overrides(args)))
    force = tuple(args.force or ())
    check_forced(force, [st.name for st in plan.stages], args.spec)
    summary = execute(plan, console=console, force=force)
    # Paths on lines of their own, never wrapped: they are copied from here.
    plain: dict[str, Any] = {"soft_wrap": True, "highlight": False, "markup": False}
    out.print(f"run manifest: {summary.run_dir / 'run.json'}", **plain)
    if summary.wandb_dir:
        out.print(f"W&B run: {summary.wandb_dir}", **plain)
        if "offline" in summary.wandb_dir.name:
            out.print(f"  sync it with: wandb sync {summary.wandb_dir}", **plain)
    report = next((o for o in summary.outcomes if o.name == "report"), None)
    if report:
        out.print(f"report: {report.dir / 'report.md'}", **plain)
        out.print(f"page: {report.dir / 'report.html'} (harness view)", **plain)
    return 0


def check_forced(force: tuple[str, ...], planned: list[str], spec: str) -> None:
    """Every ``--force`` stage must be a stage of the plan.

    Raises:
        HarnessError: An unknown stage (with the closest name), or one the plan lacks.
    """
    from harness.core.stage import stage_defs

    known = list(stage_defs())
    for name in force:
        if name in planned:
            continue
        if name not in known:
            raise HarnessError(
                f"--force {name}: no such stage" + did_you_mean(name, [*planned, *known])
            )
        raise HarnessError(
            f"--force {name}: stage `{name}` is not in the plan of {spec} (its stages: "
            f"{', '.join(planned)})"
        )


@command("stages", "list the stages the harness and its plugins declare")
def cmd_stages(args: argparse.Namespace) -> int:
    from harness.core.stage import stage_defs

    for name, d in stage_defs().items():
        inputs = ", ".join(
            f"{r}<-{'|'.join(c)}" for r, c in {**d.inputs, **d.optional_inputs}.items()
        )
        say(
            f"{name:<11} section: {d.section or '-'}  envs: {'+'.join(d.envs)}  "
            f"outputs: {', '.join(a.name for a in d.outputs) or '-'}"
            + (f"  inputs: {inputs}" if inputs else "")
            + ("  (sees every stage before it)" if d.upstream_all else "")
            + (f"  baselines' stages: {', '.join(d.baselines)}" if d.baselines else "")
            + f"  reads: {', '.join(d.reads)}"
            + (f"  files: {', '.join(d.files)}" if d.files else "")
            + f"  metrics: {', '.join(d.result_model.metrics_model().declared_names()) or '-'}",
            hang=12,
        )
    return 0


def _env_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "roles",
        nargs="*",
        metavar="ROLE",
        help="roles whose environments to create (serve, train, quant, llmcompressor; with --check also "
        "core); with --check SPEC, KEY=VALUE words override spec keys",
    )
    p.add_argument(
        "--platform",
        default="auto",
        choices=["auto", "cpu", "gpu"],
        help="environment variant (auto: gpu when nvidia-smi exists); with a spec it "
        "overrides the spec's run.platform",
    )
    p.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="SPEC",
        help="create nothing: list the pins the current interpreter leaves unmet, per role "
        "and pin file (of the spec's stages on its platform, else of the roles named, else of "
        "every role), and whether `kernels` is Hugging Face's; exit 1 when any is unmet",
    )
    _set_option(p, "with a spec: override a spec key (repeatable)")
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
    from harness.core import envs
    from harness.core.stage import ENVS

    if spec:
        from harness.core.plan import build_plan
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
    from harness.core import envs
    from harness.core.stage import ENVS

    # Every role can be checked; "core" (this interpreter) is never created.
    known = list(ENVS) if args.check is not None else [r for r in ENVS if r != "core"]
    args.overrides = [w for w in args.roles if is_override(w)]
    args.roles = [w for w in args.roles if not is_override(w)]
    check = args.check
    if check and (
        check in known or not (Path(check).exists() or check.endswith((".yaml", ".yml")))
    ):
        # `env --check serve train`: roles, not a spec (a word that names no spec is a role)
        args.roles, args.check = [check, *args.roles], ""
    bad_roles = [r for r in args.roles if r not in known]
    if bad_roles:
        raise HarnessError(
            f"`harness env`: unknown role {bad_roles[0]!r}"
            + did_you_mean(bad_roles[0], known)
            + f" (choose from {', '.join(known)})"
        )
    overrides = spec_overrides(args)
    if overrides and not args.check:
        raise HarnessError(
            f"`harness env`: overrides ({' '.join(overrides)}) need a spec: --check SPEC"
        )
    if args.check and args.platform != "auto":
        overrides.append(f"run.platform={args.platform}")
    if args.check is not None:
        platform, report = env_check(args.check or None, args.roles, args.platform, overrides)
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
    if not path.is_file():
        raise HarnessError(f"--readme {path}: file not found")
    from harness.atomic import write_bytes

    write_bytes(path, splice_reference(path.read_text(encoding="utf-8"), path).encode())
    out.print(f"updated the generated sections of {path}")
    return 0


COMMANDS.add(
    "score",
    Command("score predictions against ShopBench-format data", "harness.shopbench.score_cli"),
)
COMMANDS.add(
    "compare",
    Command(
        "paired comparison of two prediction sets or runs on the same rows",
        "harness.compare_cli",
    ),
)
COMMANDS.add(
    "pad",
    Command(
        "pad a checkpoint's intermediate_size for tensor parallel AWQ", "shopbench_kernels.pad_cli"
    ),
)
COMMANDS.add("sweep", Command("run a W&B sweep file over a spec", "harness.sweeps.cli"))
COMMANDS.add(
    "data", Command("list, fetch and locate the named public datasets", "harness.public_data.cli")
)
COMMANDS.add(
    "view",
    Command("print (and open) the page of a run or a sweep (default: latest run)", "harness.view"),
)


def _version() -> str:
    """The installed distribution's version (``unknown`` when run from a source tree that is
    not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("shopbench-harness")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``harness``.

    Args:
        only: Import and add the options of this command alone (every command is still
            listed): ``harness score`` does not import the sweep or padding code. None: all.
    """
    parser = argparse.ArgumentParser(
        prog="harness",
        description="The ShopBench harness: validate, plan and run experiment specs; score "
        "predictions; fetch datasets. `harness COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        cmd = COMMANDS.get(name)
        p = sub.add_parser(name, help=cmd.help)
        if only is not None and name != only:
            continue
        add, main_fn = cmd.functions()
        add(p)
        p.set_defaults(func=main_fn)
    return parser


PROGRESS_OFF = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
"""What turns off the progress bars of tqdm and of the Hugging Face libraries (which read
these at import), in this process and the stage processes it starts."""


def quiet_progress() -> None:
    """No progress bars when neither stdout nor stderr is a terminal (a log file, a pipe):
    a bar there is a line of control characters, not progress."""
    if not (sys.stdout.isatty() or sys.stderr.isatty()):
        for name, value in PROGRESS_OFF.items():
            os.environ.setdefault(name, value)


def main(argv: list[str] | None = None) -> int:
    """Entry point. User errors exit 2 with one message and no traceback; a failed stage 1."""
    quiet_progress()
    words = sys.argv[1:] if argv is None else argv
    first = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    # ``key=value`` words after options (`run SPEC --force x a=b`) are overrides too.
    if hasattr(args, "set"):
        args.set += [w for w in extra if is_override(w)]
        extra = [w for w in extra if not is_override(w)]
    if extra:
        print(
            f"error: harness {args.command}: unrecognized arguments: {' '.join(extra)}",
            file=sys.stderr,
        )
        return 2
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
