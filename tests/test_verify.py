"""``neurosearch verify``: every kind of file the index has, its format, and its stored results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurosearch.cli.app import app

runner = CliRunner()
METHOD = "filter+smooth+tfidf"


def verify(index: Path, *extra: str):
    return runner.invoke(app, ["verify", "--index", str(index), *extra])


def problems(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if not line.startswith(("index ", "note: "))]


@pytest.fixture(scope="module")
def headed(small_index: Path, tmp_path_factory) -> Path:
    """The small index with a fitted MLM head (listed in its manifest)."""
    copy = tmp_path_factory.mktemp("headed") / "index"
    shutil.copytree(small_index, copy)
    fitted = runner.invoke(app, ["fit-head", "--index", str(copy), "--epochs", "0.2"])
    assert fitted.exit_code == 0, fitted.output
    return copy


@pytest.fixture
def copy(headed: Path, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(headed, target)
    return target


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_intact_index_verifies(headed: Path):
    result = verify(headed)
    assert result.exit_code == 0, result.output
    assert problems(result) == [] and ": ok (" in result.stdout
    data = json.loads(verify(headed, "--json").stdout)
    manifest = json.loads((headed / "manifest.json").read_text())
    assert data["ok"] and data["problems"] == [] and data["checked"]["files"] == len(manifest["files"])
    assert data["checked"]["heads"] == 1


@pytest.mark.parametrize("relative", [
    "neurons/mean.npy",                          # .npy array
    f"methods/{METHOD}/clusters_k6.json",        # .json
    f"search/{METHOD}/neurons.hnsw",             # HNSW graph
    "head/head.safetensors",                     # safetensors weights of the fitted head
    "tokenizer.json",                            # the model's tokenizer
    "search/wordpiece_vocab.txt",                # text
])
def test_verify_names_a_corrupted_file_of_each_kind(copy: Path, relative: str):
    assert relative in json.loads((copy / "manifest.json").read_text())["files"]
    flip_a_byte(copy / relative)
    result = verify(copy)
    assert result.exit_code == 1
    assert problems(result) == [f"{relative}: sha256 does not match the manifest (corrupt or changed since the build)"]
    data = json.loads(verify(copy, "--json").stdout)
    assert not data["ok"] and [p["file"] for p in data["problems"]] == [relative]


def test_verify_names_every_missing_file(copy: Path):
    (copy / "neurons" / "std.npy").unlink()
    (copy / "tokens.json").unlink()
    result = verify(copy)
    assert result.exit_code == 1
    assert problems(result) == ["neurons/std.npy: missing (listed in the manifest)",
                                "tokens.json: missing (listed in the manifest)"]


def test_verify_names_a_corrupt_or_foreign_manifest(copy: Path):
    manifest = copy / "manifest.json"
    original = manifest.read_text()
    manifest.write_text(original[: len(original) // 2])  # truncated
    result = verify(copy)
    assert result.exit_code == 1 and len(problems(result)) == 1
    assert problems(result)[0].startswith("manifest.json: corrupt index file") and "not valid JSON" in result.stdout
    manifest.write_text(json.dumps({**json.loads(original), "format_version": 99}))
    result = verify(copy)
    assert result.exit_code == 1 and "format version 99" in problems(result)[0]
    data = json.loads(original)
    data["stages"]["search"]["format"] = 1
    manifest.write_text(json.dumps(data))
    assert "search files of format 1" in problems(verify(copy))[0]


def test_a_head_in_the_state_folder_is_checked_against_its_record(copy: Path, tmp_path: Path):
    from neurosearch import Index

    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("head/")}
    manifest["read_only"] = True
    (copy / "manifest.json").write_text(json.dumps(manifest))
    user = Index.load(copy, state_root=tmp_path / "state").state.write_path("head")
    shutil.move(copy / "head", user)
    assert runner.invoke(app, ["--state-dir", str(tmp_path / "state"), "verify", "--index", str(copy)]).exit_code == 0
    flip_a_byte(user / "head.safetensors")
    result = runner.invoke(app, ["--state-dir", str(tmp_path / "state"), "verify", "--index", str(copy)])
    assert result.exit_code == 1
    assert problems(result) == [f"{user}/head.safetensors: sha256 does not match head.json (corrupt or changed)"]


def test_a_head_without_a_recorded_hash_is_checked_for_structure(copy: Path):
    from neurosearch.index.verify import safetensors_problem

    weights = copy / "head" / "head.safetensors"
    assert safetensors_problem(weights) is None
    weights.write_bytes(weights.read_bytes()[:-10])
    assert "truncated" in safetensors_problem(weights)
    weights.write_bytes(b"\xff" * 64)
    assert "not a safetensors file" in safetensors_problem(weights)


def _cluster(index_dir: Path, k: int, number: int) -> list[str]:
    from neurosearch import Index

    index = Index.load(index_dir)
    return index.cluster(f"{METHOD}/k{k}/{number}").neurons


def test_stale_and_orphaned_results_are_named(copy: Path):
    from neurosearch.index.verify import neuron_set_hash

    fresh = _cluster(copy, 6, 1)
    second = _cluster(copy, 6, 2)
    other = second + [next(f"0:{i}" for i in range(24) if f"0:{i}" not in second)]  # one neuron too many
    results = {
        f"cluster:{METHOD}/k6/1": {"target": {"kind": "cluster", "id": f"{METHOD}/k6/1", "neurons": fresh,
                                              "neurons_sha256": neuron_set_hash(fresh)}},
        f"cluster:{METHOD}/k6/2": {"target": {"kind": "cluster", "id": f"{METHOD}/k6/2", "neurons": other}},
        f"cluster:{METHOD}/k3/0": {"target": {"kind": "cluster", "id": f"{METHOD}/k3/0"}},
        f"cluster:{METHOD}/k6/3": {"target": {"kind": "cluster", "id": f"{METHOD}/k6/3",
                                              "neurons": _cluster(copy, 6, 3), "neurons_sha256": "0" * 16}},
        "neuron:0:1": {"target": {"kind": "neurons", "id": "0:1", "neurons": ["0:1"]}},
        f"cluster:{METHOD}/k6/99": {"target": {"kind": "cluster", "id": f"{METHOD}/k6/99", "neurons": ["0:1"]}},
    }
    (copy / "ablations.json").write_text(json.dumps({"version": 1, "results": results}))
    lines = [json.dumps({"target": {"kind": "cluster", "id": f"{METHOD}/k6/2", "neurons": other}}),
             json.dumps({"target": {"kind": "cluster", "id": f"{METHOD}/k6/1", "neurons": fresh[:1] + ["9:9"]}}),
             json.dumps({"target": {"kind": "cluster", "id": f"{METHOD}/k6/1", "neurons": fresh}}),  # recomputed
             '{"target": {"kind": "clus']  # a torn last line
    (copy / "evaluation").mkdir()
    (copy / "evaluation" / "results.jsonl").write_text("\n".join(lines))
    from neurosearch.labeling.llm import Label, save_labels

    label = Label("days", "Weekdays.", "m", "h", "llm")
    save_labels(copy / "labels.json", {f"cluster:{METHOD}/k6/0": label, f"cluster:{METHOD}/k9/0": label,
                                       "neuron:0:1": label, "neuron:77:0": label})
    result = verify(copy)
    assert result.exit_code == 1
    found = problems(result)
    assert len(found) == 7, found
    assert [line.split(": result ")[1].split(" is ")[0] for line in found[:4]] == [
        f"cluster:{METHOD}/k6/2", f"cluster:{METHOD}/k3/0", f"cluster:{METHOD}/k6/3", f"cluster:{METHOD}/k6/99"]
    assert "stale" in found[0] and "unknown neuron set" in found[1] and "hash" in found[2]
    assert "does not have" in found[3] and found[0].endswith(f"rerun `neurosearch ablate {METHOD}/k6/2`")
    assert found[4].startswith(f"evaluation/results.jsonl: result for {METHOD}/k6/2 is about")
    assert found[5].startswith(f"labels.json: label cluster:{METHOD}/k9/0 is about")
    assert found[6].startswith("labels.json: label neuron:77:0 is about neurons 77:0")
    assert "note: evaluation/results.jsonl: 1 unreadable line(s) skipped" in result.stdout
    (copy / "ablations.json").write_text("{broken")
    assert any(line.startswith("ablations.json: ") and "not a valid" in line for line in problems(verify(copy)))


def test_results_about_tree_nodes_are_checked_like_any_cluster(copy: Path):
    from neurosearch import Index
    from neurosearch.index.verify import neuron_set_hash

    node = Index.load(copy).cluster(f"{METHOD}/tree/3").neurons
    results = {
        f"cluster:{METHOD}/tree/3": {"target": {"kind": "cluster", "id": f"{METHOD}/tree/3", "neurons": node,
                                                "neurons_sha256": neuron_set_hash(node)}},
        f"cluster:{METHOD}/tree/4": {"target": {"kind": "cluster", "id": f"{METHOD}/tree/4", "neurons": node + ["0:0"]}},
        f"cluster:{METHOD}/tree/99999": {"target": {"kind": "cluster", "id": f"{METHOD}/tree/99999", "neurons": node}},
    }
    (copy / "ablations.json").write_text(json.dumps({"version": 1, "results": results}))
    found = problems(verify(copy))
    assert len(found) == 2, found  # the current one passes; the stale one and the missing node are named
    assert "tree/4" in found[0] and "stale" in found[0] and "tree/99999" in found[1] and "does not have" in found[1]


def test_verify_without_an_index_is_one_line(tmp_path: Path):
    result = verify(tmp_path / "nowhere")
    assert result.exit_code == 1 and result.stderr.strip().startswith("neurosearch: error: index not found")
