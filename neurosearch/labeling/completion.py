"""Themes written by a language model completing a prompt: ``label`` without a server.

The default model is Gemma 3 270M from the optional ``lm`` extra (``neurosearch/lm``): a small
*base* model, which continues text rather than follows instructions. It is asked to complete a
sentence over the unit's top whole words (:data:`THEME_PROMPT`)::

    Saturday, Tuesday, Monday, Wednesday, Friday, Sunday, Thursday and Day are all types of

and its greedy continuation, up to the first of :data:`THEME_STOP` (at most
``LabelConfig.lm_max_tokens`` tokens), is the theme (" days"). Few-shot prompts ("Top tokens: ...
Theme: ..." with written examples) did worse with this model: it copies an example's theme onto
most units (docs/guide/label.md has the comparison). The theme is cleaned as a server's is
(``prompt.clean_theme``: no control characters, capped, 1-6 words), after cutting off a relative
clause ("organs that are part of the human body": "organs"). A continuation that names nothing
(empty, "the same", "words ...", "2019"), copies the prompt's words, or is longer than 6 words is
asked again once over the first 5 words (``LabelConfig.lm_retry_tokens``), as a server's unusable
reply is re-asked; a second one is a ``junk`` failure, and the unit keeps its offline label.

A label records the model's identity key (``local:gemma-3-270m-q4_k_m@a5fd3b62230aa5ec``) as its
``model`` and the hash of the prompt, the generation settings and that key as its ``prompt_hash``,
so a label is current for exactly one prompt and one model: another model, or another prompt,
labels again. The model is loaded only when some label is missing (its identity is known before:
``lm.spec.identify``).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import TYPE_CHECKING, Any, Union

from neurosearch.index.labels import Label
from neurosearch.labeling.client import Failure
from neurosearch.labeling.config import LabelConfig
from neurosearch.labeling.prompt import Junk, LabelRequest, clean_theme, one_line

if TYPE_CHECKING:
    from neurosearch.lm.base import LanguageModel, ModelIdentity
    from neurosearch.lm.config import LMSpec
    from neurosearch.progress import Reporter

LMLike = Union["LanguageModel", "LMSpec", str, "os.PathLike[str]"]
"""A loaded language model, or what names one (``lm.config.LMSpec``, ``"local"``, a path)."""

THEME_PROMPT = "{words} are all types of"
"""What a language model completes: ``words`` is the unit's top whole words, ``A, B, ... and Z``
(alphabetic ones capitalised: "Monday" is how the model has seen a weekday; BERT's are lower case)."""
THEME_STOP = (".", ",", "\n", "<")
"""The theme ends at the first of these (``<``: Gemma's ``<start_of_image>``, which its tokenizer
does not drop), or after ``LabelConfig.lm_max_tokens`` tokens."""
EMPTY_HEADS = frozenset({"same", "word", "words", "thing", "things", "something", "stuff", "other", "others", "all",
                         "them", "it", "this", "these"})
"""A theme that starts with one of these (after "the", "a" or "an") names nothing: "the same",
"words that are used to describe", "things" (``junk``)."""
_WORD = re.compile(r"[\w'&+-]+")
_RELATIVE = re.compile(r"\s+(?:that|which|who|whom|whose|where)\s.*$", re.IGNORECASE | re.DOTALL)
"""A relative clause and what follows it: cut off a theme."""


def theme_words(request: LabelRequest, count: int) -> list[str]:
    """The first ``count`` top tokens that are words: no word pieces (``##s``), punctuation or
    special tokens; the first ``count`` top tokens when none is."""
    words = [t for t in request.top_tokens if not t.startswith("##") and not (t.startswith("[") and t.endswith("]"))
             and any(ch.isalnum() for ch in t)]
    return (words or [t for t in request.top_tokens if t.strip()])[:count]


def build_prompt(request: LabelRequest, config: LabelConfig, count: int | None = None) -> str:
    """The text the language model completes (:data:`THEME_PROMPT`) over the unit's first
    ``count`` whole words (default ``config.lm_top_tokens``); it alone, with the model's identity
    and the generation settings, decides the label's hash."""
    words = [one_line(w, 40) for w in theme_words(request, count or config.lm_top_tokens)]
    words = [w.capitalize() if w.isalpha() else w for w in words]
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
    return THEME_PROMPT.format(words=listed)


def completion_hash(prompt: str, model_key: str, config: LabelConfig = LabelConfig()) -> str:
    """sha256 over the prompt text, how it is continued (greedy, ``lm_max_tokens``,
    :data:`THEME_STOP`, the re-ask with ``lm_retry_tokens`` words) and the model's identity key."""
    how = (f"greedy, at most {config.lm_max_tokens} tokens, stop at {list(THEME_STOP)!r}; "
           f"junk asked again with the first {config.lm_retry_tokens} words")
    return hashlib.sha256(f"prompt: {prompt}\n\ngenerate: {how}\n\nmodel: {model_key}".encode("utf-8")).hexdigest()


def parse_theme(text: str | None, request: LabelRequest, config: LabelConfig) -> str:
    """The theme of a model's continuation: the noun phrase before a relative clause ("organs that
    are part of the human body": "organs"), cleaned by ``prompt.clean_theme`` (1-6 words); raises
    ``Junk`` for one that is empty, names nothing (:data:`EMPTY_HEADS`, or no letter at all:
    "2019"), or copies the prompt's words (two or more of them)."""
    if not text or not text.strip():
        raise Junk("empty reply")
    theme = clean_theme(_RELATIVE.sub("", text.strip()) or text)
    words = [w.lower() for w in _WORD.findall(theme)]
    head = words[1:] if words[:1] in (["the"], ["a"], ["an"]) else words
    if not head or head[0] in EMPTY_HEADS or not any(ch.isalpha() for ch in theme):
        raise Junk("names no theme")
    listed = {w.lower() for w in theme_words(request, config.lm_top_tokens)}
    if len(words) >= 2 and sum(w in listed for w in words) >= 2:
        raise Junk("copies the prompt's words")
    return theme


def explanation(identity: ModelIdentity) -> str:
    where = "a local model" if identity.backend == "local" else f"a model on {identity.source}"
    return (f"Written by {identity.name} ({where}) completing '<top words> are all types of'; "
            "a small base model writes no explanation.")


class CompletionWriter:
    """Writes themes with one language model, loaded when the first theme is asked for."""

    def __init__(self, lm: LMLike, config: LabelConfig, reporter: Reporter | None = None) -> None:
        self.config = config
        self.reporter = reporter
        self.load_seconds: float | None = None
        if _is_model(lm):
            self._lm: LanguageModel | None = lm  # type: ignore[assignment]
            self._spec = None
            self.identity = lm.identity  # type: ignore[union-attr]
        else:
            from neurosearch.lm.spec import identify

            self._lm = None
            self._spec = lm
            self.identity = identify(lm, reporter=reporter)

    @property
    def model(self) -> str:
        """What a label records as its ``model``: the identity key."""
        return self.identity.key

    def prepare(self, request: LabelRequest) -> tuple[str, str]:
        prompt = build_prompt(request, self.config)
        return prompt, completion_hash(prompt, self.model, self.config)

    def start(self) -> None:
        """Load the model (when it was named, not given)."""
        if self._lm is None:
            from neurosearch.lm.spec import load_language_model

            started = time.perf_counter()
            self._lm = load_language_model(self._spec, reporter=self.reporter)
            self.load_seconds = time.perf_counter() - started

    def write(self, request: LabelRequest, prompt: str, digest: str) -> Label | Failure:
        """The theme of ``prompt``'s continuation; a junk one is asked again once, as a server's
        is, over the first ``lm_retry_tokens`` words (fewer, so fewer stray ones), and a second
        junk is a ``junk`` failure naming both."""
        from neurosearch.lm.base import LMError

        assert self._lm is not None, "start() first"
        retry = self.config.lm_retry_tokens
        prompts = [prompt] + ([build_prompt(request, self.config, retry)] if retry else [])
        why: list[str] = []
        for attempt in dict.fromkeys(prompts):  # the same prompt once (a unit with few words)
            try:
                text = self._lm.generate(attempt, max_tokens=self.config.lm_max_tokens, stop=list(THEME_STOP))
            except LMError as exc:
                return Failure("lm", str(exc))
            try:
                theme = parse_theme(text, request, self.config)
            except Junk as exc:
                why.append(f"{exc}" + (f": {one_line(text, 60)!r}" if text and text.strip() else ""))
                continue
            return Label(theme=theme, explanation=explanation(self.identity), model=self.model, prompt_hash=digest,
                         source="llm")
        return Failure("junk", "; then ".join(why) + (f" (asked {len(why)} times)" if len(why) > 1 else ""))

    def scrub(self, text: str) -> str:
        return text

    def stops_on(self, failure: Failure) -> bool:
        """Junk themes do not count towards ``max_consecutive_failures`` (a small model writes some,
        each costs a second or two); a model that fails to generate does."""
        return failure.kind != "junk"

    def check(self) -> None:
        """Nothing to check before the store: loading says what is missing."""

    def close(self) -> None:
        if self._lm is not None and self._spec is not None:  # ours: loaded here
            self._lm.close()


def _is_model(lm: Any) -> bool:
    return hasattr(lm, "generate") and hasattr(lm, "identity")
