"""The report's pages as HTML strings: overview, one per cluster, one per neuron, two listings.

Inputs are plain data (``ClusterInfo``, the dicts of ``Index.neuron``, stored results); every
outside string is escaped here with :func:`~neurosearch.report.html.e`.
"""

from __future__ import annotations

from typing import Any

from neurosearch.report.data import Verdict, verdict_of
from neurosearch.report.html import (
    cluster_href,
    context_html,
    e,
    facts,
    neuron_anchor,
    neuron_href,
    neuron_page_href,
    number,
    page,
    table,
    theme_html,
    token_chips,
    token_html,
    token_table,
)

ROW_TOKENS = 10
"""Top tokens shown per row of a listing."""
NEURON_TOKENS = 30
"""Top tokens (with weights) on a neuron's page."""


def _neuron_link(name: str, root: str = "../", linked: bool = True) -> str:
    """A neuron's id, linked to its section when the report has neuron pages."""
    if not linked:
        return f'<span class="mono">{e(name)}</span>'
    return f'<a class="mono" href="{root}{neuron_href(name)}">{e(name)}</a>'


def _cluster_link(key: str, root: str = "../", text: str | None = None) -> str:
    return f'<a class="mono" href="{root}{cluster_href(key)}">{e(text or key)}</a>'


# -- verification ---------------------------------------------------------------------------------
def verification_html(results: list[tuple[str, Any]], command: str) -> str:
    """Stored verifications (``AblationResult``, already matched to the unit's neurons), each with its verdict."""
    if not results:
        return (f'<p class="muted">No stored verification about exactly these neurons. Run '
                f"<code>{e(command)}</code> to test whether ablating them matters.</p>")
    return "".join(_one_verification(origin, result) for origin, result in results)


def _one_verification(origin: str, result: Any) -> str:
    verdict: Verdict | None = verdict_of(result)
    state = "none" if verdict is None or verdict.passed is None else ("pass" if verdict.passed else "fail")
    badge = {"pass": '<span class="badge pass">passed</span>', "fail": '<span class="badge fail">not passed</span>',
             "none": '<span class="badge">no verdict</span>'}[state]
    lines = [f'<div class="verdict {state}" data-verdict="{state}"><strong>{e(origin)}</strong> {badge}']
    if verdict is not None:
        lines.append(f"<div>{e(verdict.summary)}</div><div class=\"note\">{e(verdict.basis)}</div>")
    lines.append(f'<div class="note">{e(result.ablation)} ablation, {e(result.sentences)} sentences, '
                 f"{e(len(result.target.neurons))} neurons, {e(result.draws)} draws per baseline</div>")
    for name, readout in result.readouts.items():
        ratio = name == "embedding"
        rows = [["<strong>target</strong>", e(number(readout.value, 3 if ratio else 2, not ratio)), "", "", "", ""]]
        for kind, b in readout.baselines.items():
            rows.append([e(kind), e(number(b.mean, 3 if ratio else 2, not ratio)), e(number(b.std, 3 if ratio else 2)),
                         e(number(b.z, 1)), e(number(b.p, 3)), e(number(b.p_empirical, 3))])
        lines.append(f'<div class="note">{e(name)} readout: {e(readout.statistic)}</div>')
        lines.append(table(["condition", "ratio" if ratio else "% change", "sd", "z", "p", "rank p"], rows,
                           ["", "num", "num", "num", "num", "num"]))
    if result.target.tokens:
        lines.append(f'<div class="note">target tokens: {e(" ".join(result.target.tokens[:30]))}</div>')
    lines.extend(f'<div class="note">{e(note)}</div>' for note in result.notes)
    lines.append("</div>")
    return "".join(lines)


# -- contexts -------------------------------------------------------------------------------------
def contexts_html(records: list[dict[str, Any]], *, reader_note: str | None, with_neuron: bool,
                  linked: bool = True) -> str:
    if not records:
        return '<p class="muted">No stored activations.</p>'
    headers = (["neuron"] if with_neuron else []) + ["activation", "z", "context", "document:position"]
    classes = ([""] if with_neuron else []) + ["num", "num", "", "muted mono"]
    rows = []
    for record in records:
        row = [_neuron_link(record["neuron"], linked=linked)] if with_neuron else []
        row += [number(record.get("value"), 3), number(record.get("z"), 1), context_html(record),
                e(f"{record.get('document')}:{record.get('position')}")]
        rows.append(row)
    note = f'<p class="note">{e(reader_note)}</p>' if reader_note else ""
    return note + table(headers, rows, classes)


