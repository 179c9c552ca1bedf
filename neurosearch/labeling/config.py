"""How labels (and ``find --llm``'s member lists) are requested from an LLM, or written by a local language model."""

from __future__ import annotations

from dataclasses import dataclass

from neurosearch.config import check_float, check_int


@dataclass(frozen=True)
class LabelConfig:
    """How labels are requested."""

    llm_model: str = "gpt-4o-mini"
    """Chat model name as the server knows it."""
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:8080/v1`` for llama.cpp; None: OpenAI.
    Passed explicitly, so ``OPENAI_BASE_URL`` in the environment is not consulted. The API key is
    sent to this server."""
    timeout: float = 30.0
    """Seconds per HTTP request."""
    max_retries: int = 3
    """Retries after a 429, a 5xx, a timeout or a dropped connection, with exponential backoff."""
    backoff_seconds: float = 1.0
    """First retry delay; doubles each retry (a server's Retry-After wins when longer)."""
    junk_retries: int = 1
    """Re-asks after a reply that is not the required JSON, before recording a ``junk`` failure."""
    contexts: int = 3
    """Activating contexts quoted in the prompt (more: better themes, longer prompts)."""
    top_tokens: int = 30
    """Top tokens quoted in the prompt; the tail of a 50-token list adds cost, not meaning."""
    max_consecutive_failures: int = 5
    """Stop the run after this many items in a row failed (0: never): a server that answers every
    request with an error costs the retries of every item (what that came to: docs/decisions.md)."""
    lm_top_tokens: int = 8
    """A language model's prompt (``completion.py``, no server): the unit's first top whole words it lists."""
    lm_retry_tokens: int = 5
    """A language model's junk theme is asked again once, over the unit's first this many whole words (0: not)."""
    lm_max_tokens: int = 12
    """A language model's theme: the most tokens it generates. A theme ends earlier, at ``.``, ``,``
    or a newline; one that runs on to this is cut off, and longer than the 6 words a theme may have."""

    def __post_init__(self) -> None:
        check_float("timeout", self.timeout, 0.0)
        for name in ("max_retries", "junk_retries", "contexts", "max_consecutive_failures"):
            check_int(name, getattr(self, name), 0)
        check_float("backoff_seconds", self.backoff_seconds, 0.0, inclusive=True)
        check_int("top_tokens", self.top_tokens, 1)
        check_int("lm_top_tokens", self.lm_top_tokens, 1)
        check_int("lm_max_tokens", self.lm_max_tokens, 1)
        check_int("lm_retry_tokens", self.lm_retry_tokens, 0)
