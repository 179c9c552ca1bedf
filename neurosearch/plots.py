"""Figures of the paper (Figs. 2-5) as PNGs, plus a terminal version of Fig. 5.

matplotlib is imported inside each function, and figures are drawn on an explicit Agg canvas
rather than through ``pyplot``: importing neurosearch stays fast, and plotting never switches the
backend of a user's interactive session.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neurosearch.config import BASELINE_DESCRIPTIONS, BASELINES, METHODS
from neurosearch.errors import NeurosearchError
from neurosearch.neuron_layers import layers_of_neurons, shared_indices

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150


class PlotError(NeurosearchError, ValueError):
    """A figure that cannot be drawn from what was given (e.g. no results for the chosen K)."""

FIGSIZES = {
    "distance_curve": (8.5, 4.5),
    "cluster_losses": (10.0, 4.8),
    "cluster_neurons": (7.0, 5.0),
    "token_pca": (7.5, 7.0),
}
"""Figure sizes in inches; images are exactly size * DPI pixels (no tight bbox)."""

_BASELINE_STYLE = {
    "random": ("tab:blue", "o"),
    "random_layer": ("tab:green", "s"),
    "random_position": ("tab:purple", "^"),
}


def _figure(width: float, height: float) -> Figure:
    """A Figure on its own Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Save as PNG via a temp file so a crash never leaves a truncated image behind.

    No ``bbox_inches='tight'``: the image is exactly figsize * DPI pixels.
    """
    from neurosearch.format.atomic import atomic_file

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out, "wb") as fh:
        fig.savefig(fh, dpi=DPI, format="png", facecolor="white")
    return out


def _method_colours(methods: Sequence[str]) -> dict[str, Any]:
    """Stable colours: a method keeps its colour whichever subset is plotted."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    known = {m: cmap(i) for i, m in enumerate(METHODS)}
    extra = [m for m in methods if m not in known]
    known.update({m: cmap((len(METHODS) + i) % 10) for i, m in enumerate(extra)})
    return known


def _method_order(method: str) -> tuple[int, str]:
    return (METHODS.index(method) if method in METHODS else len(METHODS), method)




# --------------------------------------------------------------------------- Fig. 2


def plot_distance_curve(
    curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike[str]
) -> Path:
    """Fig. 2: average max (solid) and mean (dashed) within-cluster distance against K."""
    from matplotlib.lines import Line2D

    fig = _figure(*FIGSIZES["distance_curve"])
    ax = fig.add_subplot()
    methods = sorted(curves, key=_method_order)
    colours = _method_colours(methods)
    for method in methods:
        curve = curves[method]
        ks = np.asarray(curve["k"], dtype=float)
        order = np.argsort(ks)
        colour = colours[method]
        ax.plot(ks[order], np.asarray(curve["avg_max"], float)[order], "-o", color=colour,
                markersize=4, linewidth=1.8)
        ax.plot(ks[order], np.asarray(curve["avg_mean"], float)[order], "--s", color=colour,
                markersize=3.5, linewidth=1.5)
    ax.set_xlabel("number of clusters K")
    ax.set_ylabel("within-cluster distance")
    ax.set_title("Within-cluster distance against K")
    ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colours[m], linewidth=2, label=m) for m in methods]
    handles += [
        Line2D([], [], linestyle="none", label=" "),
        Line2D([], [], color="0.3", linestyle="-", marker="o", markersize=4, label="average max"),
        Line2D([], [], color="0.3", linestyle="--", marker="s", markersize=3.5,
               label="average mean"),
    ]
    # outside the axes: the curves' shape varies too much by model for any inside spot to be safe
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="profile method",
               title_fontsize=8, frameon=False)
    return _save(fig, path)