# -- pages ----------------------------------------------------------------------------------------
def score_text(scores: dict[str, Any] | None) -> str:
    """A unit's explanation scores in words (HTML-escaped)."""
    if not scores:
        return e("not scored (neurosearch score)")
    def shown(value: Any) -> str:
        return "undefined" if value is None else f"{value:.2f}"
    return e(f"simulation {shown(scores.get('simulation_score'))} (top and random windows "
             f"{shown(scores.get('simulation_top_random'))}; another unit's explanation "
             f"{shown(scores.get('calibration_shuffled'))})"
             + (f"; detection AUC {shown(scores.get('detection_auc'))} (another unit's theme "
                f"{shown(scores.get('calibration_other_theme'))})" if "detection_auc" in scores else ""))


def scores_html(stored: Any) -> str:
    """The distribution of the stored explanation scores per group of units, with the calibration row and
    a histogram of each group's simulation scores."""
    if stored is None:
        return ('<p class="note">No explanation scores: <code>neurosearch score</code> measures how well each '
                "unit's top tokens predict its activations on held-out text.</p>")
    about = stored.about
    rows = []
    names = {"simulation_score": "simulation (all tokens)", "simulation_top_random": "simulation (top + random windows)",
             "calibration_shuffled": "calibration: another unit's explanation"}
    for group, scores in stored.summary.items():
        shown = {"neurons": "neurons", "tree": "tree nodes"}.get(group, f"K={group[1:]} clusters")
        for column, name in names.items():
            s = scores.get(column, {})
            rows.append([e(shown), e(name), e(f"{s.get('defined', 0):,}/{s.get('units', 0):,}"),
                         e(number(s.get("median"))), e(f"{number(s.get('q1'))} to {number(s.get('q3'))}"),
                         e(number(s.get("share_at_least_0.5")))])
            shown = ""
    column = stored.columns.index("simulation_score")
    bars = []
    for group in stored.summary:
        prefix = "neuron:" if group == "neurons" else None
        values = [v[column] for key, v in stored.units.items() if v[column] is not None and (
            key.startswith(prefix) if prefix else f"/{group}/" in key)]
        bars.append(_histogram(group, values))
    return "".join([
        f'<p class="note">Correlation between each unit\'s simulated activations (its first '
        f'{e(about.get("config", {}).get("top_tokens"))} top tokens\' weights) and its real ones on '
        f'{e(about.get("tokens"))} held-out tokens of {e(about.get("corpus"))} ({e(about.get("documents"))}). '
        "The calibration rows score each unit with another unit's explanation: they sit near 0.</p>",
        table(["units", "score", "scored", "median", "quartiles", "share >= 0.5"], rows),
        '<div class="grid2">', *bars, "</div>"])


def _histogram(group: str, values: list[float]) -> str:
    """An inline SVG histogram of scores from -0.2 to 1 in bins of 0.05."""
    edges = [-0.2 + 0.05 * i for i in range(25)]
    counts = [0] * 24
    for value in values:
        counts[min(23, max(0, int((value + 0.2) / 0.05)))] += 1
    top = max(counts) or 1
    bars = "".join(f'<rect x="{10 + 12 * i}" y="{90 - 80 * c / top:.1f}" width="10" height="{80 * c / top:.1f}" '
                   f'fill="#4a7ab5"><title>{edges[i]:.2f} to {edges[i] + 0.05:.2f}: {c}</title></rect>'
                   for i, c in enumerate(counts))
    name = {"neurons": "neurons", "tree": "tree nodes"}.get(group, f"K={group[1:]} clusters")
    axis = ('<line x1="10" y1="90" x2="298" y2="90" stroke="#888"/>'
            '<text x="10" y="104" font-size="10">-0.2</text><text x="58" y="104" font-size="10">0</text>'
            '<text x="178" y="104" font-size="10">0.5</text><text x="286" y="104" font-size="10">1</text>')
    return (f'<figure><svg viewBox="0 0 310 110" width="310" height="110" role="img" '
            f'aria-label="simulation scores of {e(name)}">{bars}{axis}</svg>'
            f"<figcaption>{e(name)}: {len(values):,} scored</figcaption></figure>")


