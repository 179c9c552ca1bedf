"""Packaging step that pyproject.toml cannot express: the default index goes into the wheel.

The repository keeps the shipped index at the top level (``index/default/``); a wheel carries it
as package data in ``neurosearch/_shipped/default/`` (found by ``neurosearch.format.shipped``).
Copied: the manifest, every file it lists (each checked against its sha256, so a corrupt index is
never packaged) and the results shipped beside them (evaluation, ablations, labels, the fitted
head); never the build's working folders (``stats/``, ``profiles/``, ``checkpoint/``), lock files
or temporary files. An editable install (``pip install -e .``) copies nothing: it reads
``index/default/`` in the checkout.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path(__file__).resolve().parent / "index" / "default"
TARGET = Path("neurosearch") / "_shipped" / "default"
WORK_FOLDERS = {"stats", "profiles", "checkpoint"}


def _sha256(path: Path) -> str:  # as neurosearch.format.atomic.sha256_file: setup.py must not import what it builds
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_files(source: Path = SOURCE) -> list[str]:
    """Relative paths of the files a wheel carries from ``source`` (checked against the manifest)."""
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    for relative, expected in manifest["files"].items():
        path = source / relative
        if not path.is_file() or _sha256(path) != expected:
            raise SystemExit(f"refusing to package {source}: {relative} is missing or does not match the manifest")
    chosen = set(manifest["files"]) | {"manifest.json"}
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if not path.is_file() or relative.parts[0] in WORK_FOLDERS:
            continue
        if any(part.startswith(".") for part in relative.parts) or path.suffix in (".tmp", ".lock"):
            continue
        chosen.add(relative.as_posix())
    return sorted(chosen)


class BuildPyWithIndex(build_py):
    """``build_py`` that also copies the default index into the build (not for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not (SOURCE / "manifest.json").is_file():
            return
        target = Path(self.build_lib) / TARGET
        shutil.rmtree(target, ignore_errors=True)
        for relative in shipped_files():
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SOURCE / relative, destination)


setup(cmdclass={"build_py": BuildPyWithIndex})
