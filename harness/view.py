"""``harness view [RUN_OR_SWEEP]``: print the path of a run's or a sweep's page and open it.

The target is a run directory (holding ``run.json``), a ``run.json``, a stage directory or a
page (``report.html``, a sweep's ``index.html``), a sweep directory, a spec name (its latest
run under the runs root) or a sweep name; without one, the latest run under the runs root
(``$HARNESS_RUNS_ROOT``, else ``runs``). The page opens in a browser only where one can
show it (an interactive terminal with a display); ``--no-open`` never opens it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness import config
from harness.atomic import read_json
from harness.errors import HarnessError

REPORT_PAGE = "report.html"
SWEEP_PAGE = "index.html"


def runs_root() -> Path:
    """``$HARNESS_RUNS_ROOT``, else ``runs`` in the working directory."""
    return Path(config.get("HARNESS_RUNS_ROOT") or "runs")


def _page_of_run(run_json: Path) -> Path:
    run = read_json(run_json)
    report = (run.get("stages") or {}).get("report")
    if report is None:
        raise HarnessError(f"{run_json}: the run has no report stage (no page)")
    page = Path(report["dir"]) / REPORT_PAGE
    if not page.is_file():
        spec = (run.get("spec") or {}).get("name", "SPEC")
        raise HarnessError(
            f"{page} not found: the report was written before pages existed; "
            f"re-run it with `harness run <{spec} spec> --force report`"
        )
    return page


def latest_run(root: Path) -> Path:
    """The ``run.json`` of the most recently started run under ``root``."""
    found = [p for p in (root / "runs").glob("*/latest/run.json") if p.is_file()]
    if not found:
        raise HarnessError(f"no runs under {root / 'runs'} (set HARNESS_RUNS_ROOT or name one)")
    return max(found, key=lambda p: (read_json(p).get("started") or "", p.stat().st_mtime))


def find_page(target: str | None, root: Path | None = None) -> Path:
    """The page a ``harness view`` target names (see the module docstring).

    Raises:
        HarnessError: Nothing matches, or the run has no page.
    """
    root = root or runs_root()
    if target is None:
        return _page_of_run(latest_run(root))
    p = Path(target)
    if p.is_file():
        if p.suffix == ".html":
            return p
        if p.name == "run.json":
            return _page_of_run(p)
        raise HarnessError(f"{p}: not a page (.html) or a run manifest (run.json)")
    if p.is_dir():
        for name in (REPORT_PAGE, SWEEP_PAGE):
            if (p / name).is_file():
                return p / name
        if (p / "run.json").is_file():
            return _page_of_run(p / "run.json")
        if (p / "latest" / "run.json").is_file():
            return _page_of_run(p / "latest" / "run.json")
        raise HarnessError(f"{p}: holds no page, run.json or latest run")
    run = root / "runs" / target / "latest" / "run.json"
    if run.is_file():
        return _page_of_run(run)
    sweep = root / "sweeps" / target / SWEEP_PAGE
    if sweep.is_file():
        return sweep
    raise HarnessError(
        f"{target!r}: no such file, run of a spec ({run.parent}) or sweep page ({sweep})"
    )


def can_open() -> bool:
    """Whether a browser can show a page here: an interactive terminal with a display."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options."""
    p.add_argument(
        "target",
        nargs="?",
        metavar="RUN_OR_SWEEP",
        help="run dir, run.json, page, sweep dir, spec name or sweep name (default: latest run)",
    )
    p.add_argument("--no-open", action="store_true", help="print the path only")


def main(args: argparse.Namespace) -> int:
    """Print the page's path; open it when a browser can show it."""
    page = find_page(args.target).resolve()
    print(page)
    if not args.no_open and can_open():
        import webbrowser

        webbrowser.open(page.as_uri())
    return 0
