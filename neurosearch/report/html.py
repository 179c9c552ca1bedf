"""Small HTML building blocks of the report. Every outside string goes through :func:`e`.

Outside means anything not written in this package: labels (an LLM wrote them), corpus text,
tokens, manifest fields, stored results. Links are built only from :func:`slug` names.
"""

from __future__ import annotations

import html
import math
import re
from functools import lru_cache
from typing import Any, Iterable

def e(value: Any) -> str:
    """HTML-escaped text (quotes too, so it is safe in attributes); None is empty."""
    if value is None:
        return ""
    return html.escape(str(value), quote=True)


@lru_cache(maxsize=1 << 16)
def token_html(token: str) -> str:
    """An escaped vocabulary token (cached: a report escapes the same few thousand tokens ~10^6 times)."""
    return html.escape(token, quote=True)


def slug(text: str) -> str:
    """A file-name-safe form of an id (``filter+smooth/k200/3`` -> ``filter-smooth_k200_3``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text.replace("+", "-").replace("/", "_").replace(":", "_"))


def cluster_href(key: str) -> str:
    return f"cluster/{slug(key)}.html"


NEURON_BLOCK = 64
"""Neurons per page: one section each, addressed by an anchor (a file per neuron was slow to write
and to delete: docs/decisions.md)."""


def neuron_block(name: str) -> tuple[int, int]:
    """(layer, block) of the page that holds neuron ``L:I`` (or SAE feature ``LL:fI``)."""
    from neurosearch.ids import split_neuron

    layer, index = split_neuron(name)
    return layer, index // NEURON_BLOCK


def neuron_page_href(layer: int, block: int) -> str:
    return f"neuron/{layer}_{block}.html"


def neuron_anchor(name: str) -> str:
    return "n" + slug(name)


def neuron_href(name: str) -> str:
    return f"{neuron_page_href(*neuron_block(name))}#{neuron_anchor(name)}"


def number(value: Any, digits: int = 3, signed: bool = False) -> str:
    """A number for a table cell; '-' when missing or not finite (safe HTML: digits and signs only)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(x):
        return "-"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def theme_html(label: str | None, source: str | None) -> str:
    """The theme with a badge naming its source (automatic label or LLM theme)."""
    if not label:
        return '<span class="muted">(no theme)</span>'
    if source == "fallback":
        badge = '<span class="badge auto">auto</span>'
    else:
        badge = f'<span class="badge llm">{e("LLM" if source in (None, "", "llm") else source)}</span>'
    return f'<span class="theme">{e(label)}</span>{badge}'


def token_chips(tokens: Iterable[str], weights: Iterable[float] | None = None, limit: int = 50) -> str:
    """Top tokens as chips, each with its weight when given."""
    tokens = list(tokens)[:limit]
    values = list(weights)[: len(tokens)] if weights is not None else []
    chips = []
    for position, token in enumerate(tokens):
        weight = f"<i>{number(values[position], 4)}</i>" if position < len(values) else ""
        chips.append(f'<span class="tok">{token_html(token)}{weight}</span>')
    return f'<div class="tokens">{"".join(chips)}</div>'


def token_table(tokens: list[str], weights: list[float], limit: int = 50) -> str:
    """Top tokens with their weights as bars (two columns of rows, for reading down)."""
    pairs = list(zip(tokens, weights))[:limit]
    most = max((abs(float(w)) for _, w in pairs), default=0.0) or 1.0
    rows = []
    for rank, (token, weight) in enumerate(pairs, 1):
        width = max(1, round(120 * abs(float(weight)) / most))
        sign = " neg" if float(weight) < 0 else ""  # below the neuron's usual level: drawn apart
        rows.append(f'<tr><td class="num muted">{rank}</td><td class="mono">{token_html(token)}</td>'
                    f'<td class="num">{number(weight, 4)}</td>'
                    f'<td><span class="bar{sign}" style="width:{width}px"></span></td></tr>')
    half = (len(rows) + 1) // 2
    head = '<tr><th class="num">#</th><th>token</th><th class="num">weight</th><th></th></tr>'
    tables = [f'<table class="toptokens">{head}{"".join(part)}</table>' for part in (rows[:half], rows[half:]) if part]
    return f'<div class="grid2">{"".join(tables)}</div>'


def table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None, css: str = "") -> str:
    """A table from cells that are already HTML (escape outside text before)."""
    classes = classes or [""] * len(headers)
    attrs = [f' class="{c}"' if c else "" for c in classes]
    head = "".join(f"<th{a}>{h}</th>" for h, a in zip(headers, attrs))
    body = "".join("<tr>" + "".join(f"<td{a}>{cell}</td>" for cell, a in zip(row, attrs)) + "</tr>" for row in rows)
    opening = f'<table class="{css}">' if css else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts(rows: list[tuple[str, str]]) -> str:
    """A two-column table of (name, HTML value)."""
    return '<table class="facts">' + "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def context_html(record: dict[str, Any]) -> str:
    """``…left <mark>token</mark> right…`` (the mark is bold as well as coloured)."""
    if record.get("token") is None:
        return '<span class="muted">(text not available)</span>'
    return (f'<span class="ctx">…{e(record.get("left"))}<mark>{e(record.get("token"))}</mark>'
            f'{e(record.get("right"))}…</span>')


def page(title: str, body: str, *, index_name: str, depth: int = 0, scripts: tuple[str, ...] = ()) -> str:
    """A whole page: the shared header (links back to the overview and listings) around ``body``."""
    root = "../" * depth
    tags = "".join(f'<script src="{root}{s}"></script>' for s in scripts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · neurosearch</title>"
        f'<link rel="stylesheet" href="{root}assets/report.css"></head><body>'
        f'<header class="top"><a href="{root}index.html">neurosearch report</a>'
        f'<a href="{root}index.html#search-box">search</a><a href="{root}clusters.html">clusters</a>'
        f'<a href="{root}neurons.html">neurons</a><span class="index">{e(index_name)}</span></header>'
        f'<main>{body}<p class="note legend">Theme badges: <span class="badge auto">auto</span> an automatic label '
        'made of the top tokens (no LLM theme stored); any other badge names where the stored theme came from.</p>'
        f"</main>{tags}</body></html>\n"
    )
