"""Maintainer script: regenerate the ablation results shipped in a read-only index (``ablations.json``).

    python benchmarks/ship_ablations.py --index index/default [--corpus PATH] [--query weekdays]
        [--from-log concepts-out/concepts.jsonl] [CLUSTER ...]

``neurosearch ablate`` never writes into a read-only index (it stores into the user's state
folder); the results shipped with ``index/default`` are written by this script instead, which
replaces the file with fresh results (current contract, current neurons) for the given clusters
and the top cluster of each ``--query`` (default settings), plus the results recorded by
``verify_concepts.py`` or ``calibration.py`` in ``--from-log`` files (kept only when they are about
the cluster's current neurons). Commit the file afterwards.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import cpu_line

from neurosearch.model.phrases import PhraseEmbedder  # noqa: E402
from neurosearch import Index
from neurosearch.experiments.ablation import AblationConfig
from neurosearch.format.results import AblationResult
from neurosearch.format import layout
from neurosearch.index.stored import lookup
from neurosearch.experiments.session import AblationSession
from neurosearch.format.store import write_json

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clusters", nargs="*")
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "default")
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--query", action="append", default=[])
    parser.add_argument("--from-log", action="append", default=[], type=Path)
    args = parser.parse_args()
    print(f"machine: {cpu_line()}")
    index = Index.load(args.index, embedder=PhraseEmbedder())  # what the CLI opens: phrases take the slow path
    results = {}
    for log in args.from_log:
        for line in log.read_text(encoding="utf-8").splitlines():
            result = AblationResult.from_json(json.loads(line)["result"])
            if result.target.kind == "cluster" and lookup([result], "cluster", result.target.id,
                                                            index.cluster(result.target.id).neurons).current:
                results[result.store_key()] = result.to_json()
    targets = []
    if args.query or args.clusters:
        session = AblationSession(index, AblationConfig(), corpus=args.corpus)
        targets = [session.query_target(q) for q in args.query] + [session.cluster_target(c) for c in args.clusters]
    for target in targets:
        result = session.run(target)
        results[result.store_key()] = result.to_json()
        print(f"{target.kind} {target.id}: {result.verdict.line()} ({result.seconds} s)")
    path = index.path / layout.ABLATIONS
    write_json(path, {"format": layout.ABLATIONS_FORMAT, "results": results})  # atomic; no lock file left in the index
    print(f"wrote {len(results)} results to {path}")


if __name__ == "__main__":
    main()
