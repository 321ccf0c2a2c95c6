"""A sweep's page (``runs/sweeps/<name>/index.html``): the trials table with parameters and
scores, the metric against each parameter (drawn in the page), links to the trials' reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.explorer.page import render_page


def build_sweep_page(
    *,
    name: str,
    metric: str,
    goal: str,
    params: Sequence[str],
    rows: Sequence[dict[str, Any]],
    links: dict[str, str] | None = None,
    best: str | None = None,
) -> str:
    """The HTML of a sweep's page.

    Args:
        name: The sweep's name.
        metric: The sweep metric's name (a column of ``rows``).
        goal: ``maximize`` or ``minimize``.
        params: The swept parameters (columns of ``rows``).
        rows: One dict per trial (``results.jsonl``'s rows: ``trial``, ``status``, the
            parameters, the metric, the scores, ...).
        links: Trial id -> the trial's ``report.html``, relative to the page.
        best: The best trial's id, if any.

    Returns:
        The page's HTML.
    """
    data = {
        "kind": "sweep",
        "title": f"sweep {name}",
        "metric": metric,
        "goal": goal,
        "params": list(params),
        "rows": list(rows),
        "links": {str(k): v for k, v in (links or {}).items()},
        "best": best,
    }
    return render_page(f"sweep {name}", "sweep.js", data)
