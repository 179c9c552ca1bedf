"""Neuron names ``L:I`` (layer, index within the layer) and their flat indices; no torch here."""

from __future__ import annotations

from .errors import NeurosearchError


def neuron_name(flat_index: int, neurons_per_layer: int) -> str:
    layer, index = divmod(int(flat_index), neurons_per_layer)
    return f"{layer}:{index}"


def parse_neuron(name: str, n_layers: int, neurons_per_layer: int) -> int:
    """Flat index of a neuron named ``L:I``; raises with a clear message when out of range."""
    try:
        layer_text, index_text = name.strip().split(":")
        layer, index = int(layer_text), int(index_text)
    except ValueError:
        raise NeurosearchError(f"bad neuron name '{name}': expected LAYER:INDEX, e.g. 3:1021") from None
    if not (0 <= layer < n_layers and 0 <= index < neurons_per_layer):
        raise NeurosearchError(
            f"neuron {name} is out of range: layers 0..{n_layers - 1}, indices 0..{neurons_per_layer - 1}"
        )
    return layer * neurons_per_layer + index
