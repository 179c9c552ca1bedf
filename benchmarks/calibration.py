"""Calibration of the verdict: random neuron sets posing as targets must rarely pass.

    python benchmarks/calibration.py [--index index/default] [--corpus PATH] [--sizes 29,5] [--sets 20]
                                     [--tokens monday,tuesday,...] [--readout embedding] [--out DIR]

Each random set (uniform over the site, seeded by size and number) is ablated exactly as
`neurosearch ablate --neurons SET --tokens monday,...,sunday` would, with the default settings
(64 sentences, 3 baselines x 20 draws, level 0.05). A verdict that means what it says passes such a
set at most about level x sets times (the rank test bounds each baseline at 1/21; passing needs
all three). The real cluster for the tokens' concept is run beside them (``--query``) as the case
that should pass. The model and sentences are loaded once; results are appended to
``OUT/calibration.jsonl`` as they come, and a rerun skips the sets already there.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import ResultLog, cpu_line, open_session, session_arguments
from rich.console import Console
from rich.table import Table

WEEKDAYS = "monday,tuesday,wednesday,thursday,friday,saturday,sunday"


def random_sets(n_neurons: int, name, size: int, count: int, seed: int) -> list[list[str]]:
    """``count`` random sets of ``size`` units, named by ``name`` (the index's ``neuron_name``)."""
    sets = []
    for number in range(count):
        rng = np.random.default_rng([seed, 7919, size, number])
        flat = np.sort(rng.choice(n_neurons, size=size, replace=False))
        sets.append([name(n) for n in flat.tolist()])
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    session_arguments(parser, readout="embedding", out="calibration-out")
    parser.add_argument("--sizes", default="29,5")
    parser.add_argument("--sets", type=int, default=20)
    parser.add_argument("--tokens", default=WEEKDAYS)
    parser.add_argument("--query", default="weekdays", help="the real cluster to run beside them ('' for none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    console = Console()
    console.print(f"machine: {cpu_line()}")
    log = ResultLog(args.out / "calibration.jsonl", lambda r: (r["case"], r["readouts"]))
    done = log.done
    index, session = open_session(args)
    config = session.config
    readouts = "+".join(session.readout_names)
    tokens = args.tokens.split(",")
    cases = [("query", args.query, None)] if args.query else []
    for size in (int(s) for s in args.sizes.split(",")):
        sets = random_sets(index.manifest.n_neurons, index.neuron_name, size, args.sets, args.seed)
        cases += [(f"random{size}", f"random{size}/{i}", names) for i, names in enumerate(sets)]
    for group, case, names in cases:
        if (case, readouts) in done:
            continue
        started = time.perf_counter()
        target = session.query_target(case) if names is None else session.neurons_target(names, tokens)
        result = session.run(target)
        record = {"case": case, "group": group, "readouts": readouts, "seconds": round(time.perf_counter() - started, 1),
                  "neurons": len(result.target.neurons), "tokens": result.target.tokens,
                  "readout": {name: {"value": r.value, "passed": r.verdict.passed, "beats": r.verdict.beats,
                                     "p": r.verdict.p, "p_empirical": r.verdict.p_empirical}
                              for name, r in result.readouts.items()},
                  "result": result.to_json()}
        log.add(record)
        console.print(f"{case}: " + "; ".join(f"{n} {v['value']:.3f} {'PASS' if v['passed'] else 'no'}"
                                              f" ({len(v['beats'])}/3)" for n, v in record["readout"].items())
                      + f"  [{record['seconds']} s]")
    table = Table(title=f"calibration: random neuron sets as targets for {args.tokens} (level {config.level})")
    for column in ("targets", "readout", "sets", "passed", "beat 3/2/1/0 baselines", "median statistic", "median s"):
        table.add_column(column)
    groups = list(dict.fromkeys(r["group"] for r in done.values() if r["readouts"] == readouts))
    for group in groups:
        records = [r for r in done.values() if r["group"] == group and r["readouts"] == readouts]
        for name in session.readout_names:
            values = [r["readout"][name] for r in records]
            beat = [sum(len(v["beats"]) == n for v in values) for n in (3, 2, 1, 0)]
            table.add_row(group if group != "query" else f"query {args.query}", name, str(len(values)),
                          str(sum(v["passed"] for v in values)), "/".join(map(str, beat)),
                          f"{statistics.median(v['value'] for v in values):.3f}",
                          f"{statistics.median(r['seconds'] for r in records):.0f}")
    console.print(table)
    console.print(f"machine after: {cpu_line()}")


if __name__ == "__main__":
    main()
