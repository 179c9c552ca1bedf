"""``report``: the HTML site of an index -- what it shows, what it escapes, where it may write."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurosearch.cli.app import app
from neurosearch.index import Index
from neurosearch.report import ReportConfig, ReportError, write_report
from neurosearch.report.data import matching, verdict_of
from neurosearch.report.figures import cluster_neurons_svg
from neurosearch.report.html import cluster_href, e, neuron_href

runner = CliRunner()
EVIL = '<script>alert("x")</script> & <b>bold</b>'


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _result(neurons: list[str], key: str, passed: bool | None = None) -> dict:
    """A stored ablation result: as ``ablate`` wrote them before result format 2 (no verdict), or
    with ``passed`` given in today's contract, whose verdict passes or not."""
    if passed is None:
        return {
            "target": {"kind": "cluster", "id": key, "neurons": neurons},
            "tokens": ["monday", "tuesday"], "ablation": "mean", "head": "fitted", "sentences": 8, "masked_tokens": 9,
            "loss": 3.0, "loss_ablated": 3.3, "change_pct": 10.0, "control_change_pct": 0.5,
            "baselines": {name: {"mean_pct": 0.4, "std_pct": 0.2, "z": 48.0, "p": 0.001, "seeds": 5}
                          for name in ("random", "random_layer", "random_position")},
        }
    from neurosearch.format.results import (AblationResult, BaselineResult, MaskedLMMeasures, ReadoutResult,
                                                 TargetRecord, neuron_hash)
    from neurosearch.verdicts import verdict

    value = 10.0 if passed else 0.1
    baselines = [BaselineResult(name, 0.4, 0.2, 48.0, 0.001 if passed else 0.6, 1 / 21 if passed else 0.6, [0.4] * 20)
                 for name in ("random", "random_layer", "random_position")]
    readout = ReadoutResult("mlm", value, {b.kind: b for b in baselines}, verdict("mlm", value, baselines, 0.05),
                            MaskedLMMeasures("fitted", 3.0, 3.3, 9, 9, 0.5))
    target = TargetRecord("cluster", key, neurons, neuron_hash(neurons), ["monday", "tuesday"], "top tokens")
    return AblationResult(target, "mean", 0, 20, 0.05, 8, 64, {"monday": 5, "tuesday": 3}, {"mlm": readout}).to_json()