def _select_group(results: Sequence[Any], k: int | None, method: str | None) -> tuple[list[Any], str | None, int | None]:
    """The results of one (method, K); defaults to the first group in Table 3 order."""
    from neurosearch.experiments.table3 import group_key, group_sort_key

    keys = sorted({group_key(r) for r in results}, key=group_sort_key)
    keys = [key for key in keys
            if (k is None or key[1] == k) and (method is None or key[0] == method)]
    if not keys:
        have = ", ".join(f"{m} K={kk}" for m, kk in sorted({group_key(r) for r in results}, key=group_sort_key))
        raise PlotError(f"no ablation results for {'method ' + method + ' ' if method else ''}"
                        f"{'K=' + str(k) if k is not None else ''} (have: {have or 'none'})")
    chosen = keys[0]
    return [r for r in results if group_key(r) == chosen], chosen[0], chosen[1]


# --------------------------------------------------------------------------- Fig. 4


def _by_value_desc(readout: Any) -> float:
    """Sort key: largest statistic first, results without one last (NaN would scramble sort)."""
    return -float(readout.value) if np.isfinite(readout.value) else np.inf


def plot_cluster_losses(
    results: Sequence[Any],
    path: str | os.PathLike[str],
    *,
    k: int | None = None,
    method: str | None = None,
    readout: str | None = None,
) -> Path:
    """Fig. 4: each cluster's statistic in one readout next to its random baselines (mean +- std).

    ``results`` are ``AblationResult`` objects. One (method, K) per figure; with ``k``/``method``
    unset the first group in Table 3 order is drawn; ``readout`` defaults to the first result's
    first readout (``mlm``: % loss change, the paper's figure; ``embedding``: displacement ratio).
    Clusters are sorted by their own statistic so the gap to the baselines reads at a glance.
    """
    group, method, k = _select_group(results, k, method)
    readout = readout or next(iter(group[0].readouts))
    group = [r for r in group if readout in r.readouts]
    if not group:
        raise ValueError(f"no {readout} results for method={method!r}, k={k!r}")
    ids = {id(r.readouts[readout]): r.target.id for r in group}
    chosen = sorted((r.readouts[readout] for r in group), key=_by_value_desc)
    n = len(chosen)
    x = np.arange(n)
    fig = _figure(*FIGSIZES["cluster_losses"])
    ax = fig.add_subplot()

    baselines = [b for b in BASELINES if any(b in r.baselines for r in chosen)]
    baselines += sorted({b for r in chosen for b in r.baselines} - set(baselines))
    few = n <= 40  # few clusters: grouped bars/points per cluster; many: curves over the rank
    slots = len(baselines) + 1
    width = 0.8 / slots if few else 0.0

    def offset(slot: int) -> float:
        return (slot - (slots - 1) / 2) * width

    value = np.array([r.value for r in chosen], float)
    if few:
        ax.bar(x + offset(0), value, width=width, color="tab:red", alpha=0.85, label="cluster ablated", zorder=1)
    else:
        ax.plot(x, value, "-", color="tab:red", linewidth=1.8, label="cluster ablated", zorder=3)
    for i, name in enumerate(baselines):
        mean = np.array([r.baselines[name].mean if name in r.baselines else np.nan for r in chosen], float)
        std = np.nan_to_num(np.array([r.baselines[name].std if name in r.baselines else np.nan for r in chosen], float))
        colour, marker = _BASELINE_STYLE.get(name, (f"C{i + 4}", "D"))
        label = f"{name}: {BASELINE_DESCRIPTIONS[name]} (mean ± std)" if name in BASELINE_DESCRIPTIONS else name
        if few:
            ax.errorbar(x + offset(i + 1), mean, yerr=std, fmt=marker, markersize=4, capsize=2,
                        elinewidth=1, color=colour, label=label, zorder=2)
        else:
            ax.plot(x, mean, "-", color=colour, linewidth=1, label=label, zorder=2)
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
    ratio = readout == "embedding"
    short = ["/".join(ids[id(r)].rsplit("/", 2)[-2:]) for r in chosen]  # k200/84
    passing = [i for i, r in enumerate(chosen) if r.verdict.passed]
    if passing:  # which clusters pass: a star above each, and their ids
        top = np.nanmax(np.abs(value)) if np.isfinite(value).any() else 1.0
        ax.plot(x[passing], value[passing] + 0.04 * top, "*", color="black", markersize=7 if few else 5,
                label="passed (beat every baseline, t and rank p)", zorder=4)
        listed = ", ".join(short[i] for i in passing[:12]) + (f", … ({len(passing)} in all)" if len(passing) > 12 else "")
        ax.text(0.01, 0.02, f"passing: {listed}", transform=ax.transAxes, fontsize=7, va="bottom", ha="left",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "linewidth": 0.5})
    ax.axhline(1 if ratio else 0, color="black", linewidth=0.8)
    pad = 0.6 + max(0, 4 - n) / 2  # a lone cluster should not become one huge bar
    ax.set_xlim(-pad, n - 1 + pad)

    what = "displacement ratio" if ratio else "loss change"
    if few:
        labels = [s + ("*" if i in passing else "") for i, s in enumerate(short)]
        ax.set_xticks(x, labels, rotation=90 if n > 8 else 0, fontsize=7 if n > 15 else 8)
        for i in passing:
            ax.get_xticklabels()[i].set_fontweight("bold")
        ax.set_xlabel(f"cluster (sorted by {what})")
    else:
        ax.set_xlabel(f"cluster rank (sorted by {what})")
    ax.set_ylabel("embedding displacement, target / control" if ratio else f"{readout} loss change (%)")
    passable = [r for r in chosen if not any("cannot pass" in note for note in r.verdict.notes)]
    where = ", ".join(p for p in (method, f"K={k}" if k is not None else None) if p)
    verdict = (f"{sum(r.verdict.passed for r in passable) / len(passable):.0%} passed (beat every baseline, t and rank p)"
               if passable else "too few draws for a verdict" if baselines else "no baselines run")
    ax.set_title(f"{readout} readout, ablating each cluster ({where}): {verdict}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig. 5


def plot_cluster_neurons(
    neurons: Sequence[str],
    n_layers: int,
    neurons_per_layer: int,
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Fig. 5: a cluster's neurons by layer and index; indices shared across layers stand out."""
    points, layers_of = layers_of_neurons(neurons)
    shared = shared_indices(layers_of)
    fig = _figure(*FIGSIZES["cluster_neurons"])
    top, ax = fig.subplots(2, 1, sharex=True, height_ratios=[1, 3.2])

    counts = Counter(layer for layer, _ in points)
    layers = np.arange(n_layers)
    top.bar(layers, [counts.get(int(l), 0) for l in layers], color="tab:blue", alpha=0.8)
    top.set_ylabel("neurons")
    top.grid(True, axis="y", alpha=0.3)
    top.yaxis.get_major_locator().set_params(integer=True)

    single = [(l, i) for l, i in points if i not in shared]
    multi = [(l, i) for l, i in points if i in shared]
    if single:
        ax.scatter(*zip(*single), s=18, color="tab:blue", alpha=0.7, label="index in one layer",
                   zorder=2)
    if multi:
        for index, ls in shared.items():
            ax.plot(ls, [index] * len(ls), color="tab:orange", linewidth=0.8, alpha=0.6, zorder=1)
        ax.scatter(*zip(*multi), s=40, color="tab:orange", edgecolor="black", linewidth=0.6,
                   label="index shared by several layers", zorder=3)
        for index, ls in list(shared.items())[:12]:
            ax.annotate(str(index), (ls[-1], index), xytext=(5, 0), textcoords="offset points",
                        fontsize=7, va="center", color="0.25")
    ax.set_xlim(-0.5, n_layers - 0.5)
    ax.set_ylim(-0.02 * neurons_per_layer, 1.02 * neurons_per_layer)
    ax.set_xticks(layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("neuron index within layer")
    ax.grid(True, alpha=0.3)
    if points:
        fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    heading = title or "Neurons of the cluster"
    # the counts on a line of their own: a cluster's name and theme already fill the width
    top.set_title(f"{heading}\n{len(points)} neurons, {len(shared)} indices shared by several layers", fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig. 3


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project rows of ``x`` onto their first two principal components (numpy SVD)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:2].T
    if out.shape[1] < 2:
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    # fix SVD's arbitrary sign so the same data always gives the same picture
    signs = np.sign(out[np.argmax(np.abs(out), axis=0), range(2)])
    return out * np.where(signs == 0, 1, signs)


def plot_token_pca(
    clusters: Sequence[tuple[str, Sequence[str], np.ndarray]],
    path: str | os.PathLike[str],
    *,
    annotate: int = 5,
) -> Path:
    """Fig. 3: the clusters' top tokens in one 2-D PCA of their embeddings, a colour per cluster.

    Tokens are given best first, so the first ``annotate`` of each cluster are labelled.
    """
    from matplotlib import colormaps

    vectors = [np.asarray(v, dtype=np.float64) for _, _, v in clusters]
    sizes = [len(v) for v in vectors]
    if not vectors or sum(sizes) == 0:
        raise ValueError("no token vectors to plot")
    xy = pca_2d(np.concatenate(vectors, axis=0))
    cmap = colormaps["tab10" if len(clusters) <= 10 else "tab20"]
    fig = _figure(*FIGSIZES["token_pca"])
    ax = fig.add_subplot()
    start = 0
    labels: list[tuple[float, float, str, Any]] = []
    for c, ((label, tokens, _), size) in enumerate(zip(clusters, sizes)):
        pts = xy[start:start + size]
        start += size
        colour = cmap(c % cmap.N)
        short = label if len(label) <= 48 else label[:47] + "…"
        ax.scatter(pts[:, 0], pts[:, 1], s=22, color=colour, alpha=0.75, label=short,
                   edgecolor="white", linewidth=0.4)
        labels += [(pts[j, 0], pts[j, 1], token, colour)
                   for j, token in enumerate(list(tokens)[: min(annotate, size)])]
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("Top tokens of each cluster (PCA of token embeddings)")
    ax.grid(True, alpha=0.3)
    ax.margins(0.12)  # room for labels at the edges
    ax.set_aspect("equal", adjustable="datalim")  # keep PCA distances faithful
    fig.legend(loc="outside lower center", ncols=1 if len(clusters) <= 3 else 2, fontsize=8,
               frameon=False, markerscale=1.3)
    _place_labels(fig, ax, labels)
    return _save(fig, path)


def _place_labels(fig: Figure, ax: Any, labels: Sequence[tuple[float, float, str, Any]]) -> None:
    """Annotate points so that labels do not overlap each other (greedy, no extra dependency).

    The layout is drawn and frozen first so label extents in pixels are final; each label then
    takes the first offset around its point, nearest first, that collides with no placed label.
    """
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    fig.set_layout_engine("none")
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    axes_box = ax.get_window_extent(renderer)
    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    candidates = [(r * dx, r * dy) for r in (3, 9, 16, 24, 34, 46) for dx, dy in directions]
    placed: list[Any] = []
    for x, y, text, colour in labels:
        fallback = None
        for i, (dx, dy) in enumerate(candidates):
            ann = ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7.5,
                color=colour, fontweight="bold",
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7),
                arrowprops=dict(arrowstyle="-", color=colour, linewidth=0.6, shrinkA=0,
                                shrinkB=2) if max(abs(dx), abs(dy)) > 9 else None,
            )
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in placed):
                if fallback is not None:
                    fallback[0].remove()
                fallback = None
                placed.append(box)
                break
            if i == 0:
                fallback = (ann, box)  # nearest spot, kept if every spot is crowded
            else:
                ann.remove()
        if fallback is not None:
            placed.append(fallback[1])
