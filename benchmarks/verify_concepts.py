"""Which concepts' top-1 clusters pass causal verification, per readout.

    python benchmarks/verify_concepts.py [--index index/default] [--corpus PATH]
        [--concepts ../shared/concepts/dev.json,benchmarks/concepts/extra.json]
        [--readout embedding,mlm] [--out DIR]

For every concept name of the files, exactly what `neurosearch ablate --query NAME` does (the top
cluster of `find`, the query's strongest member tokens, 64 sentences, 3 baselines x 20 draws,
level 0.05), once, with all readouts on the same sentences and draws (the first readout's verdict
is the command's default only when it is the model's ``auto`` readout). The model and sentences are
loaded once; results are appended to ``OUT/concepts.jsonl`` and a rerun skips concepts done.
Both files were tuned on (query expansion, profiles): these are seen concepts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import ROOT, ResultLog, cpu_line, open_session, session_arguments
from rich.console import Console
from rich.table import Table

DEFAULT_CONCEPTS = f"{ROOT.parent / 'shared' / 'concepts' / 'dev.json'},{ROOT / 'benchmarks' / 'concepts' / 'extra.json'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    session_arguments(parser, readout="embedding,mlm", out="concepts-out")
    parser.add_argument("--concepts", default=DEFAULT_CONCEPTS)
    args = parser.parse_args()
    console = Console()
    console.print(f"machine: {cpu_line()}")
    log = ResultLog(args.out / "concepts.jsonl", lambda r: (r["concept"], r["readouts"]))
    done = log.done
    _index, session = open_session(args)
    readouts = "+".join(session.readout_names)
    concepts = [(Path(path).name, name) for path in args.concepts.split(",")
                for name in json.loads(Path(path).read_text(encoding="utf-8"))]
    for source, concept in concepts:
        if (concept, readouts) in done:
            continue
        started = time.perf_counter()
        target = session.query_target(concept)
        result = session.run(target)
        record = {"concept": concept, "source": source, "readouts": readouts, "cluster": result.target.id,
                  "neurons": len(result.target.neurons), "tokens": result.target.tokens,
                  "sentences": result.sentences, "seconds": round(time.perf_counter() - started, 1),
                  "readout": {name: {"value": r.value, "passed": r.verdict.passed, "beats": r.verdict.beats,
                                     "p": r.verdict.p} for name, r in result.readouts.items()},
                  "result": result.to_json()}
        log.add(record)
        console.print(f"{concept} -> {record['cluster']} ({record['neurons']} neurons): "
                      + "; ".join(f"{n} {v['value']:.3f} {'PASS' if v['passed'] else 'no'}"
                                  for n, v in record["readout"].items()) + f"  [{record['seconds']} s]")
    records = [done[(c, readouts)] for _, c in concepts if (c, readouts) in done]
    detail = Table(title="top-1 cluster of each concept")
    for column in ("concept", "file", "cluster", "neurons", *session.readout_names):
        detail.add_column(column)
    for r in records:
        detail.add_row(r["concept"], r["source"], r["cluster"].rsplit("/", 2)[-2] + "/" + r["cluster"].rsplit("/", 1)[-1],
                       str(r["neurons"]), *(f"{r['readout'][n]['value']:.2f} {'pass' if r['readout'][n]['passed'] else '-'}"
                                            for n in session.readout_names))
    console.print(detail)
    summary = Table(title="share of top-1 clusters whose verdict passed (level 0.05)")
    for column in ("readout", *dict.fromkeys(r["source"] for r in records), "all"):
        summary.add_column(column)
    for name in session.readout_names:
        cells = []
        for source in dict.fromkeys(r["source"] for r in records):
            part = [r for r in records if r["source"] == source]
            cells.append(f"{sum(r['readout'][name]['passed'] for r in part)}/{len(part)}")
        cells.append(f"{sum(r['readout'][name]['passed'] for r in records)}/{len(records)}")
        summary.add_row(name, *cells)
    console.print(summary)
    console.print(f"machine after: {cpu_line()}")


if __name__ == "__main__":
    main()
