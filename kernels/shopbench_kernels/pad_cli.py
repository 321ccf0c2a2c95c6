"""``harness pad SRC DST --target N | --tp 4 [--tp 2 ...] [--group-size 128]``.

Pads a Hugging Face checkpoint's MLP ``intermediate_size`` with zero channels so that it
shards at the given tensor parallel sizes with 4-bit AWQ. With ``--dry-run`` it prints which
TP sizes work before and after, and the target, without writing anything.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from shopbench_kernels.errors import PaddingError
from shopbench_kernels.pad_checkpoint import PLACEMENTS, pad_checkpoint, read_config
from shopbench_kernels.tp_math import padding_table


def _group_size(text: str) -> int | None:
    if text.lower() in ("none", "0"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer, -1 or none: {text!r}") from None
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"group size must be positive, -1 or none: {text}")
    return value


def render_table(table: dict[str, Any]) -> str:
    """The ``--dry-run`` table as text: the target, then per TP size whether it shards
    before and after padding, and why a wanted size still does not.

    Args:
        table: A :func:`kernels.tp_math.padding_table` result.
    """
    before, after = table["before"], table["after"]
    group = table["group_size"] if table["group_size"] is not None else "none (unquantised)"
    wanted = ", ".join(map(str, table["tp_sizes"])) or "-"
    lines = [
        f"intermediate_size {before['intermediate_size']} -> {table['target']} "
        f"(group size {group}; wanted TP {wanted}: "
        f"{'served' if table['serves_tp_sizes'] else 'NOT served'})",
        f"{'TP':>4}  {'before':<7} after",
    ]
    sizes = sorted(
        {int(tp) for tp in (*before["valid_tp"], *before["problems"])} | set(after["valid_tp"])
    )
    for tp in sizes:
        ok = ("ok" if tp in side["valid_tp"] else "no" for side in (before, after))
        lines.append(f"{tp:>4}  {next(ok):<7} {next(ok)}")
    for tp in table["tp_sizes"]:
        for reason in after["problems"].get(str(tp), []):
            lines += textwrap.wrap(
                f"TP {tp} after padding: {reason}",
                width=80,
                subsequent_indent="  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``pad`` command's arguments to ``parser``.

    Args:
        parser: The (sub)parser to fill.
    """
    parser.add_argument("src", type=Path, help="Hugging Face model dir (safetensors)")
    parser.add_argument("dst", type=Path, help="output dir (must not exist)")
    parser.add_argument(
        "--target", type=int, default=None, help="new intermediate_size (checked against --tp)"
    )
    parser.add_argument(
        "--tp",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="tensor parallel size to support (repeatable); without --target, the smallest "
        "size serving all of them is used",
    )
    parser.add_argument(
        "--group-size",
        type=_group_size,
        default=128,
        help="AWQ group size the TP check assumes (default 128; `none`: unquantised serving)",
    )
    parser.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default="interleave",
        help="where the zero channels go (default interleave: no all-zero AWQ group)",
    )
    parser.add_argument(
        "--no-fsync", action="store_true", help="skip fsync (faster, not crash-safe)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the TP table and target; write nothing"
    )
    parser.add_argument(
        "--json", action="store_true", help="with --dry-run: the table as JSON, with reasons"
    )


def main(args: argparse.Namespace) -> int:
    """Run ``harness pad``; prints a JSON summary on stdout.

    Args:
        args: Parsed arguments (see :func:`add_arguments`).

    Returns:
        0 on success.

    Raises:
        HarnessError: Bad arguments or checkpoint (the harness CLI prints it and exits 2).
    """
    if args.target is None and not args.tp:
        raise PaddingError("give --target N or at least one --tp N")
    if args.dry_run:
        config = read_config(Path(args.src))
        table = padding_table(config, args.group_size, args.tp, target=args.target)
        print(json.dumps(table, indent=2) if args.json else render_table(table))
        return 0
    result = pad_checkpoint(
        args.src,
        args.dst,
        args.target,
        tp_sizes=args.tp,
        group_size=args.group_size,
        placement=args.placement,
        durable=not args.no_fsync,
    )
    print(json.dumps(result, indent=2))
    return 0