def cluster_page(info: Any, *, figure: str, members: list[dict[str, Any]], contexts: str, verification: str,
                 index_name: str, linked: bool = True, scores: dict[str, Any] | None = None) -> str:
    label = info.label or {}
    short = info.key.split("/", 1)[1]
    explanation = f'<p><em>{e(label.get("explanation"))}</em></p>' if label.get("explanation") else ""
    layers = ", ".join(f"{layer}: {count}" for layer, count in sorted(info.layer_sizes.items()))
    body = [
        f'<h1>Cluster <span class="mono">{e(short)}</span> {theme_html(label.get("theme"), label.get("source"))}</h1>',
        explanation,
        facts([
            ("id", f'<code>{e(info.key)}</code>'),
            ("method, K", e(f"{info.method}, K={info.k}")),
            ("neurons", e(f"{len(info.neurons)}" + (f" (refinement dropped {len(info.dropped)})" if info.dropped else ""))),
            ("neurons per layer", e(layers)),
            ("pairwise distance", e(f"average {number(info.avg_distance)}, max {number(info.max_distance)}")),
            ("explanation score", score_text(scores)),
            ("trace it", f'<code>neurosearch trace "YOUR TEXT" --unit {e(info.key)}</code>'),
        ]),
        '<h2 id="verification">Verification</h2>',
        verification,
        '<h2 id="tokens">Top tokens</h2>',
        '<p class="note">The cluster\'s mean profile over its neurons (weights of the profile method).</p>',
        token_table(info.top_tokens, info.top_weights),
        '<h2 id="layers">Neurons by layer (Fig. 5)</h2>',
        '<p class="note">Bars: neurons per layer. Dots: each neuron at (layer, index); orange dots share their '
        'index with another layer.' + (' Click a dot for its neuron.' if linked else '') + '</p>',
        f"<figure>{figure}</figure>",
        '<h2 id="neurons">Neurons</h2>',
        table(["neuron", "theme", "top tokens"],
              [[_neuron_link(m["id"], linked=linked), theme_html(m["label"], m["label_source"]),
                f'<span class="mono">{" ".join(map(token_html, m["top_tokens"][:ROW_TOKENS]))}</span>'] for m in members]),
        '<h2 id="contexts">Strongest activations</h2>',
        '<p class="note">The highest z-scores among the member neurons\' stored top activations '
        "(z = (activation - corpus mean) / corpus std of that neuron); not necessarily on the top tokens.</p>",
        contexts,
    ]
    return page(f"cluster {info.key}", "".join(body), index_name=index_name, depth=1)


def neuron_section(data: dict[str, Any], *, clusters: list[tuple[str, dict[str, Any]]], contexts: str,
                   verification: str, scores: dict[str, Any] | None = None) -> str:
    """One neuron: its theme, facts, verification, top tokens and strongest activations."""
    from neurosearch.ids import split_neuron, unit_noun

    name = data["id"]
    layer, position = split_neuron(name)
    noun = unit_noun(name)
    in_clusters = ", ".join(
        f'{_cluster_link(key, text=key.split("/", 1)[1])} {theme_html(label.get("theme"), label.get("source"))}'
        for key, label in clusters) or '<span class="muted">none listed in this report</span>'
    body = [
        f'<section class="neuron" id="{e(neuron_anchor(name))}">',
        f'<h1>{noun.capitalize()} <span class="mono">{e(name)}</span> {theme_html(data.get("label"), data.get("label_source"))}</h1>',
        facts([
            ("layer, index", e(f"layer {layer}, {'SAE feature' if noun == 'feature' else 'index'} {position}")),
            ("corpus mean, std", e(f"{number(data.get('mean'), 4)}, {number(data.get('std'), 4)}")),
            ("in clusters", in_clusters),
            ("explanation score", score_text(scores)),
            ("trace it", f'<code>neurosearch trace "YOUR TEXT" --unit {e(name)}</code>'),
        ]),
        "<h2>Verification</h2>",
        verification,
        f'<h2>Top tokens <span class="muted">({e(data.get("method"))})</span></h2>',
        token_chips(data.get("top_tokens", []), data.get("top_weights", []), limit=NEURON_TOKENS),
        "<h2>Strongest activations</h2>",
        contexts,
        "</section>",
    ]
    return "".join(body)


