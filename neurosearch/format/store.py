"""Result stores that cannot lose what they hold: one writer at a time, merge on write, torn-line safe.

Everything a command stores about an index (labels, ablation results, evaluation results) goes
through these primitives:

- :func:`exclusive` -- a lock file beside a store (``fcntl.flock``), held while a store is
  re-read, changed and written, so two processes never overwrite each other's additions;
- :func:`read_json` -- a store that cannot be read is an error naming the file, never silently
  replaced;
- :func:`update_json` -- read-modify-write under the lock, written atomically;
- :func:`append_jsonl` / :func:`read_jsonl` -- an append-only log whose torn last line (a killed
  writer) is skipped by readers and never glued to the next record;
- :func:`check_writable` -- fail before the work, not after it, where nothing can be written.

Standard library only.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from neurosearch.errors import NeurosearchError
from neurosearch.format.atomic import write_bytes_atomic


class StoreError(NeurosearchError):
    """A result store that cannot be read, written or locked."""


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextmanager
def exclusive(path: Path, *, timeout: float = 60.0, what: str = "another neurosearch process") -> Iterator[None]:
    """Hold the lock of the store at ``path`` (waits up to ``timeout`` seconds, then fails clearly)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path(path), "a+b")
    except OSError as exc:
        raise StoreError(f"cannot write results beside {path}: {exc.strerror or exc}") from None
    try:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): atomic writes still hold, concurrent merges may not
            yield
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(f"{path} is locked by {what}; try again when it has finished") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def check_writable(directory: Path, what: str = "results") -> None:
    """Raise StoreError now when nothing can be written into ``directory`` (which may not exist yet).

    A real probe (a temporary file created and removed in the nearest existing folder), because
    permission bits say nothing on a read-only mount or for root.
    """
    import tempfile

    directory = Path(directory)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StoreError(f"cannot write {what} into {directory}: {existing} is not a directory")
    try:
        handle, name = tempfile.mkstemp(prefix=".neurosearch-probe-", dir=existing)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise StoreError(f"cannot write {what} into {directory}: {exc.strerror or exc}") from None


def read_json(path: Path, *, default: Any = None, check: Callable[[Any], None] | None = None) -> Any:
    """The parsed store at ``path`` (``default`` when absent); unreadable or invalid -> StoreError.

    ``check`` raises ``ValueError``/``TypeError`` with a reason when the parsed value has the wrong shape.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
        if check is not None:
            check(data)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{path} is not a valid neurosearch result file ({exc}); "
                         f"move it away to start a new one (it was left as it is)") from None
    return data


def read_json_object(path: Path, error: type[Exception], *, missing: str, what: str) -> dict[str, Any]:
    """The JSON object at ``path``; ``error(missing)`` when there is no file, ``error`` naming
    ``what`` and ``path`` when it cannot be read or is not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(missing) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"{what} {path} cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path} is not a JSON object")
    return data


def write_json(path: Path, data: Any) -> None:
    try:
        write_bytes_atomic(Path(path), (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


def update_json(path: Path, change: Callable[[Any], Any], *, default: Any,
                check: Callable[[Any], None] | None = None, what: str = "another neurosearch process") -> Any:
    """Re-read the store under its lock, apply ``change`` (returns the new value), write it atomically."""
    with exclusive(path, what=what):
        data = change(read_json(path, default=default, check=check))
        write_json(path, data)
    return data


def read_cache(path: Path) -> dict[str, Any]:
    """A cache file's entries: {} when it is absent, unreadable or not a JSON object (a cache is
    never needed, so a damaged one is passed over, and replaced by the next :func:`put_in_cache`)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def put_in_cache(path: Path, key: str, value: Any, limit: int) -> bool:
    """Add one entry to a cache file, under its lock; at ``limit`` entries only existing keys are
    updated. False when it could not be written, which is not an error: the entry is computed again."""
    try:
        with exclusive(path, timeout=2.0):
            data = read_cache(path)
            if key in data or len(data) < limit:
                data[key] = value
                write_json(path, data)
    except (StoreError, OSError):
        return False
    return True


def append_jsonl(path: Path, record: Any) -> None:
    """Append one record as a line, durably; a torn last line left by a killed writer stays its own line."""
    path = Path(path)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    with exclusive(path):
        try:
            with open(path, "a+b") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() > 0:
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        line = b"\n" + line
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_jsonl(path: Path) -> tuple[list[Any], int]:
    """(records, number of unreadable lines skipped) of a log; absent -> ([], 0)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    records, skipped = [], 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line.decode("utf-8")))
        except (ValueError, UnicodeDecodeError):
            skipped += 1
    return records, skipped
