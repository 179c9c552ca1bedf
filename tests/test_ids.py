"""Neuron names and cluster ids: parsed and formatted in ids.py only."""

from __future__ import annotations

import pytest

from neurosearch.errors import NeurosearchError
from neurosearch.ids import (BadClusterId, BadNeuronName, ClusterId, NeuronId, cluster_id, neuron_name,
                             parse_neuron, split_neuron)


def test_neuron_ids_round_trip():
    assert NeuronId.parse(" 3:1021 ") == NeuronId(3, 1021) and str(NeuronId(3, 1021)) == "3:1021"
    assert NeuronId.of_flat(5 * 1536 + 7, 1536) == NeuronId(5, 7)
    assert neuron_name(5 * 1536 + 7, 1536) == "5:7" and parse_neuron("5:7", 6, 1536) == 5 * 1536 + 7
    assert split_neuron("2:9") == (2, 9)


@pytest.mark.parametrize("name", ["12", "a:b", "1:2:3", ""])
def test_bad_neuron_names_are_one_line_errors(name):
    with pytest.raises(BadNeuronName, match="expected LAYER:INDEX"):
        NeuronId.parse(name)


def test_neurons_outside_the_model_are_named_as_written():
    with pytest.raises(BadNeuronName, match=r"neuron 06:1 is out of range: layers 0..5, indices 0..9"):
        parse_neuron("06:1", 6, 10)


def test_cluster_ids_parse_complete_and_format():
    assert ClusterId.parse("17") == ClusterId(None, None, 17) and str(ClusterId.parse("17")) == "17"
    assert ClusterId.parse("k50/17") == ClusterId(None, 50, 17) and str(ClusterId.parse("k50/17")) == "k50/17"
    full = ClusterId.parse("filter+tfidf/k200/17")
    assert full == ClusterId("filter+tfidf", 200, 17) and str(full) == "filter+tfidf/k200/17"
    assert ClusterId.parse("17").complete("filter", 200) == ClusterId("filter", 200, 17)
    assert ClusterId.parse("k50/17").complete("filter", 200) == ClusterId("filter", 50, 17)
    assert full.complete("filter", 50) == full and full.row_key == "k200/17"
    assert ClusterId.of_row("filter", "k200/17") == ClusterId("filter", 200, 17)
    assert cluster_id("filter", 200, 17) == "filter/k200/17"


def test_tree_nodes_are_clusters_with_k_0():
    node = ClusterId.parse("tree/412")
    assert node == ClusterId(None, 0, 412) and str(node) == "tree/412" and node.row_key == "tree/412"
    assert node.complete("filter", 200) == ClusterId("filter", 0, 412)  # a tree node keeps K = 0
    full = ClusterId.parse("filter+tfidf/tree/412")
    assert full == ClusterId("filter+tfidf", 0, 412) and str(full) == "filter+tfidf/tree/412"
    assert ClusterId.of_row("filter", "tree/412") == ClusterId("filter", 0, 412)


@pytest.mark.parametrize("text", ["", "abc", "k/17", "200/17", "filter/200/17", "a/b/k200/17", "kx/1",
                                  "k0/17", "tree/x", "tree/-1", "a/b/tree/1"])
def test_bad_cluster_ids_are_one_line_errors(text):
    with pytest.raises(BadClusterId, match="use ID, kK/ID, METHOD/kK/ID or tree/ID") as caught:
        ClusterId.parse(text)
    assert isinstance(caught.value, NeurosearchError)


def test_feature_ids_round_trip():
    from neurosearch.ids import FeatureId, UnitNames, feature_name, is_unit_name, unit_noun

    assert FeatureId.parse(" L2:f1234 ") == FeatureId(2, 1234) and str(FeatureId(2, 1234)) == "L2:f1234"
    assert feature_name(7, 2) == "L2:f7" and split_neuron("L2:f7") == (2, 7)
    features = UnitNames(1, 12288, 2)
    assert features.features and features.noun == "feature"
    assert features.name(1234) == "L2:f1234" and features.flat("L2:f1234") == 1234
    neurons = UnitNames(6, 1536)
    assert not neurons.features and neurons.noun == "neuron"
    assert neurons.name(5 * 1536 + 7) == "5:7" and neurons.flat("5:7") == 5 * 1536 + 7
    assert is_unit_name("L2:f3") and is_unit_name("2:3") and not is_unit_name("k200/17") and not is_unit_name("17")
    assert unit_noun("L2:f3") == "feature" and unit_noun("2:3") == "neuron"


@pytest.mark.parametrize("name", ["L2:1234", "L:f1", "Lx:f1", "L2:fx", "L2:f", "L2f1", "L2:f1:3"])
def test_bad_feature_names_are_one_line_errors(name):
    from neurosearch.ids import BadFeatureName, FeatureId

    with pytest.raises(BadFeatureName, match="expected LLAYER:fINDEX") as caught:
        FeatureId.parse(name)
    assert isinstance(caught.value, NeurosearchError) and "\n" not in str(caught.value)


def test_units_of_the_other_kind_or_outside_the_sae_are_refused():
    from neurosearch.ids import UnitNames

    with pytest.raises(BadNeuronName, match="'L2:f3' names an SAE feature; this index's units are neurons"):
        UnitNames(6, 1536).flat("L2:f3")
    features = UnitNames(1, 100, 2)
    with pytest.raises(BadNeuronName, match="'2:3' names a neuron; this index's units are the features of an SAE at layer 2"):
        features.flat("2:3")
    with pytest.raises(BadNeuronName, match=r"feature L3:f3 is out of range: this index holds features L2:f0 .. L2:f99"):
        features.flat("L3:f3")
    with pytest.raises(BadNeuronName, match="feature L2:f100 is out of range"):
        features.flat("L2:f100")
