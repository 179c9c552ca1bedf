"""Terminal rendering of ``trace``: a table of the units at each token, and one unit along the text.

Marks survive without colour (``NO_COLOR``, pipes): the unit view brackets strong tokens
``[[like this]]`` and draws a bar per token; the table prints z as numbers.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

THEME_WIDTH = 30
BAR_WIDTH = 24


def clean(text: Any, newlines: bool = False) -> str:
    """Outside text (corpus, labels, the user's text) made safe for a terminal: control and
    format characters (ANSI escapes, bidi overrides) become spaces; ``newlines`` keeps line breaks."""
    return "".join(c if newlines and c == "\n" else " " if unicodedata.category(c) in ("Cc", "Cf") else c
                   for c in str(text or ""))


def _theme(label: str | None, source: str | None, mark_auto: bool) -> str:
    theme = clean(label)
    if len(theme) > THEME_WIDTH:
        theme = theme[: THEME_WIDTH - 1] + "…"
    return theme + (" (auto)" if mark_auto and source == "fallback" else "")


def _unit_lines(units: list[Any], mark_auto: bool) -> Text:
    text = Text()
    for number, unit in enumerate(units):
        if number:
            text.append("\n")
        shown = unit.id.split("/", 1)[1] if unit.kind == "cluster" else unit.id
        text.append(f"{shown:<{8 if unit.kind == 'neuron' else 9}}", style="bold")
        text.append(f"{unit.z:+6.1f} ", style="cyan")
        text.append(_theme(unit.label, unit.label_source, mark_auto),
                    style="dim" if unit.label_source == "fallback" else "")
    return text


def _auto_note(units: list[Any]) -> tuple[bool, str | None]:
    """(mark each automatic theme?, a note): when every theme shown is automatic, one note says so."""
    sources = {u.label_source for u in units}
    if sources and sources <= {"fallback"}:
        return False, "themes: automatic labels from the units' top tokens (no LLM themes stored)"
    return True, "(auto): an automatic label from the top tokens, not an LLM theme" if "fallback" in sources else None


def trace_table(result: Any, width: int = 80) -> Group:
    """One row per word piece: its top neurons and clusters with z and theme."""
    header = Text.assemble(("trace ", "bold"), (clean(result.text)[:200], "cyan"))
    lines: list[Any] = [header, Text(
        f"z = (activation - corpus mean) / corpus std of each neuron; a cluster's z is the mean z of its "
        f"neurons (method {result.method}, K={result.k})", style="dim")]
    mark_auto, note = _auto_note([u for t in result.tokens for u in (*t.neurons, *t.clusters)])
    if note:
        lines.append(Text(note, style="dim"))
    table = Table(show_lines=True, expand=False)
    token_width = min(14, max((len(clean(t.piece.token)) for t in result.tokens), default=5))
    number_width = len(str(len(result.tokens)))
    token_width = max(5, token_width)
    table.add_column("#", style="dim", no_wrap=True, width=number_width)
    table.add_column("token", style="bold", no_wrap=True, width=token_width, overflow="ellipsis")
    kinds = [name for name in ("neurons", "clusters") if any(getattr(t, name) for t in result.tokens)]
    # rich would squeeze the narrow columns to nothing: give the unit columns what is left, evenly
    left = width - number_width - token_width - 3 * (2 + len(kinds)) - 1
    for name in kinds:
        table.add_column(f"{name} (z, theme)", no_wrap=True, overflow="ellipsis",
                         max_width=max(16, left // max(len(kinds), 1)))
    for token in result.tokens:
        cells = [Text(str(token.piece.index)), Text(clean(token.piece.token))]
        cells += [_unit_lines(getattr(token, name), mark_auto) for name in kinds]
        table.add_row(*cells)
    lines.append(table)
    return Group(*lines)


def marked_text(original: str, pieces: list[Any], z: list[float], mark: float) -> Text:
    """``original`` with the pieces at or above ``mark`` in ``[[brackets]]`` (and colour);
    neighbouring marked pieces of one word share one pair of brackets."""
    text = Text()
    cursor = 0
    open_ = False
    for piece, value in zip(pieces, z):
        gap = original[cursor : piece.start]
        strong = value >= mark
        if open_ and (gap or not strong):
            text.append("]]", style="bold yellow")
            open_ = False
        text.append(clean(gap, newlines=True))
        if strong and not open_:
            text.append("[[", style="bold yellow")
            open_ = True
        text.append(clean(original[piece.start : piece.end]), style="bold reverse yellow" if strong else "")
        cursor = piece.end
    if open_:
        text.append("]]", style="bold yellow")
    text.append(clean(original[cursor:], newlines=True))
    return text


def unit_view(result: Any, mark: float, width: int = 80) -> Group:
    """The text with one unit's z per token: marked inline, then one bar per token."""
    kind = "neuron" if result.kind == "neuron" else "cluster"
    title = Text.assemble((f"{kind} {result.id}: ", "bold cyan"), _theme(result.label, result.label_source, True))
    what = ("z = (activation - corpus mean) / corpus std" if kind == "neuron"
            else f"z = mean z of its {len(result.neurons)} neurons")
    lines: list[Any] = [title, Text(f"{what}; [[marked]]: z >= {mark:g}", style="dim")]
    if result.low_std:
        lines.append(Text("this neuron is nearly constant on the corpus (tiny std): its z is unreliable",
                          style="yellow"))
    lines.append(marked_text(result.text, result.pieces, result.z, mark))
    most = max((abs(v) for v in result.z), default=0.0) or 1.0
    token_width = min(16, max((len(clean(p.token)) for p in result.pieces), default=5))
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("token", no_wrap=True, max_width=token_width + 1, overflow="ellipsis")
    table.add_column("z", justify="right", no_wrap=True)
    if result.kind == "neuron":
        table.add_column("value", justify="right", no_wrap=True)
    else:
        table.add_column("top neuron", no_wrap=True)
    table.add_column("", no_wrap=True)
    for piece, value, raw, top in zip(result.pieces, result.z, result.values, result.top_neurons):
        bar = "█" * round(BAR_WIDTH * max(value, 0.0) / most)
        strong = value >= mark
        third = f"{raw:.4f}" if result.kind == "neuron" else (top or "")
        table.add_row(Text(clean(piece.token), style="bold" if strong else ""), Text(f"{value:+.2f}"), Text(third),
                      Text(bar + (" ◀" if strong else ""), style="yellow" if strong else "cyan"))
    lines.append(table)
    return Group(*lines)
