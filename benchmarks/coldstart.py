"""Cold-start latency of the CLI: `neurosearch find` against bare Python, measured side by side.

    python benchmarks/coldstart.py [--runs 15] [--index index/default] [--query weekdays]

Each run is a fresh process (what a user typing the command waits for). Commands are interleaved
run by run so that a noisy machine affects them alike; the table gives medians and the ratio to
``python -c pass``, and the difference to ``python -c "import numpy"``: a yardstick, since ``find``
imports numpy only for ``--ann`` and words of several word pieces.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--index", default=None)
    parser.add_argument("--query", default="weekdays")
    args = parser.parse_args()
    cli = shutil.which("neurosearch") or "neurosearch"
    index = ["--index", args.index] if args.index else []
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
        f"neurosearch find {args.query} --json": [cli, "find", args.query, "--json", *index],
        f"neurosearch find {args.query} (table)": [cli, "find", args.query, *index],
        f"neurosearch find {args.query} --ann --json": [cli, "find", args.query, "--ann", "--json", *index],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            start = time.perf_counter()
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env={**os.environ, "COLUMNS": "100"})
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                sys.exit(f"{name} failed: {done.stderr.decode(errors='replace').strip()}")
    base = statistics.median(times["python -c pass"])
    numpy_floor = statistics.median(times["python -c 'import numpy'"])
    table = Table(title=f"cold start, median of {args.runs} interleaved runs")
    for column in ("command", "median s", "min s", "x python", "- numpy import s"):
        table.add_column(column)
    for name, values in times.items():
        median = statistics.median(values)
        table.add_row(name, f"{median:.3f}", f"{min(values):.3f}", f"{median / base:.1f}", f"{median - numpy_floor:+.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
