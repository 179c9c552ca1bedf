"""Bad option values: every one is refused in one line, before any work and without writing anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from battery.battery_kit import cli, tree_digest

NAN_AND_FRIENDS = ("nan", "inf", "-inf")


def _refused(index: Path, args: list[str], fragment: str) -> None:
    before = tree_digest(index)
    line = cli(*args).error_line()
    assert fragment in line, line
    assert tree_digest(index) == before, "a refused command changed the index"


@pytest.mark.parametrize("args, fragment", [
    (["--timeout", "0"], "--timeout"), (["--timeout", "-1"], "--timeout"), (["--timeout", "nan"], "--timeout"),
    (["--timeout", "inf"], "--timeout"), (["--contexts", "-1"], "--contexts"), (["--k", "abc"], "--k"),
    (["--k", "0"], "--k"), (["--k", "3,x"], "--k"), (["--k", "7"], "K=7"), (["--neurons", "-1"], "--neurons"),
    (["--max-failures", "-1"], "--max-failures"), (["--timeout", "abc"], "--timeout"),
])
def test_label_options(index_copy: Path, args: list[str], fragment: str):
    _refused(index_copy, ["label", "--index", index_copy, "--base-url", "http://127.0.0.1:9", *args], fragment)


@pytest.mark.parametrize("args, fragment", [
    (["--k", "abc"], "--k"), (["--k", "7"], "K=7"), (["--max-clusters", "-1"], "--max-clusters"),
    (["--max-clusters", "0"], "--max-clusters"), (["--draws", "1"], "--draws"), (["--seeds", "0"], "--draws"),  # --seeds: the old name of --draws
    (["--sentences", "0"], "--sentences"), (["--ablation", "foo"], "--ablation"), (["--methods", "bogus"], "bogus"),
    (["-o", "/proc/neurosearch-x"], "/proc/neurosearch-x"),
])
def test_evaluate_options(index_copy: Path, args: list[str], fragment: str):
    _refused(index_copy, ["evaluate", "--index", index_copy, *args], fragment)


@pytest.mark.parametrize("args, fragment", [
    (["--epochs", "nan"], "--epochs"), (["--epochs", "0"], "--epochs"), (["--epochs", "-1"], "--epochs"),
    (["--epochs", "inf"], "--epochs"), (["--lr", "0"], "--lr"), (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"),
    (["--max-docs", "0"], "--max-docs"), (["--max-docs", "-5"], "--max-docs"),
])
def test_fit_head_options(index_copy: Path, args: list[str], fragment: str):
    _refused(index_copy, ["fit-head", "--index", index_copy, *args], fragment)


@pytest.mark.parametrize("args, fragment", [
    (["0:1", "--top-tokens", "-1"], "--top-tokens"), (["0:1", "--top-tokens", "0"], "--top-tokens"),
    (["0:1", "--draws", "1"], "--draws"), (["0:1", "--seeds", "1"], "--draws"), (["0:1", "--sentences", "0"], "--sentences"),
    (["0:1", "--ablation", "foo"], "--ablation"), (["9:9"], "out of range"), (["abc"], "bad neuron name"),
])
def test_ablate_options(index_copy: Path, args: list[str], fragment: str):
    neurons, *rest = args
    _refused(index_copy, ["ablate", "--index", index_copy, "--neurons", neurons, *rest], fragment)


@pytest.mark.parametrize("args, fragment", [
    (["monday", "--top", "0"], "--top"), (["monday", "--top", "abc"], "--top"), (["monday", "--kind", "foo"], "--kind"),
    (["monday", "--k", "7"], "K=7"), (["monday", "--k", "abc"], "--k"), (["monday", "--method", "bogus"], "bogus"),
    ([""], "empty query"), (["x" * 100_000], "limit is 1,000"), (["--tokens", ",".join(["monday"] * 1000)], "limit"),
])
def test_find_options(index_copy: Path, args: list[str], fragment: str):
    _refused(index_copy, ["find", "--index", index_copy, *args], fragment)


@pytest.mark.parametrize("args, fragment", [
    (["cluster", "99"], "does not exist"), (["cluster", "k7/1"], "K=7"), (["neuron", "abc"], "bad neuron name"),
    (["bogus", "1"], "'cluster' or 'neuron'"), (["cluster", "x/y/z/w"], "bad cluster id"),
    (["cluster", "0", "--contexts", "abc"], "--contexts"),
])
def test_show_options(index_copy: Path, args: list[str], fragment: str):
    _refused(index_copy, ["show", *args, "--index", index_copy], fragment)


@pytest.mark.parametrize("args, fragment", [
    (["losses", "--k", "7"], "evaluate"), (["bogus"], "unknown figure"), (["neurons", "--cluster", "99"], "does not exist"),
    (["pca", "--k", "7"], "K=7"),
])
def test_plot_options(index_copy: Path, tmp_path: Path, args: list[str], fragment: str):
    _refused(index_copy, ["plot", *args, "--index", index_copy, "-o", tmp_path / "x.png"], fragment)


def test_plot_losses_for_a_k_without_results(index_copy: Path, tmp_path: Path):
    """``plot losses --k 7`` with results for other K: one line naming what there is."""
    from neurosearch.format.store import append_jsonl
    from neurosearch.index import Index

    neurons = Index.load(index_copy).cluster("filter/k3/0").neurons  # about the current cluster: it counts
    append_jsonl(index_copy / "evaluation" / "results.jsonl", {
        "target": {"kind": "cluster", "id": "filter/k3/0", "neurons": neurons}, "method": "filter", "k": 3,
        "change_pct": 1.0, "baselines": {}})
    line = cli("plot", "losses", "--k", "7", "--index", index_copy, "-o", tmp_path / "x.png").error_line()
    assert "K=7" in line and "filter K=3" in line


@pytest.mark.parametrize("args, fragment", [
    (["--min-count", "0"], "--min-count"), (["--min-count", "-1"], "--min-count"), (["--min-count", "abc"], "--min-count"),
    (["--shard-docs", "-1"], "--shard-docs"), (["--shard-docs", "0"], "--shard-docs"),
    (["--batch-tokens", "0"], "--batch-tokens"), (["--dtype", "foo"], "--dtype"), (["--site", "foo"], "--site"),
    (["--k", "0"], "--k"), (["--k", "abc"], "--k"), (["--until", "foo"], "unknown stage"),
    (["--method", "bogus"], "bogus"), (["--methods", "bogus"], "bogus"), (["--max-docs", "0"], "--max-docs"),
    (["--cluster-mode", "fast"], "--cluster-mode"), (["--checkpoint-share", "2"], "--checkpoint-share"),
    (["--checkpoint-share", "-0.1"], "--checkpoint-share"), (["--checkpoint-share", "nan"], "--checkpoint-share"),
])
def test_build_options(tmp_path: Path, tiny_model: Path, tiny_corpus: Path, args: list[str], fragment: str):
    out = tmp_path / "out"
    line = cli("build", "--corpus", tiny_corpus, "--out", out, "--model", tiny_model, "-q", *args).error_line()
    assert fragment in line, line
    assert not out.exists(), "a refused build left a folder behind"


def test_build_into_an_existing_file(tmp_path: Path, tiny_model: Path, tiny_corpus: Path):
    out = tmp_path / "notes.txt"
    out.write_text("my notes")
    line = cli("build", "--corpus", tiny_corpus, "--out", out, "--model", tiny_model, "-q").error_line()
    assert "not a directory" in line and out.read_text() == "my notes"


def test_build_into_a_folder_that_is_not_an_index(tmp_path: Path, tiny_model: Path, tiny_corpus: Path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("draft")
    line = cli("build", "--corpus", tiny_corpus, "--out", out, "--model", tiny_model, "-q", "--force").error_line()
    assert "holds no neurosearch index" in line and [p.name for p in out.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("name, content, fragment", [
    ("garbage.bin", b"\x00\x01garbage" * 100, "not a fastText"),
    ("garbage.vec", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not in .vec format"),
    ("words.vec", b"3 2\nzebra 0.1 0.2\nquokka 0.3 0.4\n", "none of the model's tokens"),
    ("missing.vec", None, "not found"),
])
def test_build_with_bad_embeddings(tmp_path: Path, tiny_model: Path, tiny_corpus: Path, name: str,
                                   content: bytes | None, fragment: str):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    line = cli("build", "--corpus", tiny_corpus, "--out", out, "--model", tiny_model, "-q", "--min-count", "2",
               "--embeddings", path).error_line()
    assert fragment in line, line
    assert not out.exists()


def test_usage_errors_are_one_line(index_copy: Path):
    assert "No such option" in cli("find", "monday", "--bogus", "--index", index_copy).error_line()
    assert "No such command" in cli("bogus").error_line()
