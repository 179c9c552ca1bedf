"""Record what `neurosearch find` prints for a fixed set of queries, to compare two versions of the code.

    python benchmarks/find_outputs.py --out /tmp/before [--checkout DIR] [--index index/default]
    diff -r /tmp/before /tmp/after      # byte-identical output is an empty diff

Each query is run twice, as the table a person reads and as ``--json``; stdout and the exit code
are written to one file per query and form. The slow path's timing line (seconds of a phrase
without a stored expansion) is the one part that changes from run to run, so ``--json`` output has
its ``seconds`` keys removed and table output has that figure masked. With ``--checkout`` the
commands run with that checkout's code first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

QUERIES = [
    "weekdays", "months", "numbers", "family members", "colors", "countries", "fruits", "furniture",
    "clothing", "weather", "drinks", "tools", "cities", "vegetables", "metals", "musical instruments",
    "tech companies", "paris,london", "monday tuesday", "european capitals",
]
"""20 queries: stored concepts, token lists and one phrase that takes the slow path."""


def _masked(text: str, as_json: bool) -> str:
    if as_json:
        try:
            data = json.loads(text)
        except ValueError:
            return text

        def strip(node):
            if isinstance(node, dict):
                return {k: strip(v) for k, v in node.items() if k not in ("seconds", "elapsed_s")}
            if isinstance(node, list):
                return [strip(v) for v in node]
            return node

        return json.dumps(strip(data), indent=1, sort_keys=True)
    return re.sub(r"\d+\.\d+ ?s\b", "<s>", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--checkout", type=Path, default=None)
    parser.add_argument("--index", default=None)
    args = parser.parse_args()
    env = dict(os.environ, COLUMNS="160", NO_COLOR="1", TERM="dumb")
    if args.checkout:
        env["PYTHONPATH"] = str(args.checkout.resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    index = ["--index", args.index] if args.index else []
    args.out.mkdir(parents=True, exist_ok=True)
    for number, query in enumerate(QUERIES):
        for form, extra in (("table", []), ("json", ["--json"])):
            command = [sys.executable, "-m", "neurosearch.cli", "find", query, *index, *extra]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            text = _masked(done.stdout, form == "json") + f"\n[exit {done.returncode}]\n"
            (args.out / f"{number:02d}-{form}.txt").write_text(text, encoding="utf-8")
        print(f"{number + 1}/{len(QUERIES)} {query}", file=sys.stderr)


if __name__ == "__main__":
    main()