def neuron_block_page(layer: int, block: int, names: list[str], sections: list[str], *, blocks: int,
                      index_name: str) -> str:
    """The page holding a run of neurons of one layer, with links between neighbouring pages."""
    first, last = names[0], names[-1]
    nav = [f'<a href="{neuron_page_href(layer, block - 1).split("/")[1]}">previous</a>' if block > 0 else "",
           f'<a href="{neuron_page_href(layer, block + 1).split("/")[1]}">next</a>' if block + 1 < blocks else ""]
    jump = " ".join(f'<a class="mono" href="#{e(neuron_anchor(n))}">{e(n.split(":")[1])}</a>' for n in names)
    head = (f'<p class="note">Neurons {e(first)} to {e(last)} of layer {layer}, one section each. '
            f'{" · ".join(x for x in nav if x)}</p><p class="note">{jump}</p>'
            '<p class="note">Strongest activations: the neuron\'s largest activations in the corpus, with '
            "z = (activation - corpus mean) / corpus std; not necessarily on its top tokens (those rank tokens by "
            "their mean activation).</p>")
    return page(f"neurons {first} to {last}", head + "".join(sections), index_name=index_name, depth=1)


def clusters_listing(groups: list[tuple[str, int, list[dict[str, Any]]]], index_name: str) -> str:
    """Every cluster in the report, one table per (method, K)."""
    body = ["<h1>Clusters</h1>", '<p class="note">Verdict: of the stored verification about exactly the cluster\'s '
            "neurons (<code>evaluate</code> or <code>ablate</code>); a result without a stored verdict is judged by "
            "Table 3's criterion. -: none stored.</p>"]
    for method, k, rows in groups:
        body.append(f'<h2 id="{e(method)}-k{k}">{e(method)}, K={k}</h2>')
        body.append(table(
            ["cluster", "theme", "neurons", "verdict", "top tokens"],
            [[_cluster_link(r["key"], "", r["key"].split("/", 1)[1]), theme_html(r["label"], r["source"]),
              e(r["size"]), r["verdict"], f'<span class="mono">{e(" ".join(r["tokens"][:ROW_TOKENS]))}</span>']
             for r in rows],
            ["", "", "num", "", ""]))
    return page("clusters", "".join(body), index_name=index_name)


def neurons_listing(rows: list[dict[str, Any]], index_name: str) -> str:
    if not rows:
        return page("neurons", '<h1>Neurons</h1><p class="muted">This report was written without neuron pages '
                    "(<code>--no-neurons</code>).</p>", index_name=index_name)
    body = ["<h1>Neurons</h1>",
            table(["neuron", "theme", "top tokens"],
                  [[_neuron_link(r["id"], ""), theme_html(r["label"], r["label_source"]),
                    f'<span class="mono">{" ".join(map(token_html, r["top_tokens"][:ROW_TOKENS]))}</span>'] for r in rows])]
    return page("neurons", "".join(body), index_name=index_name)


