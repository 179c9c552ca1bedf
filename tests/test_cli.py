"""The command line: one clear line on stderr and a non-zero exit for every kind of bad input."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurosearch.cli.app import app
from neurosearch.format import layout

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("neurosearch: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def _bad_corpora(tmp_path: Path) -> list[tuple[list[str], str]]:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text('{"text": "fine"}\n{"text": broken\n')
    other_field = tmp_path / "other.jsonl.gz"
    with gzip.open(other_field, "wt") as handle:
        handle.write(json.dumps({"body": "hello"}) + "\n")
    return [
        ([str(tmp_path / "missing.txt")], "not found"),
        ([str(empty)], "no documents"),
        ([str(binary)], "binary"),
        ([str(malformed)], "line 2: not valid JSON"),
        ([str(other_field)], "no field 'text'"),
    ]


def test_bad_corpus_files(tmp_path: Path, tiny_model: Path):
    for (corpus,), fragment in _bad_corpora(tmp_path):
        out = tmp_path / "out"
        result = run("build", "--corpus", corpus, "--out", str(out), "--model", str(tiny_model), "-q")
        assert_one_line_error(result, fragment)
        assert not out.exists(), f"half-written index left behind for {corpus}"


def test_unknown_model_path(tmp_path: Path, tiny_corpus: Path):
    out = tmp_path / "out"
    result = run("build", "--corpus", str(tiny_corpus), "--out", str(out), "--model", str(tmp_path / "no-model"), "-q")
    assert_one_line_error(result, "no-model")
    assert not out.exists()


def test_k_larger_than_neurons(tmp_path: Path, tiny_model: Path, tiny_corpus: Path):
    out = tmp_path / "out"
    result = run("build", "--corpus", str(tiny_corpus), "--out", str(out), "--model", str(tiny_model),
                 "--k", "5,1000", "--min-count", "2", "--dtype", "float32", "-q")
    assert_one_line_error(result, "larger than the number of neurons")


def test_find_show_info_work(tiny_index: Path):
    result = run("find", "monday", "--index", str(tiny_index), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["query"] == "monday" and data["expanded_tokens"][0]["token"] == "monday"
    kinds = {r["kind"] for r in data["results"]}
    assert kinds == {"cluster", "neuron"}
    for hit in data["results"]:
        assert set(hit) >= {"kind", "id", "score", "label", "top_tokens", "size", "neurons"}
        assert len(hit["top_tokens"]) >= 20
    assert run("find", "--tokens", "monday,friday", "--index", str(tiny_index)).exit_code == 0
    assert run("show", "cluster", "0", "--index", str(tiny_index)).exit_code == 0
    assert run("show", "neuron", "1:3", "--index", str(tiny_index), "--json").exit_code == 0
    assert run("info", "--index", str(tiny_index)).exit_code == 0


def test_library_find_matches_cli(tiny_index: Path):
    from neurosearch import Index

    api = Index.load(tiny_index).find("music", top=5).to_json()
    cli = json.loads(run("find", "music", "--top", "5", "--index", str(tiny_index), "--json").stdout)
    assert api == cli


def test_hnsw_and_exact_agree_on_a_small_index(tiny_index: Path):
    from neurosearch import Index

    index = Index.load(tiny_index)
    for query in ("monday", "red", "dog"):
        expanded = index.expand(query)
        for kind in ("neurons", "clusters"):
            approx = [r for r, _ in index.rank(kind, expanded, exact=False)[:10]]
            exact = [r for r, _ in index.rank(kind, expanded, exact=True)[:10]]
            assert set(approx) == set(exact)
            assert index.rank(kind, expanded, exact=True, limit=3) == index.rank(kind, expanded, exact=True)[:3]


def test_indexes_without_the_wordpiece_files_tokenise_with_the_tokenizers_library(tiny_index: Path, tmp_path: Path):
    from neurosearch import Index

    older = tmp_path / "older"
    shutil.copytree(tiny_index, older)
    manifest = json.loads((older / "manifest.json").read_text())
    for name in ("search/wordpiece.json", "search/wordpiece_vocab.txt"):
        del manifest["files"][name]
        (older / name).unlink()
    (older / "manifest.json").write_text(json.dumps(manifest))
    from neurosearch.model.phrases import PhraseEmbedder

    index = Index.load(older, embedder=PhraseEmbedder())  # "red dog" has no stored expansion: the slow path tokenises it
    def same(result):  # the slow path's note names the seconds it took, which vary
        return {**result.to_json(), "notes": [re.sub(r"[0-9.]+ s\)", "s)", note) for note in result.notes]}

    for query in ("monday", "red dog", "Mondays!"):
        assert same(index.find(query)) == same(Index.load(tiny_index, embedder=PhraseEmbedder()).find(query))
    # the fallback was used: the tokenizers library's file was read, the WordPiece settings were not
    assert index.files.was_read(layout.TOKENIZER) and not index.files.was_read(layout.WORDPIECE)


def test_find_scans_small_indexes_exactly_and_uses_hnsw_when_asked(tiny_index: Path):
    from neurosearch import Index
    from neurosearch.config import SearchConfig

    small = Index.load(tiny_index)
    default = small.find("monday")
    graphs = [layout.hnsw_file(small.search_method, kind) for kind in layout.KINDS]
    assert not any(small.files.was_read(g) for g in graphs)  # below hnsw_min_rows the graph is never loaded
    forced = Index.load(tiny_index, SearchConfig(hnsw_min_rows=0))
    assert forced.find("monday").to_json() == default.to_json() and all(forced.files.was_read(g) for g in graphs)
    assert json.loads(run("find", "monday", "--ann", "--json", "--index", str(tiny_index)).stdout) == default.to_json()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["find", ""], "empty query"),
        (["find", "--tokens", "zzqqxx"], "unknown token(s) zzqqxx"),
        (["find", "monday", "--top", "0"], "--top must be at least 1"),
        (["show", "cluster", "99"], "does not exist"),
        (["show", "cluster", "k7/1"], "K=7 is not in this index"),
        (["show", "neuron", "9:0"], "out of range"),
        (["show", "neuron", "abc"], "bad neuron name"),
    ],
)
def test_find_and_show_errors(tiny_index: Path, args: list[str], fragment: str):
    assert_one_line_error(run(*args, "--index", str(tiny_index)), fragment)


def test_missing_and_corrupt_index(tmp_path: Path, tiny_index: Path):
    assert_one_line_error(run("find", "monday", "--index", str(tmp_path / "nowhere")), "index not found")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_index, broken)
    method = json.loads((broken / "manifest.json").read_text())["configs"]["profiles"]["search_method"]
    target = broken / "search" / method / "neurons_postings_weights.npy"  # a file find reads
    target.write_bytes(target.read_bytes()[:-7] + b"garbage")
    assert_one_line_error(run("find", "monday", "--index", str(broken)), str(target))
    shutil.copy(tiny_index / target.relative_to(broken), target)
    assert run("find", "monday", "--index", str(broken)).exit_code == 0
    # a file that still parses but changed: the background hash check names it after the search ran
    tokens = broken / "tokens.json"
    data = json.loads(tokens.read_text())
    data["tokens"][0] = data["tokens"][0] + "x"
    tokens.write_text(json.dumps(data))
    assert_one_line_error(run("find", "monday", "--index", str(broken)), str(tokens))
    tokens.write_text("{not json")
    assert_one_line_error(run("find", "monday", "--index", str(broken)), str(tokens))
    (broken / "manifest.json").write_text("{not json")
    assert_one_line_error(run("info", "--index", str(broken)), "manifest.json")


def test_label_with_nothing_listening(tiny_index: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    assert_one_line_error(run("label", "--index", str(copy), "--base-url", "http://127.0.0.1:9", "--contexts", "0"),
                          "cannot reach")


def test_fit_head_and_ablate_commands(tiny_index: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    fitted = run("fit-head", "--index", str(copy), "--epochs", "0.3")
    assert fitted.exit_code == 0, fitted.output
    meta = json.loads((copy / "head" / "head.json").read_text())
    assert meta["heldout_loss"] > 0 and (copy / "head" / "head.safetensors").is_file()
    result = run("ablate", "--neurons", "0:1,1:3", "--sentences", "8", "--seeds", "2", "--index", str(copy), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    mlm = data["readouts"]["mlm"]  # auto: the tiny model has its own MLM head
    assert mlm["measures"]["head"] == "model" and data["target"]["neurons"] == ["0:1", "1:3"]
    assert set(mlm["baselines"]) == {"random", "random_layer", "random_position"}
    assert data["verdict"]["readout"] == "mlm" and data["verdict"]["passed"] is False  # 2 draws cannot pass
    assert set(data["verdict"]) >= {"passed", "readout", "beats", "p"}
    shown = run("show", "neuron", "0:1", "--index", str(copy), "--json")
    assert shown.exit_code == 0
    assert_one_line_error(run("ablate", "--index", str(copy)), "exactly one of")
    assert_one_line_error(run("ablate", "--neurons", "0:1", "--readout", "bogus", "--index", str(copy)), "readout")
    assert_one_line_error(run("ablate", "--neurons", "9:1", "--index", str(copy)), "out of range")


def _change_cluster_neurons(index: Path, relative: str, number: int) -> None:
    """Give cluster ``number`` other neurons, as a new clustering would, and re-record the file's hash."""
    from neurosearch.format.manifest import Manifest

    data = json.loads((index / relative).read_text())
    cluster = data["clusters"][number]
    cluster["neurons"] = sorted(set(cluster["neurons"]) ^ {0, 1})
    (index / relative).write_text(json.dumps(data))
    manifest = Manifest.load(index)
    manifest.record(index, relative)
    manifest.save(index)


