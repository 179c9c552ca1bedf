"""The report in a real browser: headless Chromium opens it from disk, the search box filters, a cluster
page shows its tokens and verdict, a neuron link lands on its section, and nothing is fetched from the
network. Screenshots go to ``$NEUROSEARCH_SCREENSHOTS`` when set (else the test's temporary folder)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from chromium import Chromium, find_chromium
from neurosearch.index import Index
from neurosearch.report import ReportConfig, write_report
from neurosearch.report.html import cluster_href

BINARY = find_chromium()
pytestmark = pytest.mark.skipif(BINARY is None, reason="needs Debian's chromium and the websocket-client package "
                                                        "(apt-get install chromium; pip install websocket-client)")


@pytest.fixture(scope="module")
def browser():
    with Chromium(BINARY) as chromium:
        chromium.call("Network.enable")
        yield chromium


@pytest.fixture(scope="module")
def site(tiny_index: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from neurosearch.format.results import AblationResult
    from neurosearch.index.stored import store_ablation

    copy = tmp_path_factory.mktemp("browser-index") / "tiny"
    shutil.copytree(tiny_index, copy)
    index = Index.load(copy)
    info = index.cluster(f"{index.search_method}/k6/2")
    store_ablation(index.state, AblationResult.from_json({
        "target": {"kind": "cluster", "id": info.key, "neurons": info.neurons},
        "ablation": "mean", "head": "fitted", "sentences": 8, "masked_tokens": 9, "change_pct": 8.0,
        "control_change_pct": 0.2, "verdict": {"passed": True, "readout": "mlm", "beats": ["random"], "p": 0.004},
        "baselines": {"random": {"mean_pct": 0.1, "std_pct": 0.3, "z": 26.0, "p": 0.004}}}))
    out = tmp_path_factory.mktemp("browser-site") / "report"
    write_report(index, out, ReportConfig(contexts=3))
    return out, info


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("NEUROSEARCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _problems(browser: Chromium) -> list[str]:
    """Script errors and any request that is not for a local file."""
    found = []
    for event in browser.events:
        if event.get("method") == "Runtime.exceptionThrown":
            found.append(event["params"]["exceptionDetails"].get("text", "script error"))
        if event.get("method") == "Network.requestWillBeSent":
            url = event["params"]["request"]["url"]
            if not url.startswith(("file://", "data:")):
                found.append(f"fetched {url}")
    return found


def _rows(browser: Chromium) -> list[str]:
    return browser.evaluate("Array.from(document.querySelectorAll('#search-results tr')).map(r => r.textContent)")


def test_the_search_box_filters_clusters_and_neurons(browser: Chromium, site, tmp_path: Path):
    out, info = site
    browser.open((out / "index.html").as_uri())
    assert _problems(browser) == []
    assert _rows(browser) == [] and "Type a theme or a token" in browser.evaluate(
        "document.getElementById('search-count').textContent")
    token = info.top_tokens[0]
    browser.insert_text("#search", token)
    rows = _rows(browser)
    assert rows and all(token in row for row in rows)
    assert any(row.startswith(f"cluster k6/{info.id}") for row in rows)
    total = len(rows)
    shot = browser.screenshot(_shots(tmp_path) / "report-search.png")
    assert shot.stat().st_size > 5000
    browser.evaluate("var k = document.getElementById('search-kind'); k.value = 'cluster';"
                     "k.dispatchEvent(new Event('change'))")
    clusters = _rows(browser)
    assert clusters and len(clusters) < total and all(row.startswith("cluster") for row in clusters)
    browser.insert_text("#search", " zzzznothing")
    assert _rows(browser) == []
    assert browser.evaluate("document.getElementById('search-count').textContent").startswith("matching: 0 clusters")


def test_a_cluster_page_shows_its_tokens_and_verdict(browser: Chromium, site, tmp_path: Path):
    out, info = site
    browser.open((out / cluster_href(info.key)).as_uri())
    assert _problems(browser) == []
    shown = browser.evaluate("Array.from(document.querySelectorAll('table.toptokens td.mono')).map(td => td.textContent)")
    assert shown == info.top_tokens[: len(shown)] and len(shown) == min(50, len(info.top_tokens))
    verdict = browser.evaluate("(function () { var v = document.querySelector('.verdict');"
                               "return v && [v.dataset.verdict, v.querySelector('.badge').textContent,"
                               "getComputedStyle(v).borderLeftColor]; })()")
    assert verdict[:2] == ["pass", "passed"] and verdict[2] != "rgba(0, 0, 0, 0)"
    assert browser.evaluate("document.querySelectorAll('figure svg circle').length") == len(info.neurons)
    assert browser.evaluate("document.querySelectorAll('mark').length") > 0  # contexts from the corpus
    browser.screenshot(_shots(tmp_path) / "report-cluster.png", full_page=True)
    link = browser.evaluate("document.querySelector('#neurons + table a').href")
    browser.open(link)
    assert _problems(browser) == []
    target = browser.evaluate("document.querySelector('section:target h1').textContent")
    assert f"Neuron {info.neurons[0]}" in target
    browser.screenshot(_shots(tmp_path) / "report-neuron.png")
