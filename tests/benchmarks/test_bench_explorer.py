"""Benchmark: the run page at 20,000 rows in a real headless Chromium.

Builds the page of 20,000 synthetic rows with distinct texts (about 600 characters of prompt
a row, as in the ShopBench development set, plus output, truth and a baseline's output) and
of 100 rows (the baseline, measured in the same run), loads each from ``file://`` and times,
inside the page, navigation to a usable page (``data-ready-ms``), the "parse failed" filter
and a text search. Asserts that the big page stays under 15 MB and loads and filters in under
2 s, and writes ``bench-results/explorer.json`` (sizes, times, ratios to the 100-row page,
the host's CPU features) and two screenshots: ``bench-results/explorer_page.png`` (the top of
the page) and ``bench-results/explorer_rows.png`` (the row explorer with a row opened).
"""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path
from typing import Any

import pytest

from harness.atomic import write_json
from tests.support import browser as chromium
from tests.support import explorer as synth
from tests.support.paths import REPO

OUT = REPO / "bench-results"
RESULTS = OUT / "explorer.json"
ROWS = 20_000
SMALL = 100
MAX_BYTES = 15 * 2**20


def _cpu_features() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return sorted(set(re.findall(r"\b(avx512f|avx2|amx\w*)\b", text)))


def _measure(driver: Any, path: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    chromium.open_page(driver, path, timeout=60)
    wall = time.perf_counter() - t0
    assert chromium.console_errors(driver) == []
    assert chromium.requests(driver) == [path.resolve().as_uri()]
    ready_ms = float(driver.execute_script("return Number(document.body.dataset.readyMs)"))
    filter_ms = driver.execute_script(
        "const t = performance.now();"
        "document.getElementById('f-parse-failed').click();"
        "document.body.offsetHeight;"
        "return performance.now() - t;"
    )
    failed = int(driver.find_element("id", "ex-count").get_attribute("data-count"))
    chromium.click(driver, driver.find_element("id", "f-parse-failed"))
    search_ms = driver.execute_script(
        "const box = document.getElementById('f-search'); box.value = arguments[0];"
        "const t = performance.now(); refilter(); document.body.offsetHeight;"
        "return performance.now() - t;",
        "[1234] ",
    )
    found = int(driver.find_element("id", "ex-count").get_attribute("data-count"))
    return {
        "ready_ms": ready_ms,
        "driver_load_s": wall,
        "filter_parse_failed_ms": float(filter_ms),
        "search_ms": float(search_ms),
        "parse_failed_rows": failed,
        "search_hits": found,
    }


@pytest.mark.bench
def test_bench_explorer_20k_rows(browser: Any, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    big, rows, _ = synth.write_page(tmp_path / "big.html", ROWS)
    build_s = time.perf_counter() - t0
    small, _, _ = synth.write_page(tmp_path / "small.html", SMALL)
    size = big.stat().st_size
    assert size < MAX_BYTES, size
    base = _measure(browser, small)
    m = _measure(browser, big)
    assert m["parse_failed_rows"] == sum(not r.run.parse_ok["official"] for r in rows)
    assert m["search_hits"] == 1  # "[1234] " starts one row's texts
    assert m["ready_ms"] < 2000, m
    assert m["filter_parse_failed_ms"] < 2000 and m["search_ms"] < 2000, m

    OUT.mkdir(exist_ok=True)
    chromium.open_page(browser, big, timeout=60)
    browser.save_screenshot(str(OUT / "explorer_page.png"))
    browser.find_element("id", "f-task").send_keys("task2")
    chromium.set_select(browser, "f-task", "task2")
    browser.execute_script("document.getElementById('explorer').scrollIntoView()")
    chromium.click(browser, chromium.by_css(browser, "#ex-table tbody tr")[3])
    browser.execute_script("document.getElementById('explorer').scrollIntoView()")
    browser.save_screenshot(str(OUT / "explorer_rows.png"))

    result = {
        "rows": ROWS,
        "file_bytes": size,
        "file_mb": round(size / 2**20, 2),
        "compressed": b'id="rows-gz"' in big.read_bytes(),
        "bytes_per_row": round(size / ROWS, 1),
        "build_s": round(build_s, 3),
        "big": m,
        "baseline_100_rows": {**base, "file_bytes": small.stat().st_size},
        "ratio_ready": round(m["ready_ms"] / max(base["ready_ms"], 1.0), 2),
        "ratio_filter": round(
            m["filter_parse_failed_ms"] / max(base["filter_parse_failed_ms"], 0.1), 2
        ),
        "browser": browser.capabilities.get("browserVersion"),
        "cpu_features": _cpu_features(),
        "machine": platform.machine(),
        "screenshots": ["bench-results/explorer_page.png", "bench-results/explorer_rows.png"],
    }
    write_json(RESULTS, result, sort_keys=False)
    print(json.dumps(result, indent=2))