def test_show_displays_an_ablation_only_for_the_neurons_it_measured(tiny_index: Path, tmp_path: Path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    monkeypatch.setenv("NEUROSEARCH_STATE", str(tmp_path / "state"))
    assert run("ablate", "filter/k3/0", "--sentences", "6", "--draws", "2", "--index", str(copy)).exit_code == 0
    shown = json.loads(run("show", "cluster", "filter/k3/0", "--index", str(copy), "--json", "--contexts", "0").stdout)
    assert shown["ablation"]["target"]["neurons"] == shown["neurons"] and shown["ablation_note"] is None
    text = run("show", "cluster", "filter/k3/0", "--index", str(copy), "--contexts", "0").stdout
    assert "mlm readout" in text and "not passed" in text
    _change_cluster_neurons(copy, "methods/filter/clusters_k3.json", 0)
    shown = json.loads(run("show", "cluster", "filter/k3/0", "--index", str(copy), "--json", "--contexts", "0").stdout)
    assert shown["ablation"] is None and "earlier clustering" in shown["ablation_note"]
    text = run("show", "cluster", "filter/k3/0", "--index", str(copy), "--contexts", "0").stdout
    assert "earlier clustering" in text and "neurosearch ablate filter/k3/0" in text and "mlm readout" not in text


def test_ablate_on_a_read_only_index_stores_in_the_state_folder(tiny_index: Path, tmp_path: Path, monkeypatch):
    from neurosearch.format.manifest import Manifest

    copy = tmp_path / "shipped"
    shutil.copytree(tiny_index, copy)
    manifest = Manifest.load(copy)
    manifest.read_only = True
    manifest.save(copy)
    monkeypatch.setenv("NEUROSEARCH_STATE", str(tmp_path / "state"))
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    result = run("ablate", "--neurons", "0:1,1:3", "--sentences", "6", "--draws", "2", "--index", str(copy))
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before  # nothing written into the index
    (stored,) = (tmp_path / "state").rglob("ablations.json")
    assert json.loads(stored.read_text())["format"] == 2


def test_evaluate_writes_table_and_figures_and_resumes(tiny_index: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    args = ["evaluate", "--index", str(copy), "--methods", "filter", "--k", "3", "--sentences", "6", "--seeds", "2"]
    first = run(*args)
    assert first.exit_code == 0, first.output
    results = copy / "evaluation" / "results.jsonl"
    lines = results.read_text().splitlines()
    assert len(lines) == 3  # every cluster of filter at K=3
    assert (copy / "evaluation" / "table3.md").is_file() and (copy / "evaluation" / "table3.csv").is_file()
    assert list((copy / "evaluation").glob("fig2_*.png")) and list((copy / "evaluation").glob("fig4_*.png"))
    assert run(*args).exit_code == 0
    assert results.read_text().splitlines() == lines  # finished clusters are not recomputed
    # a stored result whose cluster changed (another clustering) is recomputed, not reused
    stale = json.loads(lines[0])
    stale["target"]["neurons"] = ["0:0"] if stale["target"]["neurons"] != ["0:0"] else ["0:1"]
    results.write_text("\n".join([json.dumps(stale), *lines[1:]]) + "\n")
    assert run(*args).exit_code == 0
    redone = results.read_text().splitlines()
    assert len(redone) == 4 and json.loads(redone[-1])["target"]["id"] == stale["target"]["id"]
    # other experiment settings are not mixed with stored ones either
    assert run(*args[:-1], "3").exit_code == 0
    assert len(results.read_text().splitlines()) == 7


def test_library_index_forgets_a_file_that_failed_its_hash(tiny_index: Path, tmp_path: Path):
    from neurosearch import Index
    from neurosearch.format.manifest import IndexError_

    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    tokens = copy / "tokens.json"
    original = tokens.read_text()
    data = json.loads(original)
    data["tokens"][0] = data["tokens"][0] + "x"
    tokens.write_text(json.dumps(data))
    index = Index.load(copy)
    with pytest.raises(IndexError_, match="tokens.json"):
        index.find("monday")
    with pytest.raises(IndexError_, match="tokens.json"):  # not served from a cache the second time
        index.find("monday")
    tokens.write_text(original)
    assert index.find("monday").results


def test_find_needs_no_numpy_for_one_token_words(tiny_index: Path):
    code = (
        "import sys\n"
        "from neurosearch import Index\n"
        "from neurosearch.model.phrases import PhraseEmbedder\n"
        f"index = Index.load({str(tiny_index)!r}, embedder=PhraseEmbedder())\n"
        "found = index.find('monday', top=3)\n"
        "assert found.results and 'numpy' not in sys.modules, 'numpy imported'\n"
        # a phrase without a stored expansion takes the slow path: numpy (and the model)
        "more = index.find('monday music', top=3, all_hits=True)\n"
        "assert 'slow path' in more.notes[0], more.notes\n"
        "assert more.results and 'numpy' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_an_index_with_older_search_files_is_refused_with_one_line(tiny_index: Path, tmp_path: Path):
    older = tmp_path / "older"
    shutil.copytree(tiny_index, older)
    manifest = json.loads((older / "manifest.json").read_text())
    manifest["stages"]["search"]["format"] = 3
    (older / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run("find", "monday", "--index", str(older)), "run `neurosearch build` on it again")
