"""The reports of ``show``: a neuron's or cluster's profile and the evidence behind it.

Outside text (corpus contexts, themes) goes through ``text.for_terminal``. Every context marks its
token with ``[[...]]`` as text, so the mark survives ``NO_COLOR``, pipes
and copy-paste (colour is added on top where the terminal has it). Each list says what it is: *on
its top tokens* (the occurrences that explain the profile) and *strongest firings overall* (the raw
maxima, which Eq. 1's average need not rank first). When contexts cannot be shown, one line says
where the corpus was looked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from neurosearch.text import MAX_EXPLANATION, MAX_THEME, for_terminal
from neurosearch.ids import unit_noun

if TYPE_CHECKING:
    from neurosearch.index.records import NeuronInfo

TOKEN_ROWS = 20
"""Top tokens listed in a report (``--json`` has them all)."""


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def marked_context(record: dict, width: int) -> Text:
    """``…left [[token]] right…`` in at most ``width`` cells, the token kept whole and central."""
    token = for_terminal(record.get("token") or record.get("piece") or "?", 40)
    mark = Text.assemble(("[[", "dim"), (token, "bold reverse yellow"), ("]]", "dim"))
    left, right = record.get("left"), record.get("right")
    if left is None or right is None:
        return mark
    left, right = for_terminal(left, None), for_terminal(right, None)
    room = max(width - mark.cell_len, 0)
    right_room = max(room // 2, room - len(left))
    left_room = room - min(len(right), right_room)
    if len(left) > left_room:
        left = "…" + left[len(left) - left_room + 1:] if left_room > 1 else ""
    if len(right) > room - len(left):
        keep = room - len(left)
        right = right[: keep - 1] + "…" if keep > 1 else ""
    return Text.assemble((left, "dim"), mark, (right, "dim"))


def context_table(title: str, records: Sequence[dict], width: int, with_neuron: bool) -> Group:
    """One labelled list of occurrences: activation, z, (neuron,) the marked context."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=False)
    table.add_column("value", justify="right")
    table.add_column("z", justify="right")
    if with_neuron:
        table.add_column("neuron")
    table.add_column("context", no_wrap=True, overflow="ellipsis")
    fixed = 7 + 6 + (8 if with_neuron else 0) + 2 * (3 if with_neuron else 2)
    for record in records:
        cells = [f"{record['value']:.3f}", f"{record['z']:.1f}"]
        if with_neuron:
            cells.append(record.get("neuron") or "")
        table.add_row(*cells, marked_context(record, max(width - fixed, 20)))
    return Group(Text(title, style="bold"), table)


