"""Neuron names ``L:I`` (layer, index within the layer) and their flat indices; no torch here."""

from __future__ import annotations

from neurosearch.errors import NeurosearchError


def neuron_name(flat_index: int, neurons_per_layer: int) -> str:
    layer, index = divmod(int(flat_index), neurons_per_layer)
    return f"{layer}:{index}"


class BadNeuronName(NeurosearchError, ValueError):
    """A neuron name that is not ``LAYER:INDEX`` or lies outside the model."""


def split_neuron(name: str) -> tuple[int, int]:
    """``"L:I"`` -> (layer, index)."""
    try:
        layer_text, index_text = str(name).strip().split(":")
        return int(layer_text), int(index_text)
    except ValueError:
        raise BadNeuronName(f"bad neuron name '{name}': expected LAYER:INDEX, e.g. 3:1021") from None


def parse_neuron(name: str, n_layers: int, neurons_per_layer: int) -> int:
    """Flat index of a neuron named ``L:I``; raises with a clear message when out of range."""
    layer, index = split_neuron(name)
    if not (0 <= layer < n_layers and 0 <= index < neurons_per_layer):
        raise BadNeuronName(
            f"neuron {name} is out of range: layers 0..{n_layers - 1}, indices 0..{neurons_per_layer - 1}"
        )
    return layer * neurons_per_layer + index
