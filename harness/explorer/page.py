"""The page shell: inline assets and embedded JSON data, nothing fetched.

Data goes into ``<script type="application/json">`` elements with ``<``, ``>``, ``&`` and
U+2028/U+2029 escaped (no ``</script>`` can close them early). A large row set is embedded
gzip-compressed and base64-encoded (an alphabet without markup characters) and inflated in
the page with the browser's ``DecompressionStream``: the 20,000-row page stays small.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent / "assets"
"""The pages' styles and scripts (package data: a stage that writes a page names this
directory among its input files, so an edit of a script re-keys it)."""
COMPRESS_OVER = 2_000_000
"""Row data larger than this (bytes of JSON) is embedded gzip-compressed."""

_ESCAPES = (
    ("&", "\\u0026"),
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def embed_json(value: Any) -> str:
    """``value`` as JSON that is safe inside a ``<script>`` element.

    Args:
        value: A JSON-able value (NaN and infinities become ``null``).

    Returns:
        Compact JSON with ``<``, ``>``, ``&``, U+2028 and U+2029 written as ``\\uXXXX``.
    """
    opts: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":"), "default": str}
    try:
        text = json.dumps(value, allow_nan=False, **opts)
    except ValueError:  # a NaN or an infinity somewhere
        text = json.dumps(_finite(value), **opts)
    for char, escaped in _ESCAPES:
        text = text.replace(char, escaped)
    return text


def _finite(value: Any) -> Any:
    """NaN and infinities (not JSON) as None, recursively."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def asset(name: str) -> str:
    """The text of one of the page assets (``assets/<name>``)."""
    return (ASSETS / name).read_text(encoding="utf-8")


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_page(
    title: str,
    script: str,
    data: dict[str, Any],
    rows: Any | None = None,
    *,
    compress_over: int = COMPRESS_OVER,
) -> str:
    """One self-contained HTML page.

    Args:
        title: The document title (escaped).
        script: The page's script asset (``run.js`` or ``sweep.js``), after ``common.js``.
        data: The page's data, embedded as ``#data``.
        rows: Optional bulk data (the run's rows), embedded as ``#rows`` (plain JSON, or
            ``#rows-gz`` when its JSON is longer than ``compress_over`` bytes).
        compress_over: The compression threshold in bytes.

    Returns:
        The HTML text.
    """
    code = f"{asset('common.js')}\n{asset(script)}"
    digest = base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing but this file: its inline styles, its one script (by hash: no other script
        # or event handler runs, whatever a cell holds), no connections, no images.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        f"style-src 'unsafe-inline'; script-src 'sha256-{digest}'\">",
        f"<title>{_escape_text(title)}</title>",
        f"<style>{asset('style.css')}</style>",
        "</head><body>",
        '<div id="app"></div>',
        f'<script type="application/json" id="data">{embed_json(data)}</script>',
    ]
    if rows is not None:
        text = embed_json(rows)
        raw = text.encode("utf-8")
        if len(raw) > compress_over:
            packed = base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode()
            parts.append(f'<script type="application/gzip+base64" id="rows-gz">{packed}</script>')
        else:
            parts.append(f'<script type="application/json" id="rows">{text}</script>')
    parts += [
        f"<script>{code}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)
