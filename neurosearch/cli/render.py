"""Rich rendering of results: tables for ``find``, reports for ``show`` and ``info``.

Every string that came from outside (labels, tokens, corpus contexts, manifest fields, stored
results) passes :func:`neurosearch.text.for_terminal` and is printed as a ``Text`` object, so
neither an escape sequence nor rich markup in it reaches the terminal.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from neurosearch.ids import ClusterId, NeuronId
from neurosearch.text import MAX_EXPLANATION, MAX_QUERY, MAX_THEME, for_terminal


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
    for layer in sorted({NeuronId.parse(n).layer for n in neurons}):
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def find_table(result: Any, width: int = 80) -> Group:
    """The ranked hits of ``find``, one line each at ``width`` columns, with what the query became.

    The top tokens get the width the other columns leave and end in an ellipsis (``--json`` has
    them all); wrapped at 80 columns they stacked one token per line. Narrow terminals drop the
    size and layer columns (< 100 columns) and automatic themes (< 120), which repeat the top
    tokens. Cells are ``Text`` objects, not markup strings, which rich would parse one by one.
    """
    expanded = ", ".join(f"{for_terminal(t['token'], 40)} ({t['weight']:.2f})" for t in result.query.to_json()[:16])
    header = Text.assemble(("query ", "bold"), (for_terminal(result.query.text, MAX_QUERY), "cyan"), "  ->  ",
                           (expanded, "dim"))
    methods = {ClusterId.parse(hit.id).method for hit in result.results if hit.kind == "cluster"}
    labelled = any(hit.label and hit.label_source != "fallback" for hit in result.results)
    columns = [("#", "dim"), ("hit", "bold"), ("score", "")]
    if labelled or width >= 120:
        columns.append(("theme", "green"))
    columns.append(("top tokens", ""))
    if width >= 100:
        columns += [("size", ""), ("layers", "dim")]
    rows = []
    for rank, hit in enumerate(result.results, 1):
        shown_id = ClusterId.parse(hit.id).row_key if hit.kind == "cluster" and len(methods) == 1 else hit.id
        cells = {"#": Text(str(rank)), "hit": safe(f"{hit.kind} {shown_id}"), "score": Text(f"{hit.score:.3f}"),
                 "theme": safe(hit.label or "", MAX_THEME, style="dim" if hit.label_source == "fallback" else ""),
                 "top tokens": safe(" ".join(for_terminal(t, 40) for t in hit.top_tokens[:30])),
                 "size": Text(str(hit.size)), "layers": Text(_layers(hit.neurons))}
        cells["theme"].truncate(28, overflow="ellipsis")
        rows.append([cells[name] for name, _ in columns])
    widths = [max([len(name), *(row[i].cell_len for row in rows)]) for i, (name, _) in enumerate(columns)]
    tokens_at = [name for name, _ in columns].index("top tokens")
    others = sum(w for i, w in enumerate(widths) if i != tokens_at) + 3 * len(columns) + 1  # padding, borders
    table = Table(show_lines=False, expand=False)
    for i, (name, style) in enumerate(columns):
        limit = max(12, width - others) if i == tokens_at else widths[i]
        table.add_column(name, style=style, no_wrap=True, overflow="ellipsis", min_width=min(widths[i], limit),
                         max_width=limit)
    for row in rows:
        table.add_row(*row)
    parts: list[Any] = [header]
    if len(methods) == 1:
        parts.append(safe(f"clusters of method {methods.pop()}", style="dim"))
    parts.extend(safe(note, style="yellow") for note in result.notes)
    parts.append(table)
    return Group(*parts)


def highlight_context(left: str, token: str, right: str) -> Text:
    """A corpus context with its token highlighted (corpus text is outside text)."""
    return Text.assemble(("…" + for_terminal(left, 300), "dim"), (for_terminal(token, 60), "bold reverse yellow"),
                         (for_terminal(right, 300) + "…", "dim"))


def _token_table(title: str, tokens: list[str], weights: list[float], limit: int = 30) -> Table:
    table = Table(title=title)
    table.add_column("token", style="bold")
    table.add_column("weight")
    for token, weight in list(zip(tokens, weights))[:limit]:
        table.add_row(safe(token, 60), number(weight, ".4f"))
    return table


def _with_evidence(lines: list[Any], contexts: list[Any], ablation: Any, note: str | None) -> Group:
    """A report's common tail: the stored ablation result about these neurons and the top contexts."""
    if ablation is not None:
        lines.append(ablation_report(ablation))
    elif note:
        lines.append(Text(for_terminal(note, 300), style="yellow"))
    if contexts:
        lines.append(Text("top activating contexts", style="bold"))
        lines.extend(contexts)
    return Group(*lines)


