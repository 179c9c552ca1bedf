"""What a researcher reads: show's two context lists, find at 80 columns, progress, interrupts, validation."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neurosearch.pipeline import build_index
from neurosearch.cli.app import app
from neurosearch.config import BuildConfig, ClusterConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig
from neurosearch.errors import Interrupted

runner = CliRunner()


def run(*args: str, **kwargs):
    return runner.invoke(app, list(args), **kwargs)


def _config(model: Path, corpus: Path, **stats) -> BuildConfig:
    return BuildConfig(
        model=ModelConfig(model=str(model), dtype="float32"),
        corpus=CorpusConfig(source=str(corpus), window=16),
        stats=StatsConfig(batch_tokens=256, **{"shard_docs": 100, **stats}),
        profiles=ProfileConfig(min_count=2, methods=("filter", "filter+tfidf"), search_method="filter"),
        clusters=ClusterConfig(ks=(3, 6)),
        concepts=False,
    )


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_model: Path, tiny_corpus: Path) -> Path:
    out = tmp_path_factory.mktemp("reports") / "tiny"
    build_index(_config(tiny_model, tiny_corpus), out)
    return out


class Recorder:
    """A Reporter that records what a person would see, and can press Ctrl-C at a chosen moment."""

    def __init__(self, interrupt_in: str | None = None, after: int = 0):
        self.lines: list[str] = []
        self.tasks: list[tuple[str, float | None]] = []
        self.interrupt_in, self.after, self.calls = interrupt_in, after, 0

    def task(self, description: str, total: float | None = None):
        self.tasks.append((description, total))

        def advance(amount: float) -> None:
            if self.interrupt_in and description.startswith(self.interrupt_in) and amount > 0:
                self.calls += 1
                if self.calls > self.after:
                    raise KeyboardInterrupt

        return advance

    def finish(self, description: str) -> None:
        pass

    def log(self, message: str) -> None:
        self.lines.append(message)


# -- show ----------------------------------------------------------------------------------------


def test_show_neuron_lists_both_kinds_of_contexts_with_a_mark_that_needs_no_colour(index: Path):
    result = run("show", "neuron", "1:3", "--index", str(index), env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "on its top tokens" in text and "strongest firings overall" in text
    assert "[[" in text and "]]" in text and "\x1b[" not in text  # marked as text, not by colour alone
    assert "mean act." in text and "in clusters" in text and "neurosearch ablate --neurons 1:3" in text
    data = json.loads(run("show", "neuron", "1:3", "--index", str(index), "--json").stdout)
    tops = data["contexts"]["on_top_tokens"]
    assert tops and all({"value", "z", "left", "token", "right"} <= set(r) for r in tops)
    # each is an occurrence of one of the neuron's top tokens, the strongest on that token
    assert {r["piece"] for r in tops} <= set(data["top_tokens"][:10])
    assert [r["value"] for r in tops] == sorted((r["value"] for r in tops), reverse=True)
    assert len(data["top_token_means"]) == 30 and all(m is not None for m in data["top_token_means"])
    assert data["corpus"]["problem"] is None and data["clusters"]


def test_the_mark_survives_a_colour_terminal_with_no_color():
    from rich.console import Console

    from neurosearch.cli.reports import marked_context

    record = {"token": "Monday", "left": "we open on ", "right": " at nine"}
    console = Console(force_terminal=True, no_color=True, width=80, record=True)
    console.print(marked_context(record, 60))
    assert "we open on [[Monday]] at nine" in console.export_text()
    narrow = marked_context({"token": "Monday", "left": "x" * 50, "right": "y" * 50}, 30)
    assert narrow.cell_len <= 30 and "[[Monday]]" in narrow.plain


def test_show_cluster_names_the_neuron_of_each_context(index: Path):
    result = run("show", "cluster", "k6/0", "--index", str(index), "--json")
    data = json.loads(result.stdout)
    assert data["contexts"]["on_top_tokens"] and all(r["neuron"] in data["neurons"]
                                                       for r in data["contexts"]["on_top_tokens"])
    assert data["verify"] == f"neurosearch ablate filter/k6/0 --index {index}"
    shown = run("show", "cluster", "k6/0", "--index", str(index))
    assert "neuron" in shown.stdout and "(1 neurons)" not in shown.stdout


def test_missing_corpus_says_where_it_was_looked_for(index: Path, tmp_path: Path):
    copy = tmp_path / "moved"
    shutil.copytree(index, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["corpus"]["source"] = str(tmp_path / "gone" / "docs.txt")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = run("show", "neuron", "1:3", "--index", str(copy))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # rich wraps long lines
    assert "contexts not shown: corpus" in text and "not found (looked at" in text and "--corpus PATH names the file" in text
    assert "[[" in result.stdout  # the tokens are still named
    data = json.loads(run("show", "neuron", "1:3", "--index", str(copy), "--json").stdout)
    assert str(tmp_path / "gone" / "docs.txt") in data["corpus"]["looked"]
    # --corpus points at it again
    original = json.loads((index / "manifest.json").read_text())["corpus"]["source"]
    again = json.loads(run("show", "neuron", "1:3", "--index", str(copy), "--json", "--corpus", original).stdout)
    assert again["corpus"]["problem"] is None and again["contexts"]["strongest"][0]["left"] is not None


def test_a_changed_corpus_is_detected_not_shown(index: Path, tmp_path: Path):
    other = tmp_path / "other.txt"
    other.write_text("\n".join("zebra " * 30 for _ in range(300)))
    data = json.loads(run("show", "neuron", "1:3", "--index", str(index), "--json", "--corpus", str(other)).stdout)
    assert "not the one indexed" in data["corpus"]["problem"]
    assert all(r["left"] is None for r in data["contexts"]["strongest"])


def test_an_index_without_the_contexts_stage_says_how_to_add_it(index: Path, tmp_path: Path):
    copy = tmp_path / "older"
    shutil.copytree(index, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["stages"]["contexts"]
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("contexts/")}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = run("show", "neuron", "1:3", "--index", str(copy))
    assert result.exit_code == 0, result.output
    assert "without the contexts stage" in result.stdout and "neurosearch build" in result.stdout
    assert "strongest firings overall" in result.stdout


# -- find ----------------------------------------------------------------------------------------


def test_unquoted_multi_word_query(index: Path):
    result = run("find", "red", "dog", "of", "the", "band", "--index", str(index), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["query"] == "red dog of the band"
    assert run("find", "red", "--tokens", "dog", "--index", str(index)).exit_code != 0


@pytest.mark.parametrize("width", [80, 160])
def test_find_keeps_the_theme_and_marks_automatic_ones(index: Path, width: int):
    from rich.console import Console

    from neurosearch import Index
    from neurosearch.cli.render import find_table

    console = Console(width=width, record=True, no_color=True)
    console.print(find_table(Index.load(index).find("monday friday"), width))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "hit" in line and "score" in line)
    for column in ("theme", "size", "layers", "top tokens"):
        assert column in header
    assert "(auto)" in text and max(len(line) for line in text.splitlines()) <= width


def test_wrap_words_keeps_the_suffix_and_marks_the_cut():
    from neurosearch.cli.render import wrap_words

    assert wrap_words("a bb ccc dddd".split(), 8, 2).plain == "a bb ccc\ndddd"
    assert wrap_words("a bb ccc dddd eeeee".split(), 8, 2, "(auto)").plain == "a bb ccc\n… (auto)"
    assert wrap_words("monday / friday".split(), 40, 1, "(auto)").plain == "monday / friday (auto)"


# -- build: progress, resume, interrupts -----------------------------------------------------------


def test_build_reports_progress_per_batch_and_the_stages_a_rerun_skips(index: Path, tiny_model: Path, tiny_corpus: Path):
    recorder = Recorder()
    build_index(_config(tiny_model, tiny_corpus), index, reporter=recorder)
    assert any("skipping finished stats, profiles, clusters, search, contexts; nothing left to build" in line
               for line in recorder.lines)
    assert not any(line.startswith("loading model") for line in recorder.lines)  # nothing to do: no model


def test_interrupt_during_statistics_says_what_was_kept_and_resumes(tmp_path: Path, tiny_model: Path, tiny_corpus: Path):
    out = tmp_path / "index"
    config = _config(tiny_model, tiny_corpus, shard_docs=60)
    recorder = Recorder("statistics", after=12)  # per-batch advances: stopped after the first shard
    with pytest.raises(Interrupted) as stopped:
        build_index(config, out, reporter=recorder)
    message = str(stopped.value)
    assert recorder.lines[0].startswith("loading model") and recorder.lines[1].startswith("model ")  # announced
    assert ("statistics (documents)", 240) in recorder.tasks
    assert "during statistics at document" in message and "of 240" in message and "rerun the same command" in message
    kept = int(re.search(r"kept: statistics of the first (\d+) documents", message).group(1))
    assert kept > 0 and kept % 60 == 0 and str(out / "checkpoint") in message
    resumed = Recorder()
    build_index(config, out, reporter=resumed)
    assert any(f"resuming after {kept // 60} shard(s) ({kept} documents)" in line for line in resumed.lines)


def test_interrupt_before_the_first_checkpoint_says_nothing_was_kept(tmp_path: Path, tiny_model: Path, tiny_corpus: Path):
    with pytest.raises(Interrupted) as stopped:
        build_index(_config(tiny_model, tiny_corpus, shard_docs=1000), tmp_path / "index",
                    reporter=Recorder("statistics", after=1))
    assert "kept: nothing of it" in str(stopped.value) and "--shard-docs" in str(stopped.value)


def test_interrupt_during_clusters_names_the_kept_stages_on_one_line(tmp_path: Path, tiny_model: Path,
                                                                     tiny_corpus: Path, monkeypatch):
    from neurosearch.pipeline import clusters_stage

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    import dataclasses

    monkeypatch.setattr(clusters_stage, "STAGE", dataclasses.replace(clusters_stage.STAGE, run=stop))
    out = tmp_path / "index"
    result = run("build", "--model", str(tiny_model), "--corpus", str(tiny_corpus), "--out", str(out),
                 "--min-count", "2", "--k", "3", "--methods", "filter", "--no-wordnet", "--dtype", "float32", "--quiet")
    assert result.exit_code == 130, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("neurosearch: interrupted during clusters")
    assert "kept: the finished stages (stats, profiles)" in lines[0] and "rerun the same command" in lines[0]


# -- validation before slow work ---------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    from neurosearch.model import loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was validated")

    monkeypatch.setattr(loading, "load_model", refuse)
    monkeypatch.setattr(loading, "load_index_model", refuse)


@pytest.mark.parametrize("args, fragment", [
    (["9999"], "cluster 9999 does not exist"),
    (["--neurons", "9:9"], "neuron 9:9 is out of range"),
    (["--neurons", "0:1", "--tokens", "zzqqxx"], "neuron 0:1 has no target token to test"),
    (["3", "--corpus", "/nowhere/corpus.txt"], "/nowhere/corpus.txt"),
    (["3", "--ablation", "half"], "--ablation must be one of"),
    (["3", "--tokens", "monday"], "--tokens goes with --neurons"),
    (["3", "--readout", "shape"], "--readout must be distinct, from auto"),
])
def test_ablate_validates_before_loading_the_model(index: Path, no_model, args: list[str], fragment: str):
    result = run("ablate", *args, "--index", str(index))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def test_ablate_mlm_without_a_head_says_fit_head_first(index: Path, tmp_path: Path, no_model):
    copy = tmp_path / "headless"
    shutil.copytree(index, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["model"]["has_mlm_head"] is True  # the tiny model is a BertForMaskedLM
    manifest["model"]["has_mlm_head"] = False  # as MiniLM: no MLM head of its own
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = run("ablate", "0", "--readout", "mlm", "--index", str(copy))  # auto would read out embeddings
    assert result.exit_code == 1 and "neurosearch fit-head" in result.stderr, result.output


def test_label_checks_the_key_before_preparing_requests(index: Path, monkeypatch):
    from neurosearch.labeling import requests

    def slow(*args, **kwargs):
        raise AssertionError("requests were prepared before the key was checked")

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(requests, "label_requests", slow)
    result = run("label", "--index", str(index), "--base-url", "https://api.openai.com/v1")  # OpenAI: named since the local default
    assert result.exit_code == 1 and "OPENAI_API_KEY is not set" in result.stderr


def test_label_dry_run_lists_the_requests_it_would_send(index: Path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = ("--base-url", "http://127.0.0.1:9")  # a server's requests (tests/lm/test_lm_themes.py: a local model's prompts)
    result = run("label", "--index", str(index), "--dry-run", "--json", "--k", "3", *server)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["requests"] == 3 and len(data["would_send"]) == 3
    first = data["would_send"][0]
    assert first["key"] == "cluster:filter/k3/0" and "[[" in first["messages"][-1]["content"]
    assert not (index / "labels.json").exists()
    text = run("label", "--index", str(index), "--dry-run", "--k", "3", *server).stdout
    assert text.startswith("would send 3 request(s)")


def test_a_small_build_suggests_fit_head_and_a_lower_min_count(tmp_path: Path, tiny_model: Path, tiny_corpus: Path):
    from neurosearch.cli.build import next_steps

    recorder = Recorder()
    config = replace(_config(tiny_model, tiny_corpus), profiles=ProfileConfig(min_count=3, methods=("filter",), search_method="filter"))
    manifest = build_index(config, tmp_path / "index", reporter=recorder, until="search")
    assert any("a lower --min-count keeps more (--min-count 2 keeps" in line for line in recorder.lines)
    assert not any("fit-head" in line for line in next_steps(manifest, tmp_path / "index"))  # it has a head
    manifest.model["has_mlm_head"] = False
    steps = next_steps(manifest, tmp_path / "index")
    assert any("neurosearch fit-head --index" in line for line in steps)
