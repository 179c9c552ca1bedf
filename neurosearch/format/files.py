"""Verified, cached reads of one index directory's files.

Each file is checked against the manifest's sha256 the first time it is read, so a corrupt file is
named, never trusted, and parsed once into an explicit cache. Inside
:meth:`IndexFiles.verifying_in_background` the hashing runs on a second thread while the caller
parses and scores; a file whose hash then fails raises on exit and the cache is cleared, so nothing
parsed from it is served later. Standard library only; numpy only for :meth:`IndexFiles.npy`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.format.manifest import IndexError_, Manifest
from neurosearch.format.npyfile import NpyFile

if TYPE_CHECKING:
    import numpy as np


class IndexFiles:
    """The files of one index directory: verified on first read, parsed once."""

    def __init__(self, path: Path, manifest: Manifest):
        self.path = path
        self.manifest = manifest
        self._verified: set[str] = set()
        self._pending: set[str] = set()  # read while hashing runs in the background
        self._background: _Verifier | None = None
        self._cache: dict[tuple[str, str], Any] = {}  # (how it was parsed, relative path) -> contents

    def has(self, relative: str) -> bool:
        """Whether the manifest lists the file (optional files exist only in some indexes)."""
        return relative in self.manifest.files

    def was_read(self, relative: str) -> bool:
        """Whether the file has been opened through this object (verified or being verified)."""
        return relative in self._verified or relative in self._pending

    def checked(self, relative: str) -> Path:
        """The file's path, once its hash is checked (or, in the background, submitted for checking)."""
        if relative not in self._verified and relative not in self._pending:
            if self._background is not None:
                self._background.submit(relative)
                self._pending.add(relative)
            else:
                self.manifest.verify(self.path, [relative])
                self._verified.add(relative)
        return self.path / relative

    def verified(self, relative: str) -> Path:
        """The file's path once its hash is checked now, also while hashing runs in the background:
        for files parsed by C code (an HNSW graph), which must only ever see verified bytes."""
        if relative not in self._verified:
            self.manifest.verify(self.path, [relative])
            self._verified.add(relative)
        return self.path / relative

    def clear(self) -> None:
        """Forget everything parsed so far (files are parsed again, from disk, when next read)."""
        self._cache.clear()

    # -- the file kinds (each read is looked up in the cache first: ``find`` makes a hundred) -----------
    def table(self, relative: str) -> NpyFile:
        """An array file read without numpy (rows and slices as tuples), memory-mapped."""
        found = self._cache.get(("table", relative))
        if found is None:
            found = self._cache[("table", relative)] = NpyFile(self.checked(relative))
        return found

    def npy(self, relative: str, *, mmap: bool = False) -> np.ndarray:
        """An array file (callers must not mutate it); ``mmap`` maps it instead of reading it all."""
        key = ("mmap" if mmap else "npy", relative)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._read_npy(relative, mmap)
        return found

    def _read_npy(self, relative: str, mmap: bool) -> np.ndarray:
        import numpy as np

        path = self.checked(relative)
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
            raise IndexError_(f"corrupt index file {path}: {exc}") from None

    def json(self, relative: str) -> Any:
        """A parsed JSON file (callers must not mutate it)."""
        if ("json", relative) not in self._cache:
            self._cache[("json", relative)] = self._read_json(relative)
        return self._cache[("json", relative)]

    def _read_json(self, relative: str) -> Any:
        path = self.checked(relative)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise IndexError_(f"corrupt index file {path}: not valid JSON") from None

    def lines(self, relative: str) -> list[str]:
        """A UTF-8 text file split at ``\\n`` (callers must not mutate it)."""
        found = self._cache.get(("lines", relative))
        if found is None:
            found = self._cache[("lines", relative)] = self._read_lines(relative)
        return found

    def _read_lines(self, relative: str) -> list[str]:
        path = self.checked(relative)
        try:
            return path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise IndexError_(f"corrupt index file {path}: not UTF-8 text") from None

    # -- hashing beside the work ---------------------------------------------------------------------
    @contextmanager
    def verifying_in_background(self) -> Iterator[None]:
        """Hash the files read inside the block on a second thread; every hash is checked on exit.

        hashlib releases the GIL, so on a multi-core machine hashing overlaps with parsing and
        scoring instead of preceding them. Results computed from a file whose hash then fails are
        never returned: the exit raises the one-line error, after clearing the cache.
        """
        if self._background is not None:
            yield
            return
        self._background = _Verifier(lambda relative: self.manifest.verify(self.path, [relative]))
        failed: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            failed = exc
        finally:
            verifier, self._background = self._background, None
            errors = verifier.finish()
            pending, self._pending = self._pending, set()
            for relative in pending:
                error = errors.get(relative)
                if error is None:
                    self._verified.add(relative)
                elif failed is None or not isinstance(failed, IndexError_):
                    failed = error  # a corrupt file explains any other failure reading it
        if isinstance(failed, IndexError_):  # forget whatever was parsed from unverified files
            self.clear()
        if failed is not None:
            raise failed


class _Verifier:
    """One thread that hashes index files in the order they are read (``concurrent.futures``
    alone is slow to import for a cold ``find``)."""

    def __init__(self, verify: Callable[[str], None]):
        import queue
        import threading

        self._verify = verify
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._errors: dict[str, BaseException] = {}
        self._thread = threading.Thread(target=self._run, name="neurosearch-verify", daemon=True)
        self._thread.start()

    def submit(self, relative: str) -> None:
        self._queue.put(relative)

    def _run(self) -> None:
        while (relative := self._queue.get()) is not None:
            try:
                self._verify(relative)
            except BaseException as exc:  # reported by finish(), in the caller's thread
                self._errors[relative] = exc

    def finish(self) -> dict[str, BaseException]:
        """Wait for every submitted file; the errors by file."""
        self._queue.put(None)
        self._thread.join()
        return self._errors
