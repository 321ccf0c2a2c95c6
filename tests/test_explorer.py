"""The run explorer (report.html) and the sweep page, in a real headless Chromium.

Most tests load pages built by :mod:`harness.explorer` from synthetic rows (fast, no
pipeline); the last ones load the tiny pipeline's own report.html and hold it against the
run's report.json and score files.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.explorer import build_sweep_page, embed_json
from harness.explorer.rows import load_rows
from harness.explorer.run_page import pack_rows
from harness.shopbench.types import Record
from tests.support import browser as chromium
from tests.support import explorer as synth

N = 120


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, dict]:
    """A synthetic run page: 120 rows, hostile outputs first, a baseline."""
    return synth.write_page(tmp_path_factory.mktemp("explorer") / "report.html", N)


def _scripts(text: str) -> list[tuple[str, str]]:
    return re.findall(r"<script([^>]*)>(.*?)</script>", text, flags=re.S)


# --------------------------------------------------------------------------- the file


def test_embedded_json_cannot_close_its_script_and_round_trips() -> None:
    value = {"a": synth.HOSTILE, "b": "x\u2028y\u2029z & </script> <!--", "n": float("nan")}
    text = embed_json(value)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == {**value, "n": None}


def test_the_page_is_one_file_whose_data_stays_data(page: tuple[Path, list, dict]) -> None:
    path, rows, _ = page
    text = path.read_text(encoding="utf-8")
    scripts = _scripts(text)
    # data, rows, code: no script element came from a row.
    assert [a.strip() for a, _ in scripts] == [
        'type="application/json" id="data"',
        'type="application/json" id="rows"',
        "",
    ]
    assert "src=" not in "".join(a for a, _ in scripts)
    assert not re.search(r"(href|src)=\"?(https?:)?//", text)
    packed = json.loads(scripts[1][1])
    assert packed == json.loads(json.dumps(pack_rows(rows, ["official", "robust"], ["base"])))
    assert packed["strings"][packed["rows"][0][4]] == synth.HOSTILE[0]
    # The one script runs by its hash: the policy lets no other script or handler run.
    (code,) = [c for a, c in scripts if not a.strip()]
    digest = base64.b64encode(__import__("hashlib").sha256(code.encode()).digest()).decode()
    (policy,) = re.findall(r"script-src ([^;\"]*)", text)
    assert policy == f"'sha256-{digest}'"


def test_large_row_data_is_embedded_compressed(tmp_path: Path) -> None:
    path, rows, _ = synth.write_page(tmp_path / "r.html", 30, compress_over=0)
    scripts = dict(_scripts(path.read_text(encoding="utf-8")))
    packed = scripts[' type="application/gzip+base64" id="rows-gz"']
    data = json.loads(gzip.decompress(base64.b64decode(packed)))
    assert data == json.loads(json.dumps(pack_rows(rows, ["official", "robust"], ["base"])))


def test_rows_join_data_prompts_outputs_and_both_parsers(tmp_path: Path) -> None:
    recs = [
        Record(f"q{i}", f"a{i}", f"task{i % 2}", "generation", "rougel", False, f"t{i % 2}")
        for i in range(5)
    ]
    score, infer = tmp_path / "score", tmp_path / "infer"
    score.mkdir()
    infer.mkdir()
    kept = [0, 2]  # infer.limit 4, eval.tracks [t0]: rows 0 and 2

    def jl(path: Path, items: list[dict]) -> None:
        path.write_text("".join(json.dumps(x) + "\n" for x in items))

    for mode, bump in (("official", 0.0), ("robust", 0.5)):
        jl(
            score / f"rows_{mode}.jsonl",
            [
                {
                    "task_name": "task0",
                    "parsed": f"{mode}{i}",
                    "parse_ok": mode == "robust",
                    "score": i / 10 + bump,
                }
                for i in kept
            ],
        )
    jl(infer / "predictions.jsonl", [{"prediction": f"out{i}"} for i in range(4)])
    jl(
        infer / "requests.jsonl",
        [
            {
                "prompt": f"P{i}",
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": f"U{i}"},
                ],
            }
            for i in range(3)
        ]
        + [{"prompt": "P3"}],
    )
    rows = load_rows(recs, score, infer, {"b": (score, None)}, limit=4, tracks=["t0"])
    assert [r.truth for r in rows] == ["a0", "a2"]
    assert [r.run.output for r in rows] == ["out0", "out2"]
    assert rows[1].messages == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U2"},
    ]
    assert rows[1].run.parsed == {"official": "official2", "robust": "robust2"}
    assert rows[1].run.parse_ok == {"official": False, "robust": True}
    assert rows[1].run.score == pytest.approx({"official": 0.2, "robust": 0.7})
    assert rows[0].baselines["b"].output is None and rows[0].baselines["b"].score["robust"] == 0.5


# --------------------------------------------------------------------------- in Chromium


def _load(driver: Any, path: Path) -> str:
    url = chromium.open_page(driver, path)
    assert chromium.console_errors(driver) == []
    assert chromium.requests(driver) == [url], "the page requested something besides itself"
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    return url


def _expected(rows: list, keep: Any) -> list[int]:
    return [r.index for r in rows if keep(r)]


def test_page_loads_offline_and_shows_the_scores(
    browser: Any, page: tuple[Path, list, dict]
) -> None:
    path, _rows, scores = page
    _load(browser, path)
    assert browser.title == "synthetic <run>: report"
    for task, t in scores["official"]["tasks"].items():
        for mode in ("official", "robust"):
            (cell,) = chromium.by_css(
                browser, f'#scores-table tr[data-task="{task}"] td[data-mode="{mode}"]'
            )
            v = scores[mode]["tasks"][task]
            assert float(cell.get_attribute("data-value")) == v["score"]
            lo, hi = v["ci"]
            assert cell.text == f"{v['score']:.4f} [{lo:.4f}, {hi:.4f}]"
        (n,) = chromium.by_css(browser, f'#scores-table tr[data-task="{task}"] td:nth-child(4)')
        assert n.text == str(t["n"])  # an integer as an integer
    (overall,) = chromium.by_css(
        browser, '#overall-table tr[data-track="overall"] td[data-mode="robust"]'
    )
    assert overall.text == f"{scores['robust']['overall']:.4f}"
    (delta,) = chromium.by_css(browser, '.comparison[data-baseline="base"] tr[data-key="overall"]')
    assert "[0.0100, 0.4000]" in delta.text and "sig" in delta.get_attribute("class")
    assert len(chromium.by_css(browser, "#charts svg rect")) >= 2 * len(scores["official"]["tasks"])
    assert browser.find_element("id", "ex-count").text == f"{N} of {N} rows"


def test_filters_show_exactly_the_matching_rows(
    browser: Any, page: tuple[Path, list, dict]
) -> None:
    path, rows, _ = page
    _load(browser, path)
    chromium.click(browser, chromium.by_css(browser, "#f-parse-failed")[0])
    failed = _expected(rows, lambda r: not r.run.parse_ok["official"])
    assert 0 < len(failed) < N
    assert sorted(chromium.shown_indices(browser)) == failed
    chromium.set_select(browser, "f-parser", "robust")
    assert sorted(chromium.shown_indices(browser)) == _expected(
        rows, lambda r: not r.run.parse_ok["robust"]
    )
    chromium.click(browser, chromium.by_css(browser, "#f-parse-failed")[0])
    chromium.click(browser, chromium.by_css(browser, "#f-disagree")[0])
    assert sorted(chromium.shown_indices(browser)) == _expected(
        rows,
        lambda r: (
            r.run.score["official"] != r.run.score["robust"]
            or r.run.parsed["official"] != r.run.parsed["robust"]
        ),
    )
    chromium.click(browser, chromium.by_css(browser, "#f-disagree")[0])
    chromium.set_select(browser, "f-parser", "official")
    chromium.set_select(browser, "f-vs", "worse")
    assert sorted(chromium.shown_indices(browser)) == _expected(
        rows, lambda r: r.run.score["official"] < r.baselines["base"].score["official"]
    )
    chromium.set_select(browser, "f-vs", "better")
    chromium.set_select(browser, "f-type", "ranking")
    assert sorted(chromium.shown_indices(browser)) == _expected(
        rows,
        lambda r: (
            r.type == "ranking" and r.run.score["official"] > r.baselines["base"].score["official"]
        ),
    )
    chromium.set_select(browser, "f-vs", "")
    chromium.set_select(browser, "f-type", "")
    chromium.set_select(browser, "f-sort", "desc")
    order = chromium.shown_indices(browser)
    assert [rows[i].run.score["official"] for i in order] == sorted(
        (r.run.score["official"] for r in rows), reverse=True
    )
    chromium.set_select(browser, "f-sort", "")
    box = browser.find_element("id", "f-search")
    box.send_keys(rows[37].messages[1]["content"][5:40].upper())
    browser.implicitly_wait(0)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 5).until(
        lambda d: d.find_element("id", "ex-count").text.startswith("1 of")
    )
    assert chromium.shown_indices(browser) == [37]
    assert chromium.console_errors(browser) == []


def test_a_task_click_opens_its_rows_and_a_row_opens_whole(
    browser: Any, page: tuple[Path, list, dict]
) -> None:
    path, rows, _ = page
    _load(browser, path)
    chromium.click(
        browser, chromium.by_css(browser, "#f-parse-failed")[0]
    )  # cleared by the task click
    (link,) = chromium.by_css(browser, 'button[data-task-link="task3"]')
    chromium.click(browser, link)
    assert browser.find_element("id", "f-task").get_attribute("value") == "task3"
    assert sorted(chromium.shown_indices(browser)) == _expected(rows, lambda r: r.task == "task3")
    first = chromium.by_css(browser, "#ex-table tbody tr")[0]
    i = int(first.get_attribute("data-index"))
    chromium.click(browser, first)
    detail = browser.find_element("id", "ex-detail")
    turns = [t.text for t in detail.find_elements("css selector", ".turn pre")]
    assert turns == [m["content"] for m in rows[i].messages]
    assert browser.find_element("id", "ex-output").text == rows[i].run.output
    base = detail.find_element("css selector", '.baseline[data-baseline="base"] pre').text
    assert base == rows[i].baselines["base"].output


def test_hostile_outputs_show_as_text_and_run_nothing(
    browser: Any, page: tuple[Path, list, dict]
) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    path, _rows, _ = page
    _load(browser, path)
    for i, bad in enumerate(synth.HOSTILE):
        chromium.click(
            browser, chromium.by_css(browser, f'#ex-table tbody tr[data-index="{i}"]')[0]
        )
        shown = browser.execute_script("return document.getElementById('ex-output').textContent")
        assert shown == bad
    assert browser.execute_script("return window.__pwned === undefined")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert chromium.by_css(browser, "#app img, #app textarea, #app script, [onerror]") == []
    assert chromium.console_errors(browser) == []  # no policy violation either


def test_a_compressed_page_inflates_in_the_browser(browser: Any, tmp_path: Path) -> None:
    path, rows, _ = synth.write_page(tmp_path / "gz.html", 300, compress_over=0)
    _load(browser, path)
    assert browser.find_element("id", "ex-count").text == "300 of 300 rows"
    chromium.click(browser, chromium.by_css(browser, "#f-parse-failed")[0])
    assert sorted(chromium.shown_indices(browser)) == _expected(
        rows, lambda r: not r.run.parse_ok["official"]
    )


def test_sweep_page_tables_plots_and_links(browser: Any, tmp_path: Path) -> None:
    rows = [
        {
            "trial": f"t{i}",
            "status": "ok" if i != 2 else "failed",
            "decoding.temperature": t,
            "infer.variant": v,
            "overall": None if i == 2 else 0.1 * i,
            "score/overall": None if i == 2 else 0.1 * i,
            "error": "<img src=x onerror=window.__pwned=1>" if i == 2 else None,
        }
        for i, (t, v) in enumerate([(0.0, "a"), (0.5, "b"), (1.0, "a"), (0.7, "b")])
    ]
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "report.html").write_text("<!DOCTYPE html><title>t1</title>")
    text = build_sweep_page(
        name="toy",
        metric="overall",
        goal="maximize",
        params=["decoding.temperature", "infer.variant"],
        rows=rows,
        links={"t1": "t1/report.html"},
        best="t3",
    )
    path = tmp_path / "index.html"
    path.write_text(text)
    _load(browser, path)
    assert len(chromium.by_css(browser, "#trials-table tbody tr")) == 4
    assert len(chromium.by_css(browser, "#plots svg")) == 2
    assert (
        len(chromium.by_css(browser, "#plots svg circle")) == 2 * 3
    )  # the ok trials, per parameter
    assert len(chromium.by_css(browser, "#plots svg circle.best")) == 2
    (cell,) = chromium.by_css(browser, 'tr[data-trial="t3"] td[data-metric="overall"]')
    assert cell.text == "0.3000"
    assert "onerror" in chromium.by_css(browser, 'tr[data-trial="t2"]')[0].text
    assert browser.execute_script("return window.__pwned === undefined")
    (link,) = chromium.by_css(browser, 'tr[data-trial="t1"] a')
    chromium.click(browser, link)
    assert browser.title == "t1"


def test_a_page_without_scores_or_rows(browser: Any, tmp_path: Path) -> None:
    """A Shopping-MMLU-only run: no score stage, no rows; its leaderboard is on the page."""
    from harness.explorer import build_run_page

    board = {
        "this run": {"skill1": 0.5, "Overall": 0.25},
        "untuned": {"skill1": 0.0, "Overall": 0.0},
    }
    text = build_run_page(
        title="mmlu", header={}, scores={}, facts={"shopping_mmlu": {"leaderboard": board}}, rows=[]
    )
    path = tmp_path / "m.html"
    path.write_text(text)
    _load(browser, path)
    cells = [c.text for c in chromium.by_css(browser, "#mmlu-table tbody td")]
    assert cells == ["this run", "50.00", "25.00", "untuned", "0.00", "0.00"]
    assert chromium.by_css(browser, "#explorer") == []


def _view(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from harness.cli import main

    rc = main(["view", "--no-open", *args])
    out, err = capsys.readouterr()
    return rc, out.strip(), err.strip()


def test_harness_view_finds_runs_and_sweeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    monkeypatch.setenv("HARNESS_RUNS_ROOT", str(root))
    assert _view([], capsys)[0] == 2  # no runs yet: one line, exit 2
    pages = {}
    for spec, started in (("old", "20260101T000000Z"), ("new", "20260202T000000Z")):
        report = root / "stages" / "report" / spec
        report.mkdir(parents=True)
        pages[spec] = report / "report.html"
        pages[spec].write_text("page")
        run = root / "runs" / spec / started
        run.mkdir(parents=True)
        (run / "run.json").write_text(
            json.dumps({"started": started, "stages": {"report": {"dir": str(report)}}})
        )
        (root / "runs" / spec / "latest").symlink_to(started)
    sweep = root / "sweeps" / "toy"
    sweep.mkdir(parents=True)
    (sweep / "index.html").write_text("page")
    assert _view([], capsys) == (0, str(pages["new"].resolve()), "")
    assert _view(["old"], capsys)[1] == str(pages["old"].resolve())
    assert _view([str(root / "runs" / "old")], capsys)[1] == str(pages["old"].resolve())
    assert _view(["toy"], capsys)[1] == str((sweep / "index.html").resolve())
    assert _view([str(sweep)], capsys)[1] == str((sweep / "index.html").resolve())
    pages["new"].unlink()
    rc, _, err = _view([], capsys)
    assert rc == 2 and "--force report" in err and len(err.splitlines()) == 1
    rc, _, err = _view(["nope"], capsys)
    assert rc == 2 and "'nope'" in err


def test_sweep_links_reach_each_trials_report(tmp_path: Path) -> None:
    from harness.sweeps.results import trial_pages
    from harness.sweeps.trial import TrialRecord

    sweep_dir = tmp_path / "runs" / "sweeps" / "toy"
    sweep_dir.mkdir(parents=True)
    records = []
    for i in range(3):
        run_dir, report = (
            tmp_path / "runs" / "runs" / f"r{i}",
            tmp_path / "stages" / "report" / f"k{i}",
        )
        run_dir.mkdir(parents=True)
        report.mkdir(parents=True)
        if i != 1:  # trial 1's report has no page
            (report / "report.html").write_text("page")
        stages = {"report": {"dir": str(report)}} if i != 2 else {}  # trial 2 has no report
        (run_dir / "run.json").write_text(json.dumps({"stages": stages}))
        records.append(TrialRecord(trial=f"t{i}", params={}, run_dir=str(run_dir)))
    records.append(TrialRecord(trial="t3", params={}))  # failed before any run
    links = trial_pages(records, sweep_dir)
    assert links == {"t0": "../../../stages/report/k0/report.html"}
    assert (sweep_dir / links["t0"]).resolve() == (tmp_path / "stages/report/k0/report.html")


# --------------------------------------------------------------------------- the real run


def _report_dir(pipeline: dict) -> Path:
    run = json.loads((pipeline["runs"] / "runs" / "tiny_cpu" / "latest" / "run.json").read_text())
    return Path(run["stages"]["report"]["dir"])


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.engine
def test_the_pipeline_page_equals_its_report(browser: Any, tiny_cpu_pipeline: dict) -> None:
    report = _report_dir(tiny_cpu_pipeline)
    facts = json.loads((report / "report.json").read_text())
    run = json.loads(
        (tiny_cpu_pipeline["runs"] / "runs" / "tiny_cpu" / "latest" / "run.json").read_text()
    )
    score = Path(run["stages"]["score"]["dir"])
    _load(browser, report / "report.html")
    for mode, s in facts["scores"].items():
        for key, value in [("overall", s["overall"]), *s["tracks"].items()]:
            (cell,) = chromium.by_css(
                browser, f'#overall-table tr[data-track="{key}"] td[data-mode="{mode}"]'
            )
            assert float(cell.get_attribute("data-value")) == value
            # Shown with 4 decimals (a tie such as 0.15625 may round either way).
            assert abs(float(cell.text.split()[0]) - value) <= 5e-5 + 1e-12
    for name, b in facts["baselines"].items():
        (cell,) = chromium.by_css(
            browser, f'#baseline-table tr[data-key="overall score"] td[data-run="{name}"]'
        )
        assert float(cell.get_attribute("data-value")) == b["overall"]
        for k, v in b["parse_rates"].items():
            (cell,) = chromium.by_css(
                browser, f'#baseline-table tr[data-key="{k}"] td[data-run="{name}"]'
            )
            assert float(cell.get_attribute("data-value")) == v
    rows = [json.loads(x) for x in (score / "rows.jsonl").read_text().splitlines()]
    assert browser.find_element("id", "ex-count").text == f"{len(rows)} of {len(rows)} rows"
    chromium.click(browser, chromium.by_css(browser, "#f-parse-failed")[0])
    assert sorted(chromium.shown_indices(browser)) == [
        i for i, r in enumerate(rows) if not r["parse_ok"]
    ]
    task = rows[-1]["task_name"]
    chromium.click(browser, chromium.by_css(browser, f'button[data-task-link="{task}"]')[0])
    shown = chromium.shown_indices(browser)
    assert sorted(shown) == [i for i, r in enumerate(rows) if r["task_name"] == task]
    preds = [
        json.loads(x)
        for x in (Path(run["stages"]["infer"]["dir"]) / "predictions.jsonl")
        .read_text()
        .splitlines()
    ]
    chromium.click(
        browser, chromium.by_css(browser, f'#ex-table tbody tr[data-index="{shown[0]}"]')[0]
    )
    out = browser.execute_script("return document.getElementById('ex-output').textContent")
    assert out == preds[shown[0]]["prediction"]
    turns = browser.execute_script(
        "return [...document.querySelectorAll('#ex-detail .turn .role')].map(e => e.textContent)"
    )
    assert turns == ["system", "user"]
    assert chromium.console_errors(browser) == []


@pytest.mark.slow
@pytest.mark.pipeline
@pytest.mark.engine
def test_harness_view_prints_the_latest_page(tiny_cpu_pipeline: dict) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "HARNESS_RUNS_ROOT": str(tiny_cpu_pipeline["runs"])}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "view"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == (_report_dir(tiny_cpu_pipeline) / "report.html").resolve()
    md = (_report_dir(tiny_cpu_pipeline) / "report.md").read_text()
    assert len(md.splitlines()) < 120 and "report.html" in md
