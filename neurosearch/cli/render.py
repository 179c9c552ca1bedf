"""Rich rendering of results: tables for ``find``, ``ablate`` and ``info`` (``show``: reports.py).

Every string that came from outside (labels, tokens, corpus contexts, manifest fields, stored
results) passes :func:`neurosearch.text.for_terminal` and is printed as a ``Text`` object, so
neither an escape sequence nor rich markup in it reaches the terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from neurosearch.ids import ClusterId, split_neuron, unit_noun
from neurosearch.text import MAX_QUERY, MAX_THEME, for_terminal

if TYPE_CHECKING:
    from neurosearch.index.records import IndexInfo


def safe(value: Any, limit: int | None = None, style: str = "") -> Text:
    """An outside string as a rich ``Text``: control characters stripped, length capped, no markup."""
    return Text(for_terminal(value, limit) if limit is not None else for_terminal(value), style=style)


def number(value: Any, spec: str) -> str:
    """A stored number formatted with ``spec``; '?' for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "?"
    return format(value, spec)


def _layers(neurons: list[str]) -> str:
    """Layers as ranges: '0-5', '2,4-5'."""
    runs: list[list[int]] = []  # [first, last] of each run of consecutive layers
    for layer in sorted({split_neuron(n)[0] for n in neurons}):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def wrap_words(words: list[str], width: int, lines: int, suffix: str = "") -> Text:
    """Words filled into at most ``lines`` lines of ``width`` cells, then ``suffix`` (always shown);
    an ellipsis marks where words are left out."""
    tail = [suffix] if suffix else []
    out: list[str] = []
    current = ""
    for word in [*words, *tail]:
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= width:
            current = candidate
            continue
        if len(out) + 1 < lines:
            out.append(current or word[:width])
            current = word if current else ""
            continue
        # the last line: end it with an ellipsis (and the suffix) where the rest would go
        ending = " ".join(["…", *tail])
        while current and len(current) + 1 + len(ending) > width:
            current = current.rsplit(" ", 1)[0] if " " in current else ""
        if current.endswith(suffix) and suffix:
            current = current[: -len(suffix)].rstrip()
        current = f"{current} {ending}".strip()
        break
    if current:
        out.append(current)
    return Text("\n".join(out))


FIND_FIXED = {"#": 2, "hit": 8, "score": 5, "size": 4, "layers": 6}


