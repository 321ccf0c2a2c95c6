"""The run explorer: one self-contained HTML page per run (``report.html``) and per sweep
(``index.html``).

Every page is a single file: styles, scripts and data inline, no network, opened from
``file://``. Data is embedded as JSON (:func:`~harness.explorer.page.embed_json`) and every
cell is rendered as text by the page's script, so model outputs and prompts cannot inject
markup. :mod:`harness.explorer.run_page` builds a run's page from plain arguments (the rows
of :mod:`harness.explorer.rows`); :mod:`harness.explorer.sweep_page` a sweep's.
"""

from harness.explorer.page import embed_json, render_page
from harness.explorer.rows import ExplorerRow, load_rows
from harness.explorer.run_page import build_run_page
from harness.explorer.sweep_page import build_sweep_page

__all__ = [
    "ExplorerRow",
    "build_run_page",
    "build_sweep_page",
    "embed_json",
    "load_rows",
    "render_page",
]
