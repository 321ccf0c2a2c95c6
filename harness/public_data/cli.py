"""``harness data``: the named public datasets and the local data cache.

    harness data list  [--data-dir DIR]
    harness data fetch NAME [--url URL] [--sha256 HEX] [--data-dir DIR] [--timeout S]
    harness data path  REF  [--data-dir DIR]

``fetch`` downloads a registry dataset (resuming an interrupted download) and verifies it
before it appears in the cache; ``path`` prints what a ``data://NAME[/inner/path]`` reference
resolves to, offline. The cache is ``$HARNESS_DATA_DIR`` if set, else
``$XDG_CACHE_HOME/shopbench-harness/data`` (``~/.cache`` when ``XDG_CACHE_HOME`` is unset).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from harness.public_data import (
    REGISTRY,
    DatasetError,
    data_dir,
    fetch,
    is_ref,
    list_datasets,
    resolve,
)
from harness.public_data.cache import SCHEME
from harness.registry import did_you_mean


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``data`` subcommands to a (sub)parser.

    Args:
        parser: The parser to extend.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="The data cache (default: $HARNESS_DATA_DIR, else "
        "$XDG_CACHE_HOME/shopbench-harness/data, ~/.cache when unset).",
    )
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    sub.add_parser("list", parents=[common], help="the known datasets and whether they are cached")
    p = sub.add_parser("fetch", parents=[common], help="download and verify a dataset")
    p.add_argument("name", help="dataset name (see `harness data list`)")
    p.add_argument("--url", default=None, help="download from this URL instead (one-file sets)")
    p.add_argument(
        "--sha256",
        default=None,
        metavar="HEX",
        help="expected sha256, required where the registry publishes no checksum",
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds without data before retrying"
    )
    p = sub.add_parser("path", parents=[common], help="print what a data:// reference resolves to")
    p.add_argument("ref", help="NAME[/inner/path] or data://NAME[/inner/path]")


def reference(text: str) -> str:
    """A ``data://`` reference, or a bare registry name (``NAME[/inner/path]``) as one.

    Raises:
        DatasetError: Anything else (a path, an unknown name), with the closest name.
    """
    if is_ref(text):
        return text
    name = text.partition("/")[0]
    if name in REGISTRY:
        return SCHEME + text
    raise DatasetError(
        f"{text!r} is not a dataset name or data:// reference"
        + did_you_mean(name, list(REGISTRY))
        + "; `harness data list` lists the datasets"
    )


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def render_list(cache_dir: Path | None) -> Table:
    """The ``harness data list`` table.

    Args:
        cache_dir: The cache (None: the default).

    Returns:
        The table.
    """
    table = Table(title="datasets")
    for col, justify in (
        ("name", "left"),
        ("size", "right"),
        ("licence", "left"),
        ("cached", "left"),
        ("description", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    style = {"cached": "green", "stale": "yellow", "partial": "yellow", "missing": "dim"}
    for row in list_datasets(cache_dir):
        status = {"cached": "yes", "missing": "no"}.get(row.status, row.status)
        if not row.verifiable:
            status += " (needs --sha256)"
        table.add_row(
            row.name,
            _size(row.size),
            row.licence,
            f"[{style[row.status]}]{status}[/]",
            row.description,
        )
    return table


class _RichProgress:
    """A :class:`harness.public_data.Progress` drawing one rich bar per file."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, path: str, done: int, total: int | None) -> None:
        if path not in self.tasks:
            self.tasks[path] = self.progress.add_task(path, total=total)
        self.progress.update(self.tasks[path], completed=done, total=total)


def main(args: argparse.Namespace, console: Console | None = None) -> int:
    """Run ``harness data``.

    Args:
        args: Parsed options (see :func:`add_arguments`).
        console: Where tables and paths go (default: stdout).

    Returns:
        0 on success.

    Raises:
        HarnessError: Unknown dataset, unverifiable or failed download, absent dataset (the
            message gives the fetch command).
    """
    console = console or Console()
    if args.data_command == "list":
        where = args.data_dir or data_dir()
        console.print(f"cache: {where}", markup=False, highlight=False, soft_wrap=True)
        console.print(render_list(args.data_dir))
        return 0
    if args.data_command == "path":
        ref = reference(args.ref)
        console.print(str(resolve(ref, cache_dir=args.data_dir)), markup=False, soft_wrap=True)
        return 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bars:
        path = fetch(
            args.name,
            args.data_dir,
            url=args.url,
            sha256=args.sha256,
            progress=_RichProgress(bars),
            timeout=args.timeout,
        )
    console.print(str(path), markup=False, soft_wrap=True)
    return 0
