"""Helpers of the battery: run a command (in-process or in a fresh interpreter) and judge what it did."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items()
       if not k.startswith("OPENAI_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
ENV["PYTHONPATH"] = str(ROOT) + os.pathsep + ENV.get("PYTHONPATH", "")

TALLY = {"cases": 0, "handled": 0, "tracebacks": 0}
"""Counted over a run by conftest.py's hooks; tracebacks by :func:`assert_no_traceback`."""


class Outcome:
    """What a command did: exit code and both streams (from CliRunner or a subprocess)."""

    def __init__(self, code: int, stdout: str, stderr: str):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def error_line(self) -> str:
        """The one error line (asserts there is exactly one, and no traceback)."""
        assert_no_traceback(self)
        assert self.code != 0, f"expected a failure, got exit 0:\n{self.output}"
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{self.stderr}"
        assert lines[0].startswith("neurosearch: error: "), lines[0]
        return lines[0]

    def ok(self) -> "Outcome":
        assert_no_traceback(self)
        assert self.code == 0, self.output
        return self


def assert_no_traceback(outcome: Outcome) -> None:
    if "Traceback" in outcome.output:
        TALLY["tracebacks"] += 1
    assert "Traceback" not in outcome.output, outcome.output


def cli(*args: str) -> Outcome:
    """Run the app in-process (typer's CliRunner), stdout and stderr apart."""
    from neurosearch.cli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        text = "".join(traceback.format_exception(result.exception))
        return Outcome(1, result.stdout, result.stderr + text)
    return Outcome(result.exit_code, result.stdout, result.stderr)


def sub(*args: str, prefix: tuple[str, ...] = (), timeout: float = 600, **kwargs: Any) -> Outcome:
    """Run ``neurosearch ARGS`` in a fresh interpreter (``prefix`` e.g. wraps it in ``unshare``)."""
    command = [*prefix, sys.executable, "-m", "neurosearch.cli", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=timeout, cwd=ROOT, **kwargs)
    return Outcome(done.returncode, done.stdout, done.stderr)


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (to prove nothing changed)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def battery_config(model: Path, corpus: Path, **profiles: Any) -> Any:
    """The BuildConfig of the battery's tiny index (``profiles`` overrides ProfileConfig fields)."""
    from neurosearch.config import BuildConfig, ClusterConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig

    return BuildConfig(
        model=ModelConfig(model=str(model), dtype="float32"),
        corpus=CorpusConfig(source=str(corpus), window=16),
        stats=StatsConfig(batch_tokens=256, shard_docs=100),
        profiles=ProfileConfig(min_count=2, **{"search_method": "filter", **profiles}),
        clusters=ClusterConfig(ks=(3, 6)),
    )
