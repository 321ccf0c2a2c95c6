"""A real headless Chromium for the page tests: the distribution's ``chromium`` and
``chromium-driver`` (``nox -s tests`` installs them with apt-get when it runs as root on
Debian), driven by Selenium.

:func:`start` returns a driver that records the browser console and the network log;
:func:`open_page` loads a file from ``file://`` and waits until the page says it is ready;
:func:`console_errors` and :func:`requests` read what the page did.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

BINARIES = {"chromium": ("chromium", "chromium-browser"), "chromedriver": ("chromedriver",)}
INSTALL = "apt-get install -y chromium chromium-driver (`nox -s tests` does it as root on Debian)"


def find(name: str) -> str | None:
    """The path of a browser binary (``chromium`` or ``chromedriver``), or None."""
    for candidate in BINARIES[name]:
        found = shutil.which(candidate) or (
            f"/usr/bin/{candidate}" if Path(f"/usr/bin/{candidate}").is_file() else None
        )
        if found:
            return found
    return None


def missing() -> str | None:
    """Why no browser can run here (None when one can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pinned in harness/envs/cpu.txt)"
    absent = [n for n in BINARIES if find(n) is None]
    if absent:
        return f"{' and '.join(absent)} not found; install with: {INSTALL}"
    return None


def start(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium driven by Selenium, logging the console and the network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = find("chromium") or "chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(find("chromedriver") or "chromedriver"))


def open_page(driver: Any, path: Path, timeout: float = 20.0) -> str:
    """Load ``path`` from ``file://``, wait for ``body[data-ready]`` (or a page error) and
    drop the logs of earlier pages; returns the URL."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")
    driver.get_log("performance")
    url = path.resolve().as_uri()
    driver.get(url)
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script(
            "return document.body && (document.body.dataset.ready || document.body.dataset.error)"
        )
    )
    error = driver.execute_script("return document.body.dataset.error || null")
    assert error is None, f"the page failed: {error}"
    return url


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The console entries of level SEVERE since the last read (CSP violations included)."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def requests(driver: Any) -> list[str]:
    """The URLs the page requested since the last read (from the performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def by_css(driver: Any, css: str) -> list[Any]:
    """The elements matching a CSS selector."""
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def click(driver: Any, element: Any) -> None:
    """Click an element scrolled to the middle of the window (not under the sticky nav)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def set_select(driver: Any, element_id: str, value: str) -> None:
    """Choose an option of a ``<select>`` by value (firing ``change``)."""
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def shown_indices(driver: Any) -> list[int]:
    """The explorer's matching rows (every page: it shows 1000 a page, then turns)."""
    set_select(driver, "f-size", "1000")
    out: list[int] = []
    while True:
        out += [int(tr.get_attribute("data-index")) for tr in by_css(driver, "#ex-table tbody tr")]
        label = driver.find_element("id", "ex-page").text  # "page i / n"
        i, n = (int(x) for x in label.split()[1::2])
        if i >= n:
            return out
        click(driver, driver.find_element("id", "ex-next"))
