"""``write_report(index, out)``: a static HTML site of an index that opens from disk, no server.

Layout of ``out``::

    index.html               overview (model, corpus, methods, K, Table 3, figures) and the search box
    clusters.html            every cluster of the report, per method and K
    neurons.html             every neuron of the report
    cluster/<id>.html        one page per cluster (tokens, Fig. 5, neurons, contexts, verification)
    neuron/<L_B>.html        neurons B*64 .. B*64+63 of layer L, a section (anchor #nL_I) each
    assets/                  report.css, search.js, units.js (the search data)
    fig/                     PNG figures (distance curve; Fig. 3/4 when the index was evaluated)
    .neurosearch-report      marker: this folder is a report and may be replaced by the next one

The site is written into a temporary folder beside ``out`` and moved into place at the end, so
``out`` holds either the old report or the new one. ``out`` must lie outside the index (the
shipped index is read-only product), and an existing ``out`` is replaced only when it is an
earlier report (it has the marker) or empty.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from neurosearch.errors import NeurosearchError
from neurosearch.report import pages
from neurosearch.report.data import (
    ContextReader,
    evaluation_figures,
    evaluation_results,
    matching,
    neuron_records,
    table3,
    verdict_of,
)
from neurosearch.report.figures import cluster_neurons_svg
from neurosearch.report.html import NEURON_BLOCK, cluster_href, e, neuron_block, neuron_href, neuron_page_href

if TYPE_CHECKING:
    from neurosearch.index.index import Index

MARKER = ".neurosearch-report"
SEARCH_TOKENS = 10
"""Top tokens per unit in the search data."""


class ReportError(NeurosearchError):
    """The report cannot be written where it was asked to go."""


@dataclass(frozen=True)
class ReportConfig:
    """What the report covers."""

    methods: tuple[str, ...] | None = None
    """Profile methods whose clusters get pages (default: the index's search method; ``("all",)``: every one)."""
    ks: tuple[int, ...] | None = None
    """Cluster granularities (default: every K of the index)."""
    neurons: bool = True
    """One page per neuron of the index (else only the clusters' pages)."""
    contexts: int = 5
    """Activating contexts per page (re-read from the corpus when it is there)."""
    corpus: str | None = None
    """Corpus file to read contexts from (default: the index's own, when it can be found)."""

    def resolve(self, index: Index) -> tuple[list[str], list[int]]:
        """(methods, ks), checked against the index."""
        if self.contexts < 0:
            raise NeurosearchError(f"--contexts must be >= 0, got {self.contexts}")
        methods = list(index.methods) if self.methods == ("all",) else list(self.methods or [index.search_method])
        unknown = [m for m in methods if m not in index.methods]
        if unknown:
            raise NeurosearchError(f"method(s) {', '.join(unknown)} not in this index (has: {', '.join(index.methods)})")
        ks = list(self.ks or sorted(index.ks, key=lambda k: (k != index.default_k, k)))  # find's K first
        missing = [k for k in ks if k not in index.ks]
        if missing:
            raise NeurosearchError(f"K={missing[0]} is not in this index (has K = {', '.join(map(str, index.ks))})")
        return methods, ks


@dataclass
class ReportSummary:
    out: Path
    clusters: int
    neurons: int
    files: int
    bytes: int
    seconds: float
    contexts: bool
    """Whether the corpus was found and contexts were shown."""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "clusters": self.clusters, "neurons": self.neurons, "files": self.files,
                "bytes": self.bytes, "seconds": round(self.seconds, 2), "contexts": self.contexts,
                "notes": self.notes}


def check_destination(index: Index, out: Path) -> Path:
    """``out`` resolved; refuses the index itself, anything inside it or around it, and foreign folders."""
    target = Path(out).expanduser().resolve()
    home = Path(index.path).resolve()
    if target == home or home in target.parents:
        raise ReportError(f"--out {out} is inside the index {index.path}; the report must go elsewhere "
                          "(indexes are not written by report)")
    if target in home.parents:
        raise ReportError(f"--out {out} contains the index {index.path}; replacing it would delete the index")
    if target.exists():
        if not target.is_dir():
            raise ReportError(f"--out {out} exists and is not a directory")
        if not (target / MARKER).is_file() and any(target.iterdir()):
            raise ReportError(f"--out {out} exists and is not an earlier neurosearch report; choose an empty or new folder")
    return target


