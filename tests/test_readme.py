"""The README's commands work as written.

Every ``neurosearch ...`` command in the README's code blocks (a ``$ `` prompt, a comment after
``#`` and the set-up lines' ``&&`` chains allowed) runs in a fresh process from an empty folder,
against the shipped index, with the state folder in a temporary directory: it must exit 0 and
leave the index and ``git status`` of the checkout unchanged. The library example (the README's
``python`` block) runs too. Their printed output is not compared with the README's: the README
shows it abridged. The README stays the front door: at most 300 lines.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, file_tree, git_status

README = ROOT / "README.md"
SHIPPED = ROOT / "index" / "default"
MAX_LINES = 300
NEEDS_CORPUS = {"ablate", "evaluate", "fit-head"}
"""Commands that read the index's corpus (``ablate``'s sentences), not just contexts from it."""
LOADS_MODEL = {"ablate", "trace", "evaluate", "fit-head", "build"}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, and ("", body) of every indented one."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(```+|~~~+)\s*(\S*)", lines[i])
        if fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1))), len(lines))
            blocks.append((fence.group(2), "\n".join(lines[i + 1:end])))
            i = end + 1
            continue
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            blocks.append(("", "\n".join(line[4:] for line in lines[i:end])))
            i = end
            continue
        i += 1
    return blocks


def commands(text: str) -> list[list[str]]:
    """Every distinct ``neurosearch`` command of the README's shell blocks, as argument lists, in order."""
    found: list[list[str]] = []
    for language, body in code_blocks(text):
        if language not in ("", "sh", "bash", "shell", "console"):
            continue
        for line in body.splitlines():
            line = line.strip().removeprefix("$ ")
            if not re.search(r"(^|&&|;|\|\|)\s*neurosearch\s", line):
                continue
            words = shlex.split(line, comments=True)
            part: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", ";", "||"):
                    if part[:1] == ["neurosearch"] and part not in found:
                        found.append(part)
                    part = []
                else:
                    part.append(word)
    return found


def python_examples(text: str) -> list[str]:
    return [body for language, body in code_blocks(text) if language == "python"]


README_COMMANDS = commands(README.read_text(encoding="utf-8"))


def test_the_readme_is_the_front_door_not_the_manual():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/ (at most {MAX_LINES})"


def test_the_readme_shows_the_main_commands_and_a_library_example():
    shown = {args[1] for args in README_COMMANDS if len(args) > 1}
    assert {"find", "show", "ablate", "trace", "report"} <= shown
    assert ["neurosearch", "find", "weekdays"] in README_COMMANDS  # the first set-up command's
    assert python_examples(README.read_text(encoding="utf-8"))


def test_the_parser_reads_prompts_comments_and_chains():
    text = ("    pip install -e . && neurosearch find \"weekdays\"\n\n"
            "```\n$ neurosearch show cluster 84   # a comment\nnot a command\n```\n"
            "```python\nprint('neurosearch find x')\n```\n")
    assert commands(text) == [["neurosearch", "find", "weekdays"], ["neurosearch", "show", "cluster", "84"]]
    assert python_examples(text) == ["print('neurosearch find x')"]


@pytest.fixture(scope="module")
def shipped() -> tuple[dict[str, str], str | None]:
    """The shipped index's files and the checkout's ``git status`` before any README command ran."""
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("no index/default in this checkout")
    return file_tree(SHIPPED), git_status()


def run_here(args: list[str], folder: Path, state: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("NEUROSEARCH_INDEX", "OPENAI_API_KEY")}
    env.update(NEUROSEARCH_STATE=str(state), COLUMNS="100", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def corpus_missing() -> str | None:
    from neurosearch import Index
    from neurosearch.index.contexts import locate_corpus

    lookup = locate_corpus(Index.load(SHIPPED))
    return None if lookup.path is not None else (lookup.problem or "the shipped index's corpus is missing")


@pytest.mark.parametrize("args", [pytest.param(a, id=" ".join(a), marks=[pytest.mark.slow] if a[1] in LOADS_MODEL else [])
                                  for a in README_COMMANDS])
def test_a_readme_command_runs_as_written(args: list[str], shipped, tmp_path: Path):
    if args[1] in NEEDS_CORPUS and (problem := corpus_missing()):
        pytest.skip(f"`{' '.join(args)}` reads the shipped index's corpus: {problem}")
    before, status = shipped
    done = run_here([sys.executable, "-m", "neurosearch.cli", *args[1:]], tmp_path, tmp_path / "state")
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.strip()
    assert file_tree(SHIPPED) == before, f"{' '.join(args)} changed the shipped index"
    assert git_status() == status, f"{' '.join(args)} changed the checkout"


def test_the_readme_library_example_runs(shipped, tmp_path: Path):
    before, status = shipped
    for example in python_examples(README.read_text(encoding="utf-8")):
        done = run_here([sys.executable, "-c", example], tmp_path, tmp_path / "state", timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip()
    assert file_tree(SHIPPED) == before and git_status() == status


def test_the_readmes_links_into_the_docs_exist():
    text = README.read_text(encoding="utf-8")
    targets = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert [t for t in targets if t and not (ROOT / t).exists()] == []
    assert any(t.startswith("docs/") for t in targets)