@pytest.fixture(scope="module")
def prepared(tiny_index: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A copy of the tiny index with a hostile LLM label and two stored results: one about cluster 0's
    neurons (shown), one about other neurons than cluster 1 has (not shown)."""
    from neurosearch.format.results import AblationResult
    from neurosearch.index.stored import store_ablation
    from neurosearch.labeling.llm import Label, save_labels

    copy = tmp_path_factory.mktemp("report-index") / "tiny"
    shutil.copytree(tiny_index, copy)
    index = Index.load(copy)
    method = index.search_method
    first, second = index.cluster(f"{method}/k6/0"), index.cluster(f"{method}/k6/1")
    store_ablation(index.state, AblationResult.from_json(_result(first.neurons, first.key, passed=True)))
    store_ablation(index.state, AblationResult.from_json(_result(
        second.neurons[:-1] + ["1:23" if "1:23" not in second.neurons else "0:23"], second.key, passed=True)))
    save_labels(copy / "labels.json", {f"cluster:{first.key}": Label(EVIL, "an <i>explanation</i>", "test-llm", "0", "llm")})
    return copy, {"first": first, "second": second}


@pytest.fixture(scope="module")
def site(prepared, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy, _ = prepared
    before = _hashes(copy)
    out = tmp_path_factory.mktemp("site") / "report"
    summary = write_report(Index.load(copy), out, ReportConfig(contexts=3))
    assert _hashes(copy) == before, "the report wrote into the index"
    assert summary.contexts and summary.clusters == 9 and summary.neurons == 48
    return out


def test_the_site_has_every_page_and_nothing_remote(site: Path, prepared):
    copy, _ = prepared
    index = Index.load(copy)
    for info in (index.cluster(f"{index.search_method}/k{k}/{c.id}") for k in index.ks
                 for c in index.clusters(index.search_method, k)):
        assert (site / cluster_href(info.key)).is_file()
    for flat in range(index.manifest.n_neurons):
        name = index.neuron_name(flat)
        page, anchor = neuron_href(name).split("#")
        assert f'id="{anchor}"' in (site / page).read_text(encoding="utf-8")
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', text), page  # no CDN, no remote anything
    units = json.loads((site / "assets" / "units.js").read_text().split("=", 1)[1].rstrip().rstrip(";"))
    assert {u["kind"] for u in units} == {"cluster", "neuron"} and len(units) == 9 + 48
    assert not list(site.parent.glob(".report.*")), "temporary folders left behind"


def test_outside_text_is_escaped(site: Path, prepared):
    _, units = prepared
    page = (site / cluster_href(units["first"].key)).read_text(encoding="utf-8")
    assert e(EVIL) in page and "an &lt;i&gt;explanation&lt;/i&gt;" in page
    for path in site.rglob("*.html"):
        assert "<script>alert" not in path.read_text(encoding="utf-8"), path
    assert '"theme":"<script>alert' in (site / "assets" / "units.js").read_text()  # data, shown with textContent


def test_a_cluster_page_shows_its_tokens_figure_contexts_and_matching_verification(site: Path, prepared):
    _, units = prepared
    first, second = units["first"], units["second"]
    page = (site / cluster_href(first.key)).read_text(encoding="utf-8")
    for token in first.top_tokens[:20]:
        assert f'<td class="mono">{e(token)}</td>' in page
    assert 'data-verdict="pass"' in page and "the verdict stored with the result" in page
    assert page.count("<circle") == len(first.neurons)
    assert "<mark>" in page  # contexts re-read from the tiny corpus
    other = (site / cluster_href(second.key)).read_text(encoding="utf-8")
    assert "data-verdict" not in other and "No stored verification about exactly these neurons" in other
    listing = (site / "clusters.html").read_text(encoding="utf-8")
    assert listing.count('class="badge pass"') == 1


def test_cluster_contexts_are_the_indexs_strongest_occurrences(prepared):
    from neurosearch.report.data import neuron_records
    from neurosearch.report.site import _neuron_refs, strongest

    copy, _ = prepared
    index = Index.load(copy)
    neurons = neuron_records(index, [index.neuron_name(f) for f in range(index.manifest.n_neurons)])
    for limit in (1, 3, 8):
        per_neuron = {name: _neuron_refs(data, limit) for name, data in neurons.items()}
        for c in index.clusters(index.search_method, 6):
            info = index.cluster(f"{index.search_method}/k6/{c.id}")
            expected = [occurrence.to_json() for occurrence in index.cluster_refs(info, limit)]
            found = strongest(info.neurons, per_neuron, limit)
            assert [(r["document"], r["position"]) for r in found] == [(r["document"], r["position"]) for r in expected]
            assert [r["z"] for r in found] == pytest.approx([r["z"] for r in expected], rel=1e-4)


def test_neuron_records_are_index_neuron_in_bulk(prepared):
    from neurosearch.report.data import neuron_records

    copy, _ = prepared
    index = Index.load(copy)
    names = [index.neuron_name(f) for f in range(0, index.manifest.n_neurons, 5)]
    bulk = neuron_records(index, names)
    assert index.neurons(names) == [index.neuron(name) for name in names]
    for name in names:
        assert bulk[name] == index.neuron(name).to_json()


def test_verdicts_from_stored_results():
    passed = verdict_of(_result(["0:1"], "x", passed=True))
    assert passed.passed is True and "beats 3/3 baselines" in passed.summary and "mlm readout" in passed.summary
    derived = verdict_of(_result(["0:1"], "x"))
    assert derived.passed is True and "Table 3" in derived.basis
    weak = _result(["0:1"], "x")
    weak["baselines"]["random"]["p"] = 0.2
    assert verdict_of(weak).passed is False and "beats 2/3" in verdict_of(weak).summary
    assert verdict_of({"target": {}}) is None
    assert verdict_of({"verdict": {"passed": "yes"}}) is None  # not a result: no target, nothing either way
    assert verdict_of(_result(["0:1"], "x", passed=False)).passed is False
    assert matching(_result(["0:1", "1:2"], "x"), ["1:2", "0:1"]) is not None
    assert matching(_result(["0:1"], "x"), ["0:1", "1:2"]) is None
    assert matching({"target": {"id": "x"}}, ["0:1"]) is None and matching("junk", []) is None


def test_fig5_svg_marks_indices_shared_by_layers():
    svg = cluster_neurons_svg(["0:5", "1:5", "1:9", "2:17"], 3, 24, href=lambda n: f"n/{n}")
    assert svg.count("<circle") == 4 and svg.count('fill="#f28e2b"') == 2
    assert svg.count("<polyline") == 1 and '<a href="n/1:9">' in svg


def test_where_a_report_may_go(prepared, tmp_path: Path):
    copy, _ = prepared
    index = Index.load(copy)
    for bad, fragment in [(copy / "site", "inside the index"), (copy, "inside the index"),
                          (copy.parent, "contains the index")]:
        with pytest.raises(ReportError, match=fragment):
            write_report(index, bad)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ReportError, match="not an earlier neurosearch report"):
        write_report(index, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportError, match="not a directory"):
        write_report(index, tmp_path / "file")
    out = tmp_path / "again"
    write_report(index, out, ReportConfig(neurons=False, contexts=0))
    (out / "stale.html").write_text("old")
    summary = write_report(index, out, ReportConfig(neurons=False, contexts=0))
    assert not (out / "stale.html").exists() and (out / ".neurosearch-report").is_file()
    assert summary.neurons == 0 and not list((out / "neuron").iterdir())
    for page in (out / "cluster").iterdir():
        assert 'href="../neuron/' not in page.read_text(encoding="utf-8"), page  # no links to missing pages
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "file", "mine"]


def test_cli_report(prepared, tmp_path: Path):
    copy, _ = prepared
    result = runner.invoke(app, ["report", "--index", str(copy), "--out", str(tmp_path / "r"), "--no-neurons",
                                 "--k", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["clusters"] == 3 and data["neurons"] == 0 and data["bytes"] > 0
    bad = runner.invoke(app, ["report", "--index", str(copy), "--out", str(copy / "x")])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1 and "inside the index" in bad.stderr
    bad = runner.invoke(app, ["report", "--index", str(copy), "--out", str(tmp_path / "r2"), "--k", "4"])
    assert bad.exit_code == 1 and "K=4" in bad.stderr
    assert not (tmp_path / "r2").exists()
