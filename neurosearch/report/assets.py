"""The report's stylesheet and its one script (written beside the pages; no CDN, works offline).

The script filters the units listed in ``assets/units.js`` (``window.NEUROSEARCH_UNITS``, loaded
with a plain ``<script src>``, which browsers allow from ``file://`` where ``fetch`` is not).
Every string it shows is set with ``textContent``, never as HTML.
"""

CSS = """
:root { --fg: #1d232a; --muted: #5b6670; --line: #d9dee3; --bg: #ffffff; --panel: #f5f7f9;
        --accent: #1f5fa8; --mark: #ffe27a; --pass: #1d7a3a; --fail: #a33a2a; --auto: #6b5e00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header.top { background: #18324f; color: #fff; padding: 0.6rem 1.5rem; display: flex; gap: 1.5rem;
             align-items: baseline; flex-wrap: wrap; }
header.top a { color: #fff; text-decoration: none; font-weight: 600; }
header.top .index { color: #b9c9da; font-size: 0.9em; }
main { max-width: 1150px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; margin: 0.6rem 0 0.2rem; }
h2 { font-size: 1.15rem; margin: 1.8rem 0 0.5rem; border-bottom: 1px solid var(--line); padding-bottom: 0.2rem; }
a { color: var(--accent); }
.muted, .note { color: var(--muted); }
.note { font-size: 0.9em; }
code, .mono, .tok { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.4rem 0; }
th, td { text-align: left; padding: 0.25rem 0.6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { background: none; width: 11rem; color: var(--muted); font-weight: 500; }
.badge { display: inline-block; font-size: 0.75rem; font-weight: 600; padding: 0.05rem 0.45rem; border-radius: 0.6rem;
         border: 1px solid currentColor; vertical-align: middle; margin-left: 0.4rem; white-space: nowrap; }
.badge.auto { color: var(--auto); }
.badge.llm { color: var(--accent); }
.badge.pass { color: #fff; background: var(--pass); border-color: var(--pass); }
.badge.fail { color: #fff; background: var(--fail); border-color: var(--fail); }
.theme { font-weight: 600; }
.tokens { display: flex; flex-wrap: wrap; gap: 0.3rem 0.35rem; margin: 0.3rem 0; }
.tok { background: var(--panel); border: 1px solid var(--line); border-radius: 0.3rem; padding: 0 0.35rem; }
.tok i { color: var(--muted); font-size: 0.8em; font-style: normal; margin-left: 0.3rem; }
.bar { display: inline-block; height: 0.65rem; background: #7aa7d6; vertical-align: middle; margin-right: 0.4rem; }
.bar.neg { background: #e3a49a; }
.ctx { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.88em; }
mark { background: var(--mark); padding: 0 0.1rem; font-weight: 700; }
.verdict { border: 1px solid var(--line); border-left: 5px solid var(--muted); padding: 0.5rem 0.8rem; margin: 0.5rem 0;
           background: var(--panel); }
.verdict.pass { border-left-color: var(--pass); }
.verdict.fail { border-left-color: var(--fail); }
.search { background: var(--panel); border: 1px solid var(--line); padding: 0.8rem 1rem; margin: 1rem 0; }
.search input[type=search] { font-size: 1rem; padding: 0.4rem 0.6rem; width: min(34rem, 100%);
                             border: 1px solid #9aa6b1; border-radius: 0.3rem; }
.search label { margin-left: 0.8rem; color: var(--muted); }
table.results td:first-child { white-space: nowrap; }
#search-count { margin: 0.4rem 0; color: var(--muted); }
figure { margin: 0.5rem 0; }
figure img { max-width: 100%; border: 1px solid var(--line); }
figure.wide img { max-width: 860px; }
figcaption { color: var(--muted); font-size: 0.9em; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
section.neuron { border-top: 3px solid var(--line); margin-top: 2.2rem; padding-top: 0.4rem; }
section.neuron:target { background: #fffbea; box-shadow: 0 0 0 0.6rem #fffbea; }
section.neuron h2 { font-size: 1.05rem; margin-top: 1.2rem; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1rem; }
"""

SEARCH_JS = r"""
(function () {
  "use strict";
  var units = window.NEUROSEARCH_UNITS || [];
  var LIMIT = 200;
  var box = document.getElementById("search");
  var kind = document.getElementById("search-kind");
  var body = document.getElementById("search-results");
  var count = document.getElementById("search-count");
  var results = document.getElementById("search-table");
  if (!box || !body) { return; }
  units.forEach(function (u) {
    u.hay = (u.id + " " + u.theme + " " + u.tokens.join(" ")).toLowerCase();
    u.themeWords = u.theme.toLowerCase().split(/[\s\/,]+/);
    u.shown = u.shown || u.id;
  });

  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }

  // how well a unit matches one term: an exact top token ranks by its place, a theme word next,
  // then any substring of the id, theme or tokens; -1 when the term is not there at all
  function termRank(u, term) {
    var at = u.tokens.indexOf(term);
    if (at >= 0) { return at; }
    if (u.themeWords.indexOf(term) >= 0) { return 2.5; }
    return u.hay.indexOf(term) >= 0 ? 20 : -1;
  }

  function render() {
    var terms = box.value.toLowerCase().split(/\s+/).filter(function (t) { return t.length > 0; });
    var wanted = kind ? kind.value : "all";
    while (body.firstChild) { body.removeChild(body.firstChild); }
    if (results) { results.style.display = terms.length ? "" : "none"; }
    if (!terms.length) {
      count.textContent = "Type a theme or a token to filter " + units.length + " units.";
      return;
    }
    var hits = [];
    units.forEach(function (u, order) {
      if (wanted !== "all" && u.kind !== wanted) { return; }
      var rank = 0;
      for (var i = 0; i < terms.length; i++) {
        var r = termRank(u, terms[i]);
        if (r < 0) { return; }
        rank += r;
      }
      hits.push({unit: u, rank: rank, order: order});
    });
    hits.sort(function (a, b) { return a.rank - b.rank || a.order - b.order; });
    hits.slice(0, LIMIT).forEach(function (hit) {
      var u = hit.unit;
      var row = document.createElement("tr");
      row.className = "hit " + u.kind;
      var td = document.createElement("td");
      var a = document.createElement("a");
      a.href = u.href;
      a.textContent = u.kind + " " + u.shown;
      td.appendChild(a);
      row.appendChild(td);
      var theme = cell(row, u.theme, "theme");
      if (u.source === "fallback") {
        var badge = document.createElement("span");
        badge.className = "badge auto";
        badge.textContent = "auto";
        theme.appendChild(badge);
      }
      cell(row, String(u.size), "num");
      cell(row, u.tokens.join(" "), "mono");
      body.appendChild(row);
    });
    var clusters = hits.filter(function (h) { return h.unit.kind === "cluster"; }).length;
    count.textContent = "matching: " + clusters + " clusters, " + (hits.length - clusters) + " neurons" +
      (hits.length > LIMIT ? " (best " + LIMIT + " shown)" : "") + "; best matches first";
  }

  var params = new URLSearchParams(window.location.search);
  if (params.get("q")) { box.value = params.get("q"); }
  box.addEventListener("input", render);
  if (kind) { kind.addEventListener("change", render); }
  render();
})();
"""