def token_table(title: str, tokens: Sequence[str], weights: Sequence[float], means: Sequence[float | None],
                z: Sequence[float | None], width: int, rows: int = TOKEN_ROWS) -> Group:
    """Top tokens with weight, Eq. 1 mean activation and its z; two halves side by side when wide."""
    count = min(rows, len(tokens))
    halves = 2 if width >= 100 and count > 10 else 1
    per = -(-count // halves)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for half in range(halves):
        table.add_column("#", style="dim", justify="right")
        table.add_column("token", style="bold")
        table.add_column("weight", justify="right")
        table.add_column("mean act.", justify="right")
        table.add_column("z", justify="right")
    for line in range(per):
        cells: list[str] = []
        for half in range(halves):
            i = half * per + line
            if i >= count:
                cells += [""] * 5
                continue
            mean = means[i] if i < len(means) else None
            zi = z[i] if i < len(z) else None
            cells += [str(i + 1), for_terminal(tokens[i], 40), f"{weights[i]:.4f}", "" if mean is None else f"{mean:.3f}",
                      "" if zi is None else f"{zi:.1f}"]
        table.add_row(*cells)
    return Group(Text(title, style="bold"), table)


def _evidence_tail(lines: list[Any], evidence: Any, on_top: list[dict], strongest: list[dict], lookup: Any,
                   ablation: Any, note: str | None, width: int, cluster: bool) -> Group:
    """A report's common tail: the stored ablation result about these neurons (or why there is
    none), then the two labelled context lists."""
    if ablation is not None:
        from neurosearch.cli.render import ablation_report

        lines.append(ablation_report(ablation))
    elif note:
        lines.append(Text(for_terminal(note, 300), style="yellow"))
    if evidence.note:
        lines.append(Text(evidence.note, style="yellow"))
    unit = "a neuron of it" if cluster else "it"
    if on_top:
        lines.append(context_table(f"on its top tokens — the occurrence of each where {unit} fires most",
                                   on_top, width, cluster))
    if strongest:
        what = "its neurons' largest activations, by z" if cluster else "its largest activations, on any token"
        lines.append(context_table(f"strongest firings overall — {what}", strongest, width, cluster))
    if (on_top or strongest) and lookup.problem:
        lines.append(Text(f"contexts not shown: {for_terminal(lookup.problem, None)}; --corpus PATH names the file",
                          style="yellow"))
    elif on_top or strongest:
        lines.append(Text(f"contexts re-read from {for_terminal(lookup.path, None)}", style="dim"))
    return Group(*lines)


def _auto(source: str | None) -> str:
    return " (auto)" if source == "fallback" else ""


def score_line(scores: dict[str, Any] | None) -> Text:
    """What ``neurosearch score`` measured of a unit, in one line."""
    if not scores:
        return Text.assemble(("explained  ", "bold"), ("not scored (neurosearch score)", "dim"))
    def shown(value: Any) -> str:
        return "undefined" if value is None else f"{value:.2f}"
    return Text.assemble(("explained  ", "bold"),
                         f"simulation {shown(scores.get('simulation_score'))} "
                         f"(top and random windows {shown(scores.get('simulation_top_random'))}; "
                         f"another unit's explanation {shown(scores.get('calibration_shuffled'))})"
                         + (f"; detection AUC {shown(scores.get('detection_auc'))} (another unit's theme "
                            f"{shown(scores.get('calibration_other_theme'))})" if "detection_auc" in scores else ""),
                         (" — correlation of its top tokens' weights with its activations on held-out text", "dim"))


def neuron_report(data: NeuronInfo, evidence: Any, on_top: list[dict], strongest: list[dict], lookup: Any,
                  ablation: Any = None, note: str | None = None, width: int = 80,
                  scores: dict[str, Any] | None = None) -> Group:
    noun = unit_noun(data.id)
    title = Text.assemble((f"{noun} {data.id}", "bold cyan"), "  ", (for_terminal(data.label or "", MAX_THEME), "bold"),
                          (_auto(data.label_source), "dim"))
    clusters = " · ".join(f"{c['short_id']} {for_terminal(c['theme'], MAX_THEME)}{_auto(c['label_source'])} ({plural(c['size'], noun)})"
                          for c in evidence.clusters) or "none"
    lines: list[Any] = [
        title,
        Text(f"corpus mean {data.mean:.4f}, sd {data.std:.4f}; z = (activation - mean) / sd"),
        Text.assemble(("in clusters  ", "bold"), clusters),
        score_line(scores),
        Text.assemble(("verify       ", "bold"), evidence.verify),
        token_table(f"top tokens ({data.method}) — weight, Eq. 1 mean activation, its z",
                    data.top_tokens, data.top_weights, evidence.token_means, evidence.token_z, width),
    ]
    return _evidence_tail(lines, evidence, on_top, strongest, lookup, ablation, note, width, cluster=False)


def cluster_report(info: Any, layer_text: str, evidence: Any, on_top: list[dict], strongest: list[dict], lookup: Any,
                   ablation: Any = None, note: str | None = None, width: int = 80,
                   scores: dict[str, Any] | None = None) -> Group:
    label = info.label or {}
    title = Text.assemble((f"cluster {info.key}", "bold cyan"), "  ", (for_terminal(label.get("theme") or "", MAX_THEME), "bold"),
                          (_auto(label.get("source")), "dim"))
    lines: list[Any] = [title]
    if label.get("explanation"):
        lines.append(Text(for_terminal(label["explanation"], MAX_EXPLANATION), style="italic"))
    lines += [
        Text(f"{plural(len(info.neurons), unit_noun(info.neurons[0]) if info.neurons else 'neuron')} (refinement dropped {len(info.dropped)}); "
             f"avg pairwise distance {info.avg_distance:.3f}, max {info.max_distance:.3f}"),
        Text.assemble(("verify  ", "bold"), evidence.verify),
        score_line(scores),
        token_table("top tokens — weight, Eq. 1 mean activation and z, averaged over its neurons",
                    info.top_tokens, info.top_weights, evidence.token_means, evidence.token_z, width),
        Panel(layer_text, title="neurons by layer", expand=False),
        Text("neurons: " + " ".join(info.neurons[:60]) + (" …" if len(info.neurons) > 60 else ""), style="dim"),
    ]
    return _evidence_tail(lines, evidence, on_top, strongest, lookup, ablation, note, width, cluster=True)