def find_table(result: Any, width: int = 80) -> Group:
    """The ranked hits of ``find`` at ``width`` columns, with what the query became.

    The same columns at every width: rank, hit id (``2:1454`` is a neuron, ``k200/84`` a cluster
    of the method named above the table), score, theme (``(auto)``: the offline label made of the
    top tokens, not an LLM theme), size, layers and top tokens. Below 120 columns the theme and
    top tokens wrap onto two lines; the top tokens end in an ellipsis where more are left out
    (``--json`` has them all). Cells are ``Text`` objects, not markup strings, which rich would
    parse one by one.
    """
    expanded = ", ".join(f"{for_terminal(t['token'], 40)} ({t['weight']:.2f})" for t in result.query.to_json()[:16])
    header = Text.assemble(("query ", "bold"), (for_terminal(result.query.text, MAX_QUERY), "cyan"), "  ->  ",
                           (expanded, "dim"))
    methods = {ClusterId.parse(hit.id).method for hit in result.results if hit.kind == "cluster"}
    lines = 1 if width >= 120 else 2
    ids = [ClusterId.parse(hit.id).row_key if hit.kind == "cluster" and len(methods) == 1 else hit.id
           for hit in result.results]
    fixed = dict(FIND_FIXED, **{"#": max(2, len(str(len(result.results))))})
    fixed["hit"] = max([3, *(len(i) for i in ids)])
    fixed["layers"] = min(11, max([6, *(len(_layers(hit.neurons)) for hit in result.results)]))
    scored = any(hit.simulation_score is not None for hit in result.results)
    if scored:
        fixed["sim"] = 4
    gaps = 2 * (len(fixed) + 1)  # a column per fixed width, theme and top tokens; padding either side of each gap
    room = width - sum(fixed.values()) - gaps - 1
    theme_width = max(12, min(36 if lines == 1 else 24, (room + 1) // 2 - 2))
    tokens_width = max(12, room - theme_width)
    table = Table(box=None, pad_edge=False, header_style="bold underline", expand=False)
    columns = [("#", "dim"), ("hit", "bold"), ("score", ""), *([("sim", "")] if scored else []), ("theme", "green"),
               ("size", ""), ("layers", "dim"), ("top tokens", "")]
    for name, style in columns:
        limit = theme_width if name == "theme" else tokens_width if name == "top tokens" else fixed[name]
        table.add_column(name, style=style, justify="right" if name in ("#", "score", "sim", "size") else "left",
                         width=limit, no_wrap=True, overflow="ellipsis")
    for rank, (hit, shown) in enumerate(zip(result.results, ids), 1):
        theme = wrap_words(for_terminal(hit.label or "", MAX_THEME).split(), theme_width, lines,
                           "(auto)" if hit.label_source == "fallback" else "")
        theme.highlight_words(["(auto)"], style="dim")
        sim = [Text("-" if hit.simulation_score is None else f"{hit.simulation_score:.2f}")] if scored else []
        table.add_row(Text(str(rank)), safe(shown), Text(f"{hit.score:.3f}"), *sim, theme, Text(f"{hit.size:,}"),
                      Text(_layers(hit.neurons)), wrap_words([for_terminal(t, 40) for t in hit.top_tokens[:30]],
                                                             tokens_width, lines))
    parts: list[Any] = [header]
    if len(methods) == 1:
        features = any(unit_noun(name) == "feature" for hit in result.results[:1] for name in hit.neurons[:1])
        units = f"L{split_neuron(result.results[0].neurons[0])[0]}:fI SAE features" if features else "L:I neurons"
        parts.append(safe(f"hits: {units}, tree/ID and kK/ID clusters (method {methods.pop()}), ranked by the "
                          "expected share of concept members among their first 10 top tokens", style="dim"))
    if scored:
        parts.append(safe("sim: how well a hit's top tokens predict its activations on held-out text (correlation, "
                          "`neurosearch score`; random explanations score about 0)", style="dim"))
    parts.extend(safe(note, style="yellow") for note in result.notes)
    parts.append(table)
    return Group(*parts)


def _measured(readout: Any) -> str:
    """What a readout measured, in one line (from its typed measures; stored text made safe)."""
    m = readout.measures
    if readout.readout == "embedding":
        return (f"embedding displacement {number(m.displacement_target, '.4f')} on target sentences vs "
                f"{number(m.displacement_control, '.4f')} on {m.control_sentences} control sentences; "
                f"{for_terminal(m.pooling, 120)}")
    return (f"head {for_terminal(m.head, 40)}: loss {number(m.loss, '.3f')} -> {number(m.loss_ablated, '.3f')} on "
            f"{m.scored_tokens} scored tokens, control tokens {number(m.control_change_pct, '+.2f')} %")


def readout_table(readout: Any) -> Table:
    """One readout: the target's statistic against each baseline's draws."""
    ratio = readout.readout == "embedding"
    spec = ".3f" if ratio else "+.2f"
    table = Table(title=Text(f"{for_terminal(readout.readout, 40)} readout: {for_terminal(readout.statistic, 120)}"),
                  title_justify="left")
    for column in ("condition", "ratio" if ratio else "% change", "sd", "z", "p", "rank p", "beaten"):
        table.add_column(column)
    table.add_row("target", number(readout.value, spec), "", "", "", "", "", style="bold")
    for name, b in readout.baselines.items():
        table.add_row(safe(f"{name} ({len(b.draws)} draws)", 60), number(b.mean, spec),
                      number(b.std, ".3f" if ratio else ".2f"), number(b.z, ".1f"), number(b.p, ".2g"),
                      number(b.p_empirical, ".2g"), "yes" if name in readout.verdict.beats else "no")
    return table


def ablation_report(result: Any) -> Group:
    """An ``AblationResult``: the verdict line, each readout's table, what was read, notes."""
    target = result.target
    verdict = result.verdict
    tokens = " ".join(for_terminal(t, 40) for t in target.tokens[:15])
    lines: list[Any] = [
        Text(("legacy result: " if result.legacy else "") + for_terminal(verdict.line(), 300),
             style="bold green" if verdict.passed else "bold yellow"),
        Text(f"{for_terminal(target.kind, 20)} {for_terminal(target.id, 200)}: "
             f"{len(target.neurons)} {unit_noun(target.neurons[0]) if target.neurons else 'neuron'}"
             f"{'' if len(target.neurons) == 1 else 's'}; "
             f"ablation ({for_terminal(result.ablation, 40)}), {result.sentences} sentences; "
             f"tokens ({for_terminal(target.token_source, 80)}): {tokens}", style="dim"),
    ]
    for readout in result.readouts.values():
        lines.append(readout_table(readout))
        lines.append(Text(_measured(readout), style="dim"))
        if readout is not result.primary:
            lines.append(Text(for_terminal(readout.verdict.line(), 300), style="dim"))
    lines.extend(Text(for_terminal(note, 300), style="yellow") for note in [*result.notes, *verdict.notes])
    return Group(*lines)


_HEAD_TEXT = {
    "model": "the model's own",
    "fitted": "fitted ({path}); the model has none of its own",
    "none": "none: the model has no MLM head; run `neurosearch fit-head` before `ablate`",
}
"""``info``'s MLM head line for each value of its JSON field ``mlm_head``."""


def _sae_facts(units: dict) -> str:
    """"; held-out FVU 0.201, dead 1.7 %" of the SAE's training ("" when the index does not record it)."""
    sae = units.get("sae") or {}
    fvu, dead = sae.get("fvu"), sae.get("dead_share")
    if not isinstance(fvu, (int, float)) or not isinstance(dead, (int, float)):
        return ""
    return f"; held-out FVU {fvu:.3f}, dead {dead:.1%}"


def info_table(data: IndexInfo) -> Table:
    table = Table(show_header=False, title=safe(f"index {data.path}"))
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    corpus = data.corpus
    rows = [
        ("model", f"{data.model.get('id')} (weights {str(data.model.get('weights_sha256', ''))[:12]})"),
        ("site", f"{data.site}: {data.layers} layers x {data.neurons_per_layer} = {data.neurons} neurons"
         if not data.units else f"{data.site} layer {data.units['layer']}: {data.neurons} features of a TopK SAE "
                                f"(k {data.units.get('k')}; {data.units['sae']['path']}{_sae_facts(data.units)}), "
                                f"named L{data.units['layer']}:fI"),
        ("corpus", f"{corpus.get('source')} ({corpus.get('documents')} documents, {corpus.get('windows')} windows, "
                   f"{corpus.get('tokens')} tokens)"),
        ("kept tokens", f"{data.tokens_kept} (count >= {data.min_count})"),
        ("methods", ", ".join(data.methods) + f"  (find uses {data.search_method})"),
        ("K", ", ".join(map(str, data.ks)) + ("  (refined clusters)" if data.refined else "  (unrefined clusters)")),
        ("WordNet", f"{data.concepts['count']} concepts ({data.concepts['source']})" if data.concepts
                    else "no concept table (embeddings-only query expansion)"),
        ("labels", str(data.labels)),
        ("MLM head", _HEAD_TEXT[data.mlm_head].format(path=data.head_path)),
        ("results", data.results["results"] + ("" if data.results["writes_into_index"]
                                                  else "  (the index is read-only: results are kept here)")),
        ("format", f"v{data.format_version} (neurosearch {data.neurosearch_version})"),
    ]
    for name, stage in data.stages.items():
        rows.append((f"stage {name}", f"{stage.get('seconds', '?')} s, peak {stage.get('peak_rss_gb', '?')} GB"))
    for field, value in rows:
        table.add_row(safe(field, 60), safe(value))
    return table


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, emoji=False)


def score_table(data: dict[str, Any]) -> Table:
    """``neurosearch score``'s summary: per group of units, each score's median, quartiles and share >= 0.5."""
    table = Table(title="explanation scores on held-out text (correlation of simulated and real activations)",
                  header_style="bold")
    for name in ("units", "score", "scored", "median", "quartiles", ">= 0.5"):
        table.add_column(name, justify="left" if name in ("units", "score") else "right")
    names = {"simulation_score": "simulation (all tokens)", "simulation_top_random": "simulation (top + random)",
             "calibration_shuffled": "calibration: another unit's"}
    for group, scores in data["summary"].items():
        shown = {"neurons": "neurons", "tree": "tree nodes"}.get(group, f"K={group[1:]} clusters")
        for column, name in names.items():
            s = scores[column]
            table.add_row(shown, name, f"{s.get('defined', 0):,}/{s['units']:,}", number(s.get("median"), ".3f"),
                          f"{number(s.get('q1'), '.2f')}-{number(s.get('q3'), '.2f')}",
                          number(s.get("share_at_least_0.5"), ".1%"))
            shown = ""
    return table


def detection_table(data: dict[str, Any]) -> Table:
    """``score --detection``'s summary: per group, the AUC's median, mean and quartiles, and its calibration."""
    table = Table(title=f"detection AUC with {data['about']['lm']} (0.5: chance)", header_style="bold")
    for name in ("units", "score", "scored", "median", "mean", "quartiles"):
        table.add_column(name, justify="left" if name in ("units", "score") else "right")
    for group, scores in data["summary"].items():
        shown = {"neurons": "neurons", "tree": "tree nodes"}.get(group, f"K={group[1:]} clusters")
        for column, name in (("detection_auc", "its theme"), ("calibration_other_theme", "another unit's theme")):
            s = scores[column]
            table.add_row(shown, name, f"{s.get('defined', 0):,}/{s['units']:,}", number(s.get("median"), ".3f"),
                          number(s.get("mean"), ".3f"), f"{number(s.get('q1'), '.2f')}-{number(s.get('q3'), '.2f')}")
            shown = ""
    return table
