"""A run's page (``report.html``): header, scores, comparison, charts and the row explorer.

:func:`build_run_page` takes plain values (the header, the score files' contents, the
report's facts, :class:`~harness.explorer.rows.ExplorerRow` rows), so the report stage, a
test or a benchmark builds the same page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.explorer.page import COMPRESS_OVER, render_page
from harness.explorer.rows import MODES, ExplorerRow, show


class _Strings:
    """A string table: each distinct string is stored once and cited by its index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.strings: list[str] = []

    def __call__(self, s: str | None) -> int:
        """The index of ``s`` (-1 for None)."""
        if s is None:
            return -1
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.strings)
            self.strings.append(s)
        return i


def pack_rows(rows: Sequence[ExplorerRow], modes: Sequence[str], baselines: Sequence[str]) -> dict:
    """The rows as compact JSON data: strings in one table, each row a list of indices.

    A row is ``[task, type, track, [[role, content], ...], output, truth, [parsed per mode],
    [parse ok (0/1) per mode], [score per mode], [[output, [parsed], [ok], [score]] per
    baseline (null where the baseline lacks the row)]]``.
    """
    s = _Strings()

    def side(x: Any) -> list[Any]:
        return [
            s(x.output),
            [s(show(x.parsed[m])) if m in x.parsed else -1 for m in modes],
            [int(x.parse_ok[m]) if m in x.parse_ok else None for m in modes],
            [x.score.get(m) for m in modes],
        ]

    packed = []
    for r in rows:
        mine = side(r.run)
        packed.append(
            [
                s(r.task),
                s(r.type),
                s(r.track),
                [[s(m["role"]), s(m["content"])] for m in r.messages],
                mine[0],
                s(show(r.truth)),
                *mine[1:],
                [side(r.baselines[b]) if b in r.baselines else None for b in baselines],
            ]
        )
    return {
        "modes": list(modes),
        "baselines": list(baselines),
        "strings": s.strings,
        "rows": packed,
    }


def build_run_page(
    *,
    title: str,
    header: dict[str, Any],
    scores: dict[str, dict[str, Any]],
    facts: dict[str, Any],
    rows: Sequence[ExplorerRow],
    parser: str = "official",
    baselines: Sequence[str] | None = None,
    compress_over: int = COMPRESS_OVER,
) -> str:
    """The HTML of a run's page.

    Args:
        title: The page title (the spec name).
        header: ``spec``, ``platform``, ``engine``, ``model``, ``stages`` (list of ``name``,
            ``key``, ``wall_s``), ``data`` (list of ``name``, ``path``, ``sha256``); any
            key may be missing.
        scores: Parser mode -> the score stage's ``scores_<mode>.json`` (``tasks``, ``tracks``,
            ``overall``; ``ci`` / ``stderr`` keys are shown where present).
        facts: The report's ``report.json`` (``baselines``, ``comparisons``,
            ``shopping_mmlu``, ``stages``): shown as it is.
        rows: The explorer's rows.
        parser: The primary parser mode (the explorer's default).
        baselines: Baseline names in display order (default: those the rows carry).
        compress_over: Rows whose JSON is larger are embedded compressed.

    Returns:
        The page's HTML.
    """
    modes = [m for m in MODES if m in scores] or list(MODES)
    names = (
        list(baselines) if baselines is not None else sorted({b for r in rows for b in r.baselines})
    )
    data = {
        "kind": "run",
        "title": title,
        "header": header,
        "parser": parser if parser in modes else modes[0],
        "modes": modes,
        "scores": scores,
        "facts": facts,
        "n_rows": len(rows),
    }
    return render_page(
        f"{title}: report",
        "run.js",
        data,
        pack_rows(rows, modes, names),
        compress_over=compress_over,
    )