def write_report(index: Index, out: str | os.PathLike[str], config: ReportConfig | None = None,
                 log: Callable[[str], None] | None = None) -> ReportSummary:
    """Write the report of ``index`` to ``out`` (see the module docstring); returns what was written."""
    config = config or ReportConfig()
    started = time.time()
    methods, ks = config.resolve(index)
    target = check_destination(index, Path(out))
    say = (lambda message: log(f"{time.time() - started:5.1f} s  {message}")) if log else (lambda message: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        builder = _Builder(index, config, work, methods, ks, say)
        builder.build()
        (work / MARKER).write_text(json.dumps({"index": str(index.path), "methods": methods, "ks": ks}) + "\n",
                                   encoding="utf-8")
        _swap(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    files = [p for p in target.rglob("*") if p.is_file()]
    return ReportSummary(target, builder.cluster_count, builder.neuron_count, len(files),
                         sum(p.stat().st_size for p in files), time.time() - started, builder.reader.available,
                         builder.notes)


def _swap(work: Path, target: Path) -> None:
    """Move the finished ``work`` folder to ``target``, replacing an earlier report there."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _Builder:
    """Gathers the index's units, their contexts and verifications, and writes the pages."""

    def __init__(self, index: Index, config: ReportConfig, work: Path, methods: list[str], ks: list[int],
                 say: Callable[[str], None]):
        self.index, self.config, self.work, self.methods, self.ks, self.say = index, config, work, methods, ks, say
        self.reader = ContextReader(index, config.corpus)
        self.notes: list[str] = []
        self.name = Path(index.path).name
        self.cluster_count = self.neuron_count = 0

    def build(self) -> None:
        index = self.index
        for folder in ("assets", "cluster", "neuron", "fig"):
            (self.work / folder).mkdir(parents=True, exist_ok=True)
        self.say("reading clusters and neurons ...")
        infos = [index.cluster(f"{m}/k{k}/{c.id}") for m in self.methods for k in self.ks for c in index.clusters(m, k)]
        every = [index.neuron_name(flat) for flat in range(index.manifest.n_neurons)]
        neurons = neuron_records(index, every if self.config.neurons else sorted({n for i in infos for n in i.neurons}))
        limit = self.config.contexts
        per_neuron = {name: _neuron_refs(data, limit) for name, data in neurons.items()}
        cluster_refs = {info.key: strongest(info.neurons, per_neuron, limit) for info in infos}
        neuron_refs = per_neuron if self.config.neurons else {}
        wanted = {r["document"] for refs in (*cluster_refs.values(), *neuron_refs.values()) for r in refs}
        if wanted:
            self.say(f"reading contexts from {self.reader.looked_for} ...")
            self.reader.load(wanted)
        note = self._reader_note() if limit else None
        self.say(f"writing {len(infos)} cluster and {len(neuron_refs)} neuron pages ...")
        units = self._write_clusters(infos, neurons, cluster_refs, note)
        units += self._write_neurons(infos, neurons, neuron_refs, note)
        self._write("neurons.html", pages.neurons_listing([neurons[n] for n in neuron_refs], self.name))
        self._write_overview(units)

    def _write_clusters(self, infos: list[Any], neurons: dict[str, dict[str, Any]],
                        refs: dict[str, list[dict[str, Any]]], note: str | None) -> list[dict[str, Any]]:
        """Every cluster's page and the clusters listing; returns their search entries."""
        evaluated = evaluation_results(self.index)
        listing: list[tuple[str, int, list[dict[str, Any]]]] = []
        units = []
        for info in infos:
            results = self._verifications("cluster", info.key, info.neurons, evaluated.get(info.key))
            self._write_cluster(info, neurons, refs[info.key], results, note)
            if not listing or listing[-1][:2] != (info.method, info.k):
                listing.append((info.method, info.k, []))
            label = info.label or {}
            listing[-1][2].append({"key": info.key, "label": label.get("theme"), "source": label.get("source"),
                                   "size": len(info.neurons), "tokens": info.top_tokens,
                                   "verdict": _verdict_badge(results)})
            units.append(_unit("cluster", info.key, label.get("theme"), label.get("source"), info.top_tokens,
                               len(info.neurons), cluster_href(info.key),
                               info.key.split("/", 1)[1] if len(self.methods) == 1 else info.key))
        self.cluster_count = len(infos)
        self._write("clusters.html", pages.clusters_listing(listing, self.name))
        return units

    def _write_neurons(self, infos: list[Any], neurons: dict[str, dict[str, Any]],
                       refs: dict[str, list[dict[str, Any]]], note: str | None) -> list[dict[str, Any]]:
        """The neuron pages (``NEURON_BLOCK`` neurons each); returns their search entries."""
        membership: dict[str, list[Any]] = {}
        for info in infos:
            for name in info.neurons:
                membership.setdefault(name, []).append(info)
        blocks: dict[tuple[int, int], list[str]] = {}
        for name in refs:
            blocks.setdefault(neuron_block(name), []).append(name)
        per_layer = -(-self.index.manifest.neurons_per_layer // NEURON_BLOCK)
        units = []
        for (layer, block), names in blocks.items():
            sections = []
            for name in names:
                data = neurons[name]
                results = self._verifications("neuron", name, [name], None)
                records = [self.reader.record(r) for r in refs[name]]
                sections.append(pages.neuron_section(
                    data, clusters=[(i.key, i.label or {}) for i in membership.get(name, [])],
                    verification=pages.verification_html(results, f"neurosearch ablate --neurons {name}"),
                    contexts=pages.contexts_html(records, reader_note=note, with_neuron=False),
                    scores=self.index.unit_scores.of("neuron", name)))
                units.append(_unit("neuron", name, data.get("label"), data.get("label_source"),
                                   data.get("top_tokens", []), 1, neuron_href(name)))
            self._write(neuron_page_href(layer, block), pages.neuron_block_page(
                layer, block, names, sections, blocks=per_layer, index_name=self.name))
        self.neuron_count = len(refs)
        return units

    # -- pieces ---------------------------------------------------------------------------------
    def _reader_note(self) -> str | None:
        if self.reader.available:
            return None
        if self.reader.error:
            self.notes.append(f"contexts not shown: reading {self.reader.path} failed ({self.reader.error})")
        else:
            self.notes.append(f"contexts not shown: the corpus was looked for at {self.reader.looked_for} "
                              "(relative to the working directory and the index); pass --corpus PATH")
        return self.notes[-1]

    def _verifications(self, kind: str, key: str, neurons: list[str], evaluated: Any) -> list[tuple[str, Any]]:
        found = []
        stored = self.index.ablation_for(kind, key, neurons).current  # only a result about these neurons
        if stored is not None:
            found.append(("neurosearch ablate (stored result)", stored))
        evaluated = matching(evaluated, neurons)
        if evaluated is not None:
            found.append(("neurosearch evaluate (Table 3 run)", evaluated))
        return found

    def _write_cluster(self, info: Any, neurons: dict[str, dict[str, Any]], refs: list[dict[str, Any]],
                       results: list[tuple[str, Any]], note: str | None) -> None:
        manifest = self.index.manifest
        linked = self.config.neurons
        figure = cluster_neurons_svg(info.neurons, manifest.n_layers, manifest.neurons_per_layer,
                                     href=(lambda name: "../" + neuron_href(name)) if linked else None)
        members = [neurons[name] for name in info.neurons]
        records = [self.reader.record(r) for r in refs]
        command = f"neurosearch ablate {info.key}"
        self._write(cluster_href(info.key), pages.cluster_page(
            info, figure=figure, members=members, verification=pages.verification_html(results, command),
            contexts=pages.contexts_html(records, reader_note=note, with_neuron=True, linked=linked),
            index_name=self.name, linked=linked, scores=self.index.unit_scores.of("cluster", info.key)))

    def _write_overview(self, units: list[dict[str, Any]]) -> None:
        from neurosearch import plots
        from neurosearch.experiments.evaluation import distance_curves
        from neurosearch.report.assets import CSS, SEARCH_JS

        self._write("assets/report.css", CSS)
        self._write("assets/search.js", SEARCH_JS)
        data = json.dumps(units, ensure_ascii=True, separators=(",", ":"))
        self._write("assets/units.js", f"window.NEUROSEARCH_UNITS = {data};\n")
        figures = []
        try:
            plots.plot_distance_curve(distance_curves(self.index, self.index.methods), self.work / "fig" / "distance_curve.png")
            figures.append(("Within-cluster distance against K (Fig. 2)", "fig/distance_curve.png"))
        except (NeurosearchError, KeyError, OSError) as exc:
            self.notes.append(f"no distance curve: {exc}")
        for path in evaluation_figures(self.index):
            shutil.copyfile(path, self.work / "fig" / path.name)
            figures.append((_figure_title(path.name), f"fig/{path.name}"))
        listed = (f"{self.cluster_count} clusters ({', '.join(self.methods)}; K = {', '.join(map(str, self.ks))}) "
                  f"and {self.neuron_count} neurons")
        self._write("index.html", pages.overview_page(self.index.info().to_json(), table3_rows=table3(self.index),
                                                      figures=figures, listed=e(listed), index_name=self.name,
                                                      scores=self.index.unit_scores.stored))

    def _write(self, relative: str, text: str) -> None:
        (self.work / relative).write_text(text, encoding="utf-8")


def _neuron_refs(data: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """A neuron's ``limit`` strongest stored activations, with their z and the neuron's name."""
    std = max(float(data.get("std") or 0.0), 1e-6)
    refs = sorted(data.get("top_activations", []), key=lambda r: -r["value"])[:limit]
    return [{**r, "z": (r["value"] - float(data.get("mean") or 0.0)) / std, "neuron": data["id"]} for r in refs]


def strongest(neurons: list[str], per_neuron: dict[str, list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """A cluster's ``limit`` strongest occurrences by z over its neurons' (deduplicated by position).

    The same occurrences as ``Index.cluster_refs``, from each neuron's ``limit`` strongest only:
    z rises with the value within a neuron, so an occurrence outside a neuron's top ``limit`` has
    ``limit`` distinct occurrences above it and cannot make the cluster's top ``limit``.
    """
    best: dict[tuple[int, int], dict[str, Any]] = {}
    for name in neurons:
        for ref in per_neuron[name]:
            key = (ref["document"], ref["position"])
            if key not in best or best[key]["z"] < ref["z"]:
                best[key] = ref
    return sorted(best.values(), key=lambda r: -r["z"])[:limit]


def _unit(kind: str, key: str, label: str | None, source: str | None, tokens: list[str], size: int,
          href: str, shown: str | None = None) -> dict[str, Any]:
    """One entry of the search data (``assets/units.js``); ``shown`` is the id as listed."""
    return {"kind": kind, "id": key, "shown": shown or key, "theme": label or "", "source": source or "",
            "tokens": list(tokens[:SEARCH_TOKENS]), "size": size, "href": href}


def _figure_title(name: str) -> str:
    """``fig4_losses_filter-smooth-tfidf_k200.png`` -> "Fig. 4: filter+smooth+tfidf, K=200"."""
    stem = name.rsplit(".", 1)[0]
    if stem.startswith("fig4_losses_") and "_k" in stem:
        method, k = stem[len("fig4_losses_"):].rsplit("_k", 1)
        readout = "mlm"
        for name in ("embedding", "mlm-context"):  # fig4_losses_<readout>_<method>: readouts other than mlm
            if method.startswith(f"{name}_"):
                readout, method = name, method[len(name) + 1:]
        what = "displacement ratio" if readout == "embedding" else "loss change"
        return f"Fig. 4: {what} per cluster ({readout} readout), {method.replace('-', '+')}, K={k}"
    if stem.startswith("fig3"):
        return "Fig. 3: top tokens of the tightest clusters (PCA of token embeddings)"
    return stem


def _verdict_badge(results: list[tuple[str, Any]]) -> str:
    for _, result in results:
        verdict = verdict_of(result)
        if verdict is not None and verdict.passed is not None:
            return '<span class="badge pass">passed</span>' if verdict.passed else '<span class="badge">not passed</span>'
    return '<span class="muted">-</span>'
