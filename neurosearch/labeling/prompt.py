"""What is asked of the LLM, and what its reply must be: the prompt, its hash, the reply parser.

The parser keeps only what a label is for: a theme of 1-6 words and one sentence of explanation,
without control characters and capped in length (a server can return anything, e.g. a 10 MB
"theme" full of escape sequences), so the store never holds what a terminal must not print.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from neurosearch.ids import store_key
from neurosearch.index.labels import KINDS
from neurosearch.labeling.config import LabelConfig
from neurosearch.text import MAX_EXPLANATION, MAX_THEME, for_terminal


@dataclass(frozen=True)
class LabelRequest:
    """One thing to name: a cluster or a neuron, with its evidence."""

    kind: str
    """``cluster`` or ``neuron``."""
    id: str
    """Cluster id such as ``filter/k200/17`` or neuron name ``L:I``."""
    top_tokens: list[str]
    """Top tokens, best first."""
    contexts: list[str] = field(default_factory=list)
    """Short activating contexts (may be empty)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def key(self) -> str:
        return store_key(self.kind, self.id)


SYSTEM_PROMPT = (
    "You name the concept encoded by neurons of a BERT language model. "
    "Reply with a single JSON object and nothing else."
)


def build_messages(request: LabelRequest, config: LabelConfig) -> list[dict[str, str]]:
    """Chat messages asking for ``{"theme", "explanation"}``; the text alone decides the hash."""
    what = "a cluster of neurons" if request.kind == "cluster" else "one neuron"
    tokens = ", ".join(request.top_tokens[: config.top_tokens])
    lines = [
        f"These are the tokens that most strongly activate {what} in a BERT model, strongest "
        'first ("##" marks a word-piece that continues a word):',
        tokens,
    ]
    contexts = [one_line(c, 200) for c in request.contexts[: config.contexts] if c.strip()]
    if contexts:
        lines.append("")
        lines.append("Contexts where it activates strongly:")
        lines.extend(f"- {c}" for c in contexts)
    lines += [
        "",
        "What concept do they share? Reply with only this JSON object:",
        '{"theme": "<2-5 words>", "explanation": "<one sentence>"}',
    ]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
    ]


def prompt_hash(messages: list[dict[str, str]], model: str) -> str:
    """sha256 over the prompt text and the model name."""
    text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return hashlib.sha256(f"{text}\n\nmodel: {model}".encode("utf-8")).hexdigest()


def one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


class Junk(ValueError):
    """A reply that is not the JSON we asked for."""


def parse_reply(text: str | None) -> tuple[str, str]:
    """``(theme, explanation)`` from a model reply, tolerating code fences and stray prose."""
    data = reply_object(text)
    theme, explanation = data.get("theme"), data.get("explanation")
    if not isinstance(theme, str) or not isinstance(explanation, str):
        raise Junk("'theme' and 'explanation' must be strings")
    theme = clean_theme(theme)
    explanation = for_terminal(" ".join(explanation.split()), MAX_EXPLANATION)
    if not explanation:
        raise Junk("empty explanation")
    return theme, explanation


MAX_THEME_WORDS = 6
"""The most words a theme may have (the prompt asks for 2-5)."""


def clean_theme(theme: str) -> str:
    """A theme as it is stored: on one line, without control characters, surrounding quotes or a
    final period, capped at ``MAX_THEME`` characters; raises ``Junk`` unless it has 1-6 words.
    Every theme goes through it, a server's (``parse_reply``) or a local model's (``completion.py``)."""
    theme = for_terminal(" ".join(theme.split()).strip(" .\"'"), MAX_THEME)
    if not 1 <= len(theme.split()) <= MAX_THEME_WORDS:
        raise Junk(f"theme has {len(theme.split())} words, expected 1-{MAX_THEME_WORDS}")
    return theme


LABEL_REASK = 'Reply with only the JSON object {"theme": "<2-5 words>", "explanation": "<one sentence>"}.'
"""What a re-ask after an unusable label reply asks for."""


def reply_object(text: str | None) -> dict:
    """The JSON object of a model reply, tolerating code fences, ``<think>`` blocks and stray prose."""
    if not text or not text.strip():
        raise Junk("empty reply")
    body = _THINK.sub("", text).strip()
    fenced = _FENCE.search(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        data = json.loads(body)
    except ValueError:
        start, end = body.find("{"), body.rfind("}")
        try:
            data = json.loads(body[start : end + 1]) if 0 <= start < end else None
        except ValueError:
            data = None
        if data is None:
            raise Junk("not JSON") from None
    if not isinstance(data, dict):
        raise Junk("JSON is not an object")
    return data
