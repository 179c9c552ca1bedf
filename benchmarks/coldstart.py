"""Cold-start latency of the CLI: `neurosearch find` against bare Python, measured side by side.

    python benchmarks/coldstart.py [--runs 15] [--index index/default] [--query weekdays]
    python benchmarks/coldstart.py --checkout /path/to/other/checkout --checkout .   # side by side

Each run is a fresh process (what a user typing the command waits for). Commands are interleaved
run by run so that a noisy machine affects them alike; the table gives medians and the ratio to
``python -c pass``, and the difference to ``python -c "import numpy"``: a yardstick, since ``find``
imports numpy only for ``--ann`` and for phrases without a stored expansion. Those (``--phrase``,
default "european capitals") take the slow path, which loads torch and the model: timed after the
others, a few runs (0 with ``--phrase-runs 0``). With ``--checkout`` (repeated)
the ``find`` commands run once per checkout (its code first on ``PYTHONPATH``), interleaved too,
so two versions of the code are compared on the same machine at the same time. The title names
the CPU: a figure from one CPU is not a property of the code. "CPU s" is the process's user + system
time (its hashing thread included), which a busy machine disturbs less than the wall clock. Each
command runs once untimed first, with ``PYTHONDONTWRITEBYTECODE`` unset, so that the timed runs
load compiled bytecode as an installed package does instead of compiling every module.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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
    parser.add_argument("--checkout", action="append", default=[],
                        help="Run find with this checkout's code (repeat to compare checkouts side by side).")
    parser.add_argument("--phrase", default="european capitals",
                        help="a query without a stored expansion: the slow path, which loads the model")
    parser.add_argument("--phrase-runs", type=int, default=3, help="runs of the slow path (0: skip it)")
    args = parser.parse_args()
    cli = shutil.which("neurosearch") or "neurosearch"
    index = ["--index", args.index] if args.index else []
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], {}),
        "python -c 'import numpy'": ([sys.executable, "-c", "import numpy"], {}),
    }
    for checkout in args.checkout or [None]:
        env = {"PYTHONPATH": os.path.abspath(checkout)} if checkout else {}
        where = f" @ {os.path.basename(os.path.abspath(checkout))}" if checkout else ""
        commands.update({
            f"neurosearch find {args.query} --json{where}": ([cli, "find", args.query, "--json", *index], env),
            f"neurosearch find {args.query} (table){where}": ([cli, "find", args.query, *index], env),
            f"neurosearch find {args.query} --ann --json{where}": ([cli, "find", args.query, "--ann", "--json", *index], env),
        })
    # compiled modules as an installed package has them: bytecode written once, by an untimed run
    base_env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    for command, env in commands.values():
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**base_env, **env})
    slow = {f"neurosearch find '{args.phrase}' --json (slow path)": [cli, "find", args.phrase, "--json", *index]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu_times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, (command, env) in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env={**base_env, "COLUMNS": "100", **env})
            times[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_times[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if done.returncode != 0:
                sys.exit(f"{name} failed: {done.stderr.decode(errors='replace').strip()}")
    for _ in range(args.phrase_runs):  # seconds each: run after the others, not interleaved
        for name, command in slow.items():
            start = time.perf_counter()
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env={**base_env, "COLUMNS": "100"})
            times.setdefault(name, []).append(time.perf_counter() - start)
            cpu_times.setdefault(name, []).append(float("nan"))
            if done.returncode != 0:
                sys.exit(f"{name} failed: {done.stderr.decode(errors='replace').strip()}")
    base = statistics.median(times["python -c pass"])
    numpy_floor = statistics.median(times["python -c 'import numpy'"])
    table = Table(title=f"cold start, median of {args.runs} interleaved runs, {args.phrase_runs} of the slow path ({cpu()})")
    for column in ("command", "median s", "min s", "x python", "- numpy import s", "median CPU s"):
        table.add_column(column)
    for name, values in times.items():
        median = statistics.median(values)
        table.add_row(name, f"{median:.3f}", f"{min(values):.3f}", f"{median / base:.1f}", f"{median - numpy_floor:+.3f}",
                      f"{statistics.median(cpu_times[name]):.3f}")
    Console().print(table)


def cpu() -> str:
    """The CPU's model, core count and SIMD flags (from /proc/cpuinfo where there is one)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags]
    return f"{model}, {os.cpu_count()} cores" + (f", {' '.join(simd)}" if simd else "")


if __name__ == "__main__":
    main()
