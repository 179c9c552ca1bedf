"""Fig. 5 (a cluster's neurons by layer and index) as inline SVG, for the report's cluster pages.

The same figure as :func:`neurosearch.plots.plot_cluster_neurons` (neurons per layer as bars above,
every neuron as a dot at (layer, index) below, indices shared by several layers in orange and
joined), built from the same helpers, but as SVG text: far cheaper per cluster page than
matplotlib (docs/decisions.md), and every dot links to its neuron's page.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

from neurosearch.neuron_layers import layers_of_neurons, shared_indices
from neurosearch.report.html import e

WIDTH, HEIGHT = 620, 400
LEFT, RIGHT, TOP = 56, 16, 12
BARS = 80  # height of the histogram
GAP = 26
BOTTOM = 40


def _ticks(top: int, count: int = 4) -> list[int]:
    """Round tick values from 0 to ``top``."""
    if top <= 0:
        return [0]
    raw = top / count
    magnitude = 10 ** (len(str(int(raw))) - 1)
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks, value = [], 0.0
    while value <= top:
        ticks.append(int(value))
        value += step
    return ticks


def cluster_neurons_svg(neurons: Sequence[str], n_layers: int, neurons_per_layer: int,
                        href: Callable[[str], str] | None = None) -> str:
    """Fig. 5 of one cluster as an ``<svg>`` element (dots link to ``href(name)`` when given)."""
    points, layers_of = layers_of_neurons(neurons)
    shared = shared_indices(layers_of)
    counts = Counter(layer for layer, _ in points)
    most = max(counts.values(), default=1)
    plot_w = WIDTH - LEFT - RIGHT
    step = plot_w / max(n_layers, 1)
    scatter_top = TOP + BARS + GAP
    scatter_h = HEIGHT - scatter_top - BOTTOM

    def x(layer: float) -> float:
        return LEFT + step * (layer + 0.5)

    def y(index: float) -> float:
        return scatter_top + scatter_h * (1 - index / max(neurons_per_layer - 1, 1))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-label="neurons of the cluster by layer and index">']
    # histogram
    for tick in _ticks(most, 2):
        ty = TOP + BARS * (1 - tick / most)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e3e7eb"/>'
                     f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick}</text>')
    for layer in range(n_layers):
        count = counts.get(layer, 0)
        h = BARS * count / most
        parts.append(f'<rect x="{x(layer) - step * 0.35:.1f}" y="{TOP + BARS - h:.1f}" width="{step * 0.7:.1f}" '
                     f'height="{h:.1f}" fill="#4a7fb5"><title>layer {layer}: {count} neurons</title></rect>')
    parts.append(f'<text x="14" y="{TOP + BARS / 2:.1f}" transform="rotate(-90 14 {TOP + BARS / 2:.1f})" '
                 f'text-anchor="middle">neurons</text>')
    # scatter frame and axes
    parts.append(f'<rect x="{LEFT}" y="{scatter_top}" width="{plot_w}" height="{scatter_h}" fill="none" '
                 f'stroke="#c6cdd4"/>')
    for tick in _ticks(neurons_per_layer - 1):
        ty = y(tick)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#eef1f3"/>'
                     f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick}</text>')
    for layer in range(n_layers):
        parts.append(f'<text x="{x(layer):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{layer}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">layer</text>')
    middle = scatter_top + scatter_h / 2
    parts.append(f'<text x="14" y="{middle:.1f}" transform="rotate(-90 14 {middle:.1f})" text-anchor="middle">'
                 f'index within layer</text>')
    for index, layers in shared.items():
        parts.append('<polyline fill="none" stroke="#f28e2b" stroke-opacity="0.6" points="'
                     + " ".join(f"{x(layer):.1f},{y(index):.1f}" for layer in layers) + '"/>')
    for layer, index in points:
        name = f"{layer}:{index}"
        is_shared = index in shared
        dot = (f'<circle cx="{x(layer):.1f}" cy="{y(index):.1f}" r="{4.5 if is_shared else 3.2}" '
               f'fill="{"#f28e2b" if is_shared else "#4a7fb5"}" fill-opacity="0.85" '
               f'stroke="{"#222" if is_shared else "none"}" stroke-width="0.6"><title>{e(name)}</title></circle>')
        parts.append(f'<a href="{e(href(name))}">{dot}</a>' if href else dot)
    for index, layers in list(shared.items())[:12]:
        parts.append(f'<text x="{x(layers[-1]) + 7:.1f}" y="{y(index) + 4:.1f}" fill="#555">{index}</text>')
    parts.append("</svg>")
    return "".join(parts)
