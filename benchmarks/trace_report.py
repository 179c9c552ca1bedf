"""Wall time of `neurosearch trace` and `neurosearch report`, beside the model load they cannot avoid.

    python benchmarks/trace_report.py [--runs 3] [--index index/default] [--out /tmp/neurosearch-report]

Each run is a fresh process. Interleaved per run: `python -c "import torch, transformers"` plus a
model load (the floor of any command that runs the model), `trace TEXT --json`, `trace TEXT --unit
2:1454 --json`; then `report --out DIR` once per run. The table gives medians, user+system CPU
seconds (what the command costs when the machine is not shared) and the load average, since on a
shared machine wall time is mostly waiting for a core.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

TEXT = "The shop is closed on Monday and Tuesday."
LOAD = ("import sys; from neurosearch.index import Index; from neurosearch.model.loading import load_index_model; "
        "load_index_model(Index.load(sys.argv[1]))")


def _cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return " ".join(f for f in wanted if f in flags) or "none of " + " ".join(wanted)


def _run(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "100"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace').strip()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--index", default="index/default")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = args.out or str(Path(tempfile.gettempdir()) / "neurosearch-report-benchmark")
    cli = [sys.executable, "-m", "neurosearch.cli"]
    commands = {
        "model load (floor)": [sys.executable, "-c", LOAD, args.index],
        f'trace "{TEXT}" --json': [*cli, "trace", TEXT, "--json", "--index", args.index],
        "trace ... --unit 2:1454 --json": [*cli, "trace", TEXT, "--unit", "2:1454", "--json", "--index", args.index],
        f"report --out {out}": [*cli, "report", "--out", out, "--index", args.index, "--json"],
    }
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    loads = []
    for _ in range(args.runs):
        for name, command in commands.items():
            loads.append(os.getloadavg()[0])
            seconds, used = _run(command)
            wall[name].append(seconds)
            cpu[name].append(used)
    table = Table(title=f"median of {args.runs} runs; CPU flags: {_cpu_flags()}; {os.cpu_count()} cores; "
                        f"load average {min(loads):.1f}-{max(loads):.1f}")
    for column in ("command", "wall s", "min wall s", "CPU s (user+sys)", "wall / floor"):
        table.add_column(column)
    floor = statistics.median(wall["model load (floor)"])
    for name in commands:
        median = statistics.median(wall[name])
        table.add_row(name, f"{median:.2f}", f"{min(wall[name]):.2f}", f"{statistics.median(cpu[name]):.2f}",
                      f"{median / floor:.2f}")
    Console().print(table)
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    files = sum(1 for p in Path(out).rglob("*") if p.is_file())
    print(f"report: {files} files, {size / 1e6:.1f} MB in {out}")


if __name__ == "__main__":
    main()