def cluster_report(info: Any, layer_text: str, contexts: list[Any], ablation: Any = None,
                   note: str | None = None) -> Group:
    label = info.label or {}
    title = f"cluster {for_terminal(info.key)}: {for_terminal(label.get('theme', ''), MAX_THEME)}"
    if label.get("source") == "fallback":
        title += " (auto label)"
    tokens = _token_table("top tokens", info.top_tokens, info.top_weights)
    lines = [
        Text(title, style="bold cyan"),
        safe(label.get("explanation") or "", MAX_EXPLANATION, style="italic"),
        Text(f"{len(info.neurons)} neurons (refinement dropped {len(info.dropped)}); "
             f"avg pairwise distance {info.avg_distance:.3f}, max {info.max_distance:.3f}"),
        tokens,
        Panel(Text(layer_text), title="neurons by layer"),
        Text("neurons: " + " ".join(info.neurons[:60]) + (" …" if len(info.neurons) > 60 else ""), style="dim"),
    ]
    return _with_evidence(lines, contexts, ablation, note)


def neuron_report(data: dict, contexts: list[Any], ablation: Any = None, note: str | None = None) -> Group:
    title = (f"neuron {data['id']}: {for_terminal(data['label'], MAX_THEME)}"
             + (" (auto label)" if data["label_source"] == "fallback" else ""))
    tokens = _token_table(f"top tokens ({for_terminal(data['method'], 60)})", data["top_tokens"], data["top_weights"])
    lines: list[Any] = [
        Text(title, style="bold cyan"),
        Text(f"corpus mean {data['mean']:.4f}, std {data['std']:.4f}"),
        tokens,
    ]
    return _with_evidence(lines, contexts, ablation, note)


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
        Text(f"{for_terminal(target.kind, 20)} {for_terminal(target.id, 200)}: {len(target.neurons)} neurons; "
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


def info_table(data: dict) -> Table:
    table = Table(show_header=False, title=safe(f"index {data['path']}"))
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    corpus = data["corpus"]
    rows = [
        ("model", f"{data['model'].get('id')} (weights {str(data['model'].get('weights_sha256', ''))[:12]})"),
        ("site", f"{data['site']}: {data['layers']} layers x {data['neurons_per_layer']} = {data['neurons']} neurons"),
        ("corpus", f"{corpus.get('source')} ({corpus.get('documents')} documents, {corpus.get('windows')} windows, "
                   f"{corpus.get('tokens')} tokens)"),
        ("kept tokens", f"{data['tokens_kept']} (count >= {data['min_count']})"),
        ("methods", ", ".join(data["methods"]) + f"  (find uses {data['search_method']})"),
        ("K", ", ".join(map(str, data["ks"])) + ("  (refined clusters)" if data.get("refined") else "  (unrefined clusters)")),
        ("WordNet", f"{data['concepts']['count']} concepts ({data['concepts']['source']})" if data.get("concepts")
                    else "no concept table (embeddings-only query expansion)"),
        ("labels", str(data["labels"])),
        ("MLM head", _HEAD_TEXT[data["mlm_head"]].format(path=data.get("head_path"))),
        ("results", data["results"]["results"] + ("" if data["results"]["writes_into_index"]
                                                  else "  (the index is read-only: results are kept here)")),
        ("format", f"v{data['format_version']} (neurosearch {data['neurosearch_version']})"),
    ]
    for name, stage in data["stages"].items():
        rows.append((f"stage {name}", f"{stage.get('seconds', '?')} s, peak {stage.get('peak_rss_gb', '?')} GB"))
    for field, value in rows:
        table.add_row(safe(field, 60), safe(value))
    return table


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, emoji=False)
