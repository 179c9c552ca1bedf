""":func:`load_language_model`, the one way to get a language model (what to load: ``config.LMSpec``).

Standard library only: torch, transformers and openai are imported when a model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Union

from neurosearch.lm.base import LanguageModel, ModelIdentity
from neurosearch.lm.config import LMSpec
from neurosearch.progress import Reporter

SpecLike = Union[LMSpec, str, "os.PathLike[str]", None]


def load_language_model(spec: SpecLike = None, *, reporter: Reporter | None = None,
                        api_key: str | None = None, **fields: Any) -> LanguageModel:
    """The language model ``spec`` names (an :class:`LMSpec`, or a string for :meth:`LMSpec.parse`;
    ``fields`` override its settings). ``reporter`` shows loading progress (the CLI passes a rich
    one). Raises :class:`~neurosearch.lm.base.LMError` (one line) when it cannot be had: a missing
    extra (naming ``pip install "neurosearch[lm]"``), a wrong sha256, an unreadable model, or a
    server that cannot be reached; ``api_key`` (else ``OPENAI_API_KEY``) is sent to the server only."""
    if not isinstance(spec, LMSpec):
        spec = LMSpec.parse(spec, **fields)
    elif fields:
        spec = replace(spec, **fields)
    if spec.kind == "remote":
        from neurosearch.lm.remote import RemoteLM

        return RemoteLM(spec, api_key=api_key)
    from neurosearch.lm.local import load_local

    return load_local(spec, reporter)


def identify(spec: SpecLike = None, *, reporter: Reporter | None = None, **fields: Any) -> ModelIdentity:
    """The identity :func:`load_language_model` would give the model ``spec`` names, without loading
    it or importing torch: to key a cache before deciding whether the model is needed at all. A
    local path's files are checked and hashed (remembered, so the load after costs nothing more);
    a server is not contacted. Raises :class:`~neurosearch.lm.base.LMError` as loading would for a
    missing or refused file (not for a missing extra: loading says that)."""
    if not isinstance(spec, LMSpec):
        spec = LMSpec.parse(spec, **fields)
    elif fields:
        spec = replace(spec, **fields)
    if spec.kind == "remote":
        assert spec.base_url is not None and spec.model is not None
        return ModelIdentity("remote", spec.model, None, spec.base_url.rstrip("/"))
    from neurosearch.lm.local import local_identity

    return local_identity(spec, reporter)
