"""Where a neuron set sits: neurons per layer and indices shared across layers (the paper's Fig. 5),
as data for the figures (``plots``, ``report``) and as text for the terminal (``show cluster``).
Standard library only."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from neurosearch.ids import split_neuron as parse_neuron


def shared_indices(layers_of: Mapping[int, set[int]]) -> dict[int, list[int]]:
    """Indices that occur in more than one layer -> sorted layers, most shared first."""
    shared = {i: sorted(ls) for i, ls in layers_of.items() if len(ls) > 1}
    return dict(sorted(shared.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def layers_of_neurons(neurons: Sequence[str]) -> tuple[list[tuple[int, int]], dict[int, set[int]]]:
    points = [parse_neuron(n) for n in neurons]
    layers_of: dict[int, set[int]] = defaultdict(set)
    for layer, index in points:
        layers_of[index].add(layer)
    return points, layers_of


def neuron_layer_text(neurons: Sequence[str], n_layers: int, *, width: int = 30,
                      max_shared: int = 20) -> str:
    """Fig. 5 for the terminal: neurons per layer as bars, then indices shared across layers."""
    points, layers_of = layers_of_neurons(neurons)
    counts = Counter(layer for layer, _ in points)
    most = max(counts.values(), default=0)
    lw = len(str(max(n_layers - 1, 0)))
    cw = len(str(most))
    lines = [f"{len(points)} neurons in {len(counts)} of {n_layers} layers"]
    for layer in range(n_layers):
        c = counts.get(layer, 0)
        bar = "█" * (round(width * c / most) if most else 0)
        if c and not bar:
            bar = "▏"
        lines.append(f"layer {layer:>{lw}} | {c:>{cw}} {bar}".rstrip())
    extra = sorted(set(counts) - set(range(n_layers)))
    if extra:
        lines.append(f"(outside 0..{n_layers - 1}: layers {','.join(map(str, extra))})")
    shared = shared_indices(layers_of)
    lines.append(f"{len(layers_of)} distinct indices, {len(shared)} in more than one layer")
    for index, ls in list(shared.items())[:max_shared]:
        lines.append(f"  index {index} in {len(ls)} layers: {','.join(map(str, ls))}")
    if len(shared) > max_shared:
        lines.append(f"  ... and {len(shared) - max_shared} more shared indices")
    return "\n".join(lines)
