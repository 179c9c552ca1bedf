"""Nothing lost: two processes at once, and a build killed while it redoes a stage."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

from battery.battery_kit import ENV, ROOT, battery_config, sub
from fake_llm import Reply

from neurosearch.format.atomic import sha256_file


def _all_label_keys(index: Path) -> set[str]:
    manifest = json.loads((index / "manifest.json").read_text())
    method = manifest["configs"]["profiles"]["search_method"]
    keys = {f"neuron:{layer}:{i}" for layer in range(manifest["n_layers"]) for i in range(manifest["neurons_per_layer"])}
    return keys | {f"cluster:{method}/k{k}/{i}" for k in manifest["configs"]["clusters"]["ks"] for i in range(k)}


def test_two_label_runs_at_once_keep_every_label(llm, index_copy: Path):
    """Run A labels the K=3 clusters and every neuron, run B the K=6 clusters and every neuron, at once."""
    counter = iter(range(10**6))
    llm.respond = lambda seen, n: Reply(content=json.dumps({"theme": f"theme {next(counter)}",
                                                             "explanation": "A sentence."}), delay=0.01)
    neurons = str(len([k for k in _all_label_keys(index_copy) if k.startswith("neuron:")]))
    common = ["label", "--index", str(index_copy), "--base-url", llm.base_url, "--contexts", "0", "--neurons", neurons]
    command = [sys.executable, "-m", "neurosearch.cli", *common]
    first = subprocess.Popen([*command, "--k", "3"], env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    second = subprocess.Popen([*command, "--k", "6"], env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    outputs = [process.communicate(timeout=600) for process in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert all("Traceback" not in out + err for out, err in outputs)
    stored = json.loads((index_copy / "labels.json").read_text())["labels"]
    assert set(stored) == _all_label_keys(index_copy), "a concurrent run lost labels"
    assert len(llm.seen) >= len(stored)


def _store_many(index: str, prefix: str, count: int) -> None:
    from neurosearch.format.results import AblationResult
    from neurosearch.index import Index
    from neurosearch.index.stored import store_ablation

    opened = Index.load(index)
    for i in range(count):
        record = {"target": {"kind": "cluster", "id": f"{prefix}/{i}", "neurons": []}, "loss": i}
        store_ablation(opened.state, AblationResult.from_json(record))


def test_two_ablate_runs_at_once_keep_every_result(index_copy: Path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_store_many, args=(str(index_copy), name, 25)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    results = json.loads((index_copy / "ablations.json").read_text())["results"]
    assert set(results) == {f"cluster:{name}/{i}" for name in ("a", "b") for i in range(25)}


KILL_DURING_SEARCH = """
import os, signal, sys
sys.path.insert(0, {kit!r})
import neurosearch.pipeline.search as search
from battery.battery_kit import battery_config
from neurosearch.pipeline import build_index

def killed(*args, **kwargs):  # the HNSW graphs come last in a method's search files: half of them exist
    os.kill(os.getpid(), signal.SIGKILL)

search.build_hnsw = killed
build_index(battery_config({model!r}, {corpus!r}, search_method={method!r}), {out!r})
"""


def _kill_during_search(out: Path, model: Path, corpus: Path, method: str) -> None:
    code = KILL_DURING_SEARCH.format(kit=str(Path(__file__).parents[1]), model=str(model), corpus=str(corpus),
                                     method=method, out=str(out))
    done = subprocess.run([sys.executable, "-c", code], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["stages"].get("search", {}).get("done"), "the manifest says done over half-written files"
    assert "incomplete" in sub("find", "monday", "--index", out).error_line()


def test_a_kill_while_the_search_stage_is_redone_is_repaired_by_the_next_build(battery_index: Path, tmp_path: Path,
                                                                               tiny_model: Path, tiny_corpus: Path):
    """``build --method`` changed, killed mid-search; a rerun with the original settings (which used to
    find nothing to do and leave the index broken) redoes the stage and gives the original files."""
    from neurosearch import Index
    from neurosearch.pipeline import build_index

    out = tmp_path / "index"
    shutil.copytree(battery_index, out)
    original = json.loads((battery_index / "manifest.json").read_text())
    _kill_during_search(out, tiny_model, tiny_corpus, "filter+tfidf")
    build_index(battery_config(tiny_model, tiny_corpus), out)
    repaired = json.loads((out / "manifest.json").read_text())
    assert repaired["files"] == original["files"]
    assert all(sha256_file(out / name) == digest for name, digest in repaired["files"].items())
    assert Index.load(out).find("monday").to_json() == Index.load(battery_index).find("monday").to_json()
    # and the rerun asked for the new method finishes that one instead
    _kill_during_search(out, tiny_model, tiny_corpus, "filter+tfidf")
    build_index(battery_config(tiny_model, tiny_corpus, search_method="filter+tfidf"), out)
    assert Index.load(out).search_method == "filter+tfidf" and Index.load(out).find("monday").results
