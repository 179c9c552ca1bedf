"""Tree nodes at query time (``pipeline/tree.py`` stores them): which neurons a node holds."""

from __future__ import annotations

from typing import Callable, Sequence


def node_neurons(children: Callable[[int], Sequence[int]], n_neurons: int, node: int) -> list[int]:
    """The neurons (flat indices) below tree node ``node``; ``children(j)`` gives node j's two
    children (below ``n_neurons``: a neuron, else node ``child - n_neurons``)."""
    found, stack = [], [node + n_neurons]
    while stack:
        current = stack.pop()
        if current < n_neurons:
            found.append(current)
        else:
            stack.extend(int(c) for c in children(current - n_neurons))
    return sorted(found)