def overview_page(info: dict[str, Any], *, table3_rows: list[dict[str, str]], figures: list[tuple[str, str]],
                  listed: str, index_name: str, scores: Any = None) -> str:
    corpus = info.get("corpus") or {}
    model = info.get("model") or {}
    concepts = info.get("concepts")
    rows = [
        ("model", e(f"{model.get('id')} (weights {str(model.get('weights_sha256', ''))[:12]})")),
        ("neurons", e(f"{info.get('site')}: {info.get('layers')} layers x {info.get('neurons_per_layer')} = "
                      f"{info.get('neurons')}")),
        ("corpus", e(f"{corpus.get('source')} ({corpus.get('documents')} documents, {corpus.get('tokens')} tokens)")),
        ("kept tokens", e(f"{info.get('tokens_kept')} (count >= {info.get('min_count')})")),
        ("methods", e(", ".join(info.get("methods", []))) + f' <span class="muted">(find searches '
                    f'{e(info.get("search_method"))})</span>'),
        ("K", e(", ".join(map(str, info.get("ks", [])))) + e("  (refined)" if info.get("refined") else "  (unrefined)")),
        ("WordNet", e(f"{concepts['count']} concepts" if concepts else "no concept table")),
        ("LLM labels", e(info.get("labels"))),
        ("MLM head", e({"model": "the model's own", "fitted": "fitted (fit-head)"}.get(str(info.get("mlm_head")), "none"))),
        ("in this report", listed),
    ]
    body = [
        f"<h1>Index <span class=\"mono\">{e(index_name)}</span></h1>",
        facts(rows),
        '<div class="search" id="search-box"><h2 style="margin-top:0">Search clusters and neurons</h2>'
        '<input type="search" id="search" placeholder="theme or token, e.g. monday" autocomplete="off" '
        'aria-label="filter clusters and neurons by theme and top tokens">'
        '<label>show <select id="search-kind"><option value="all">all</option><option value="cluster">clusters'
        '</option><option value="neuron">neurons</option></select></label>'
        '<p class="note">Every word typed must appear in the id, theme or top tokens.</p>'
        '<div id="search-count"></div>'
        '<table class="results" id="search-table"><thead><tr><th>unit</th><th>theme</th><th class="num">size</th><th>top tokens</th>'
        '</tr></thead><tbody id="search-results"></tbody></table>'
        '<noscript><p>The search needs JavaScript; the <a href="clusters.html">cluster</a> and '
        '<a href="neurons.html">neuron</a> listings do not.</p></noscript></div>',
        '<h2 id="table3">Table 3: the effect of ablating each cluster, per readout</h2>',
        _table3_html(table3_rows),
        '<h2 id="scores">Explanation scores</h2>',
        scores_html(scores),
    ]
    if figures:
        first = figures[0]
        body.append(f'<h2 id="figures">{e(first[0])}</h2><figure class="wide"><img src="{e(first[1])}" '
                    f'alt="{e(first[0])}"></figure>')
    if figures[1:]:
        body.append('<h2>Figures of the stored evaluation</h2><p class="note">As drawn by '
                    "<code>neurosearch evaluate</code>; click one for full size.</p><div class=\"grid2\">")
        body.extend(f'<figure><a href="{e(image)}"><img src="{e(image)}" alt="{e(title)}"></a>'
                    f"<figcaption>{e(title)}</figcaption></figure>" for title, image in figures[1:])
        body.append("</div>")
    return page("overview", "".join(body), index_name=index_name, scripts=("assets/units.js", "assets/search.js"))


_LEGACY_TABLE3 = {"change_pct": "mean", "random_pct": "random", "random_layer_pct": "random_layer",
                  "random_position_pct": "random_position", "control_change_pct": "control"}
"""Columns of a table3.csv written before result format 2 (masked-LM readout only)."""


def _table3_html(rows: list[dict[str, str]]) -> str:
    if not rows:
        return '<p class="muted">Not evaluated: run <code>neurosearch evaluate</code> for the paper\'s Table 3.</p>'
    columns = [("readout", "readout"), ("method", "method"), ("k", "K"), ("clusters", "clusters"),
               ("mean", "cluster mean"), ("median", "cluster median"), ("random", "random"),
               ("random_layer", "random_layer"), ("random_position", "random_position"),
               ("beats_all_share", "share beating all (t p)"), ("passed_share", "share passed"),
               ("control", "control tokens")]
    text = ("readout", "method", "k", "clusters")
    cells = []
    for row in rows:
        row = {_LEGACY_TABLE3.get(key, key): value for key, value in row.items()}
        row.setdefault("readout", "mlm")
        line = []
        for key, _ in columns:
            value = row.get(key)
            line.append(e(value) if key in text else e(number(value, 3 if key.endswith("_share") else 2)))
        cells.append(line)
    return (table([e(title) for _, title in columns], cells, ["", "", "num", "num"] + ["num"] * 8)
            + '<p class="note">Per readout (mlm: % change of the masked-LM loss on each cluster\'s target tokens; '
              "embedding: sentence-embedding displacement on target sentences over control sentences), the mean and "
              "median over clusters beside random neuron sets of the same size; share beating all: clusters above "
              "every baseline's mean with t p &lt; 0.05 (the paper's criterion); share passed: clusters whose "
              "verdict passed (t and rank p, 20 draws per baseline).</p>")
