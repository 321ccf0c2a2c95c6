"""``harness`` command line: validate, plan, run, score, pad, sweep, env, docs."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.errors import HarnessError, StageError

console = Console(stderr=True)
out = Console()


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
            out.print(f"[green]ok[/]    {f}")
        except HarnessError as e:
            out.print(f"[red]error[/] {f}")
            problems.append(str(e))
    out.print(f"{len(files) - len(problems)}/{len(files)} specs valid")
    if problems:
        raise HarnessError("\n".join(problems))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from harness.plan import build_plan, changed_fields, load_history
    from harness.spec import load_spec

    plan = build_plan(load_spec(args.spec, args.overrides), strict=False)
    history = load_history(plan)
    table = Table(title=f"plan: {plan.loaded.spec.name}  (stages under {plan.root / 'stages'})")
    for col in ("stage", "env", "inputs", "key", "status", "changed since last run"):
        table.add_column(col)
    for st in plan.stages:
        cached = plan.is_cached(st)
        changed = "" if cached else ", ".join(changed_fields(history.get(st.name), st))
        status = "[green]cached[/]" if cached else "[yellow]will run[/]"
        if st.missing:
            status = "[red]missing input[/]"
            changed = "; ".join(st.missing)
        table.add_row(
            st.name,
            st.definition.env,
            ", ".join(f"{r}<-{s}" for r, s in st.inputs.items()),
            st.key,
            status,
            changed,
        )
    out.print(table)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness.plan import build_plan
    from harness.run import execute
    from harness.spec import load_spec

    plan = build_plan(load_spec(args.spec, args.overrides))
    summary = execute(plan, console=console, force=tuple(args.force or ()))
    out.print(f"run manifest: {summary.run_dir / 'run.json'}")
    if summary.wandb_dir:
        out.print(f"W&B run: {summary.wandb_dir}")
        if "offline" in summary.wandb_dir.name:
            out.print(f"  sync it with: wandb sync {summary.wandb_dir}")
    report = next((o for o in summary.outcomes if o.name == "report"), None)
    if report:
        out.print(f"report: {report.dir / 'report.md'}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from harness import envs

    platform = envs.detect_platform(args.platform)
    for role in args.roles:
        req = envs.env_file(role, platform)
        py = envs.ensure_env(req)
        out.print(f"{role} ({platform}): {req.name} -> {py}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from harness.spec.docs import spec_reference, splice_reference

    if args.readme is None:
        out.print(spec_reference(), markup=False, highlight=False, soft_wrap=True)
        return 0
    path = Path(args.readme)
    path.write_text(splice_reference(path.read_text(encoding="utf-8"), path), encoding="utf-8")
    out.print(f"updated the spec reference in {path}")
    return 0


def _plugin(module: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]:
    mod = importlib.import_module(module)
    return mod.add_arguments, mod.main


PLUGINS = {
    "score": ("harness.shopbench.score_cli", "score predictions against ShopBench-format data"),
    "pad": ("kernels.pad_cli", "pad a checkpoint's intermediate_size for tensor parallel AWQ"),
    "sweep": ("harness.sweep", "run a W&B sweep file over a spec"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``harness``."""
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="validate specs (files or directories, recursively)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="key=value")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("plan", help="show the stage DAG, keys and what will run")
    _spec_args(p)
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("run", help="run a spec (only stages whose inputs changed)")
    _spec_args(p)
    p.add_argument("--force", action="append", metavar="STAGE", help="re-run this stage")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("env", help="create (or show) stage environments")
    p.add_argument("roles", nargs="+", choices=["serve", "train", "quant"])
    p.add_argument("--platform", default="auto", choices=["auto", "cpu", "gpu"])
    p.set_defaults(func=cmd_env)
    p = sub.add_parser("docs", help="print the spec reference (Markdown)")
    p.add_argument(
        "--readme",
        metavar="PATH",
        help="rewrite the reference between the spec-reference markers of this file instead",
    )
    p.set_defaults(func=cmd_docs)
    for name, (module, help_) in PLUGINS.items():
        p = sub.add_parser(name, help=help_)
        try:
            add, main_fn = _plugin(module)
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith(("harness", "kernels")):
                raise
            p.set_defaults(func=lambda a, n=name: _missing(n))
            continue
        add(p)
        p.set_defaults(func=main_fn)
    return parser


def _missing(name: str) -> int:
    raise HarnessError(f"`harness {name}` is not available in this installation")


def main(argv: list[str] | None = None) -> int:
    """Entry point. User errors exit 2 with one message and no traceback; a failed stage 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
