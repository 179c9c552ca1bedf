"""Every node of the cluster tree as a searchable cluster: hand-made nodes, and the tiny index's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from neurosearch.pipeline.tree import tree_nodes
from neurosearch.cli.app import app
from neurosearch.index import Index
from neurosearch.index.tree import node_neurons


def test_tree_nodes_of_a_hand_made_tree():
    # three neurons over four tokens; merge 0 joins neurons 0 and 1, merge 1 joins node 0 and neuron 2
    unit = np.array([[1.0, 0.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    z = np.array([[0, 1, 0.4, 2], [3, 2, 1.0, 3]], dtype=np.float64)
    nodes = tree_nodes(unit, z, top=2)
    assert nodes.sizes.tolist() == [2, 3]
    assert nodes.top_tokens[0].tolist() == [0, 1]  # mean (0.8, 0.4, 0, 0)
    np.testing.assert_allclose(nodes.top_weights[0], [0.8, 0.4])
    assert nodes.top_tokens[1].tolist() == [0, 3]  # mean (1.6, 0.8, 0, 1) / 3: token 0 first, then 3 and 1 tie at 1/3 vs 0.27
    # mean pairwise cosine distance: node 0 = 1 - 0.6; node 1 = 1 - (0.6 + 0 + 0) / 3; the max is the merge height
    np.testing.assert_allclose(nodes.distances[0], [0.4, 0.4], rtol=1e-6)
    np.testing.assert_allclose(nodes.distances[1], [0.8, 1.0], rtol=1e-6)
    children = nodes.children
    assert node_neurons(lambda j: children[j], 3, 0) == [0, 1] and node_neurons(lambda j: children[j], 3, 1) == [0, 1, 2]


def test_find_scores_the_trees_nodes_and_show_takes_their_ids(tiny_index):
    index = Index.load(tiny_index)
    keys = index.cluster_keys(index.search_method)
    assert any(key.startswith("tree/") for key in keys) and any(key.startswith("k3/") for key in keys)
    result = index.find(tokens=index.kept_tokens[:5], kind="clusters", top=20, all_hits=True)
    assert result.results and all("/tree/" in hit.id for hit in result.results)  # default: the query picks the node
    hit = result.results[0]
    info = index.cluster(hit.id)
    assert info.k == 0 and info.key == hit.id and sorted(info.neurons) == sorted(hit.neurons)
    assert sum(info.layer_sizes.values()) == len(info.neurons) == hit.size >= 2
    cut = index.find(tokens=index.kept_tokens[:5], kind="clusters", k=3, all_hits=True)
    assert all("/k3/" in h.id for h in cut.results)  # --k: one cut's clusters
    runner = CliRunner()
    shown = runner.invoke(app, ["show", "cluster", hit.id, "--index", str(tiny_index), "--json", "--contexts", "2"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert (data["method"], data["k"], data["id"]) == (index.search_method, 0, info.id)
    assert sorted(data["neurons"]) == sorted(hit.neurons)
    alone = next(h for h in result.results if index.lookup.same_cut_cluster(index.cluster(h.id)) is None)
    text = runner.invoke(app, ["show", "cluster", alone.id, "--index", str(tiny_index), "--contexts", "2"])
    assert text.exit_code == 0 and "not for the tree's nodes" in text.stdout
    missing = runner.invoke(app, ["show", "cluster", "tree/999999", "--index", str(tiny_index)])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


def test_the_tree_is_the_one_the_clusters_stage_cut(tiny_index):
    """Every cluster of a cut is a node of the searched tree (or a single neuron): the same linkage."""
    index = Index.load(tiny_index)
    children = index.files.table(f"search/{index.search_method}/tree_children.npy")
    n = index.manifest.n_neurons
    nodes = {tuple(node_neurons(children.row, n, j)) for j in range(children.shape[0])}
    for k in index.ks:
        for cluster in index.clusters(index.search_method, k):
            members = tuple(sorted(cluster.neurons + cluster.dropped))
            assert len(members) == 1 or members in nodes


def test_a_tree_node_that_is_a_cut_cluster_shows_that_clusters_contexts(tiny_index):
    from neurosearch.index.evidence import cluster_evidence

    index = Index.load(tiny_index)
    cut = index.cluster(f"k3/{next(c.id for c in index.clusters(index.search_method, 3) if len(c.neurons) > 1)}")
    children = index.files.table(f"search/{index.search_method}/tree_children.npy")
    wanted = sorted(index.manifest.neuron_index(n) for n in cut.neurons)
    node = next(j for j in range(children.shape[0])
                if node_neurons(children.row, index.manifest.n_neurons, j) == wanted)
    info = index.cluster(f"tree/{node}")
    assert index.lookup.same_cut_cluster(info) == f"k3/{cut.id}"
    assert cluster_evidence(index, info).token_means == cluster_evidence(index, cut).token_means
    assert cluster_evidence(index, info).note is None


@pytest.mark.parametrize("text", ["tree/x", "k0/1"])
def test_bad_tree_ids_are_one_line_errors(tiny_index, text):
    result = CliRunner().invoke(app, ["show", "cluster", text, "--index", str(tiny_index)])
    assert result.exit_code == 1 and "bad cluster id" in result.stderr


def _node_of_cut_cluster(index: Index) -> tuple[str, int]:
    """(``k3/ID``, tree node number) of a cut cluster of several neurons and the node that is it."""
    cut = next(c for c in index.clusters(index.search_method, 3) if len(c.neurons) > 1)
    children = index.files.table(f"search/{index.search_method}/tree_children.npy")
    node = next(j for j in range(children.shape[0])
                if node_neurons(children.row, index.manifest.n_neurons, j) == sorted(cut.neurons))
    return f"k3/{cut.id}", node


def test_label_ids_labels_tree_nodes_and_a_node_takes_its_cut_clusters_label(tiny_index, tmp_path, llm, monkeypatch):
    import shutil

    from fake_llm import Reply

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    copy = tmp_path / "index"
    shutil.copytree(tiny_index, copy)
    index = Index.load(copy)
    cut, node = _node_of_cut_cluster(index)
    other = next(j for j in range(index.files.table(f"search/{index.search_method}/tree_children.npy").shape[0])
                 if index.lookup.same_cut_cluster(index.cluster(f"tree/{j}")) is None)
    runner = CliRunner()
    base = ["label", "--index", str(copy), "--base-url", llm.base_url, "--contexts", "0"]
    for bad, fragment in ((["--ids", "tree/999999"], "does not exist"), (["--ids", "9:99999"], "out of range"),
                          (["--ids", ","], "--ids is empty"), (["--ids", "0:1", "--k", "3"], "leave out --k")):
        result = runner.invoke(app, [*base, *bad])
        assert result.exit_code == 1 and fragment in result.stderr and "Traceback" not in result.output, result.output
    assert not llm.seen  # nothing was asked for a bad --ids

    llm.respond = lambda seen, n: Reply(content='{"theme": "the cut theme", "explanation": "From the cut."}')
    assert runner.invoke(app, [*base, "--ids", cut]).exit_code == 0
    assert len(llm.seen) == 1
    index = Index.load(copy)
    info = index.cluster(f"tree/{node}")  # the same neurons as the cut cluster: its label
    assert (info.label["theme"], info.label["source"], info.label["explanation"]) == ("the cut theme", "llm", "From the cut.")
    assert index.cluster(f"tree/{other}").label["source"] == "fallback"

    llm.respond = lambda seen, n: Reply(content='{"theme": "a node theme", "explanation": "Its own."}')
    result = runner.invoke(app, [*base, "--ids", f"tree/{other},0:1", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["labelled"] == 2, result.output
    index = Index.load(copy)
    assert ", ".join(index.cluster(f"tree/{other}").top_tokens[:3]) in llm.seen[-2].prompt  # the node's own tokens
    assert index.cluster(f"tree/{other}").label["theme"] == "a node theme"
    hit_ids = {f"{index.search_method}/tree/{other}", f"{index.search_method}/tree/{node}"}
    found = index.find(tokens=index.cluster(f"tree/{other}").top_tokens[:3], kind="clusters", top=50, all_hits=True)
    themes = {h.id: (h.label, h.label_source) for h in found.results if h.id in hit_ids}
    assert themes.get(f"{index.search_method}/tree/{other}") == ("a node theme", "llm")
    assert runner.invoke(app, [*base, "--ids", f"tree/{other}"]).exit_code == 0
    assert len(llm.seen) == 3  # cached: not asked again
