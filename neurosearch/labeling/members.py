"""A concept's members as an LLM lists them, to search for instead of the offline expansion.

The offline expansion (``index/semantic.py``) knows what the model's sentence space and WordNet
know; for a category whose members neither lists ("tech companies": google, microsoft, intel) it
finds the category's topic (industry, services) instead, and ``benchmarks/expansion_limits.py``
measures that no model fitted on those features does much better. An LLM knows the members. This
asks the labelling server (``LabelConfig``: any OpenAI-compatible endpoint) for them once, and
``find`` searches for the ones the index keeps, each at weight 1 as ``--tokens`` does, and says
which model listed them. With a ``cache_dir`` (the CLI gives ``<state root>/cache``) a list is
kept by its prompt, model and server, so the same query gives the same members (and costs no
request) until ``refresh`` asks again, as labels are kept; the list is also in ``find --json``'s
expansion, and ``--tokens`` repeats the search without the server.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurosearch.labeling.client import DEFAULT_BASE_URL, Failure, open_session, request_reply, scrub
from neurosearch.labeling.prompt import Junk, one_line, prompt_hash, reply_object
from neurosearch.index.labels import LabelError
from neurosearch.text import for_terminal

if TYPE_CHECKING:
    from neurosearch.index.index import Index
    from neurosearch.index.results import FindResult
    from neurosearch.labeling.config import LabelConfig

MAX_MEMBERS = 40
"""Members asked for (and at most kept from a reply)."""
MAX_CONCEPT = 200
"""Longest concept text sent."""
_WORD = re.compile(r"[a-z0-9][a-z0-9'&.-]{0,39}")
MEMBERS_REASK = 'Reply with only the JSON object {"members": ["<word>", "<word>", ...]}.'
SYSTEM_PROMPT = "You list the members of a category as single words. Reply with a single JSON object and nothing else."


MEMBERS_CACHE = "llm-members.json"
"""The kept member lists in a cache folder: prompt hash + server -> the list."""
CACHED_LISTS = 5000


@dataclass(frozen=True)
class MemberList:
    """What the LLM listed for a concept: single lowercase words, and what was left out."""

    concept: str
    model: str
    members: list[str]
    not_words: list[str] = field(default_factory=list)
    """Entries that are not one word (phrases, other scripts): left out, shown sanitised."""
    kept: bool = False
    """Read from the cache (an earlier run's answer), not asked now."""


def member_messages(concept: str, count: int = MAX_MEMBERS) -> list[dict[str, str]]:
    """Chat messages asking for ``{"members": [...]}``."""
    text = one_line(concept, MAX_CONCEPT)
    user = "\n".join([
        f'List up to {count} members or instances of the category "{text}", most typical first.',
        "Give single lowercase words as they appear in running English text (for \"weekdays\": "
        "monday, tuesday, ...; for \"metals\": iron, copper, ...), not the category's own name.",
        "Reply with only this JSON object:",
        '{"members": ["<word>", "<word>", ...]}',
    ])
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_members(text: str | None, count: int = MAX_MEMBERS) -> tuple[list[str], list[str]]:
    """(single words, other entries) of a reply; raises ``Junk`` when it holds no word at all."""
    data = reply_object(text)
    listed = data.get("members")
    if not isinstance(listed, list):
        raise Junk("'members' must be a list")
    words: list[str] = []
    others: list[str] = []
    for entry in listed:
        if not isinstance(entry, str):
            continue
        word = " ".join(entry.split()).strip(" .,;:\"").lower()
        if _WORD.fullmatch(word):
            if word not in words:
                words.append(word)
        elif word:
            others.append(for_terminal(word, 40))
    if not words:
        raise Junk("no single-word members")
    return words[:count], others[:count]


def llm_members(concept: str, config: "LabelConfig", api_key: str | None = None, count: int = MAX_MEMBERS,
                cache_dir: str | os.PathLike[str] | None = None, refresh: bool = False) -> MemberList:
    """Ask ``config``'s server for the concept's members; ``LabelError`` (one line) when it fails.
    With ``cache_dir``, a list kept from an earlier run for the same prompt, model and server is
    returned instead (``refresh``: ask again and keep the new one)."""
    if not concept.strip():
        raise LabelError("give a concept to list members of")
    messages = member_messages(concept, count)
    cache = Path(cache_dir) / MEMBERS_CACHE if cache_dir is not None else None
    entry = f"{prompt_hash(messages, config.llm_model)}@{config.base_url or DEFAULT_BASE_URL}"
    if cache is not None and not refresh:
        kept = _kept_list(cache, entry, count)
        if kept is not None:
            return MemberList(concept=concept, model=config.llm_model, members=kept[0], not_words=kept[1], kept=True)
    session = open_session(config, api_key)
    reply: Any = request_reply(session, messages, lambda text: parse_members(text, count), MEMBERS_REASK)
    if isinstance(reply, Failure):
        raise LabelError(scrub(f"{config.llm_model} at {session.base_url} gave no member list ({reply.kind}: "
                               f"{reply.detail})", session.api_key))
    words, others = reply
    if cache is not None:
        from neurosearch.format.store import put_in_cache

        put_in_cache(cache, entry, {"members": words, "not_words": others}, CACHED_LISTS)
    return MemberList(concept=concept, model=config.llm_model, members=words, not_words=others)


def _kept_list(cache: Path, entry: str, count: int) -> tuple[list[str], list[str]] | None:
    from neurosearch.format.store import read_cache

    try:
        found = read_cache(cache).get(entry)
        words, others = found["members"], found["not_words"]
    except (KeyError, TypeError):
        return None
    if not (isinstance(words, list) and isinstance(others, list) and words
            and all(isinstance(w, str) and _WORD.fullmatch(w) for w in words)
            and all(isinstance(o, str) for o in others)):
        return None  # not what this code writes: ask again
    return words[:count], [for_terminal(o, 40) for o in others[:count]]


def search_words(listed: MemberList) -> tuple[list[str], list[str]]:
    """(the listed words to search for, what is left out): function words ("the", "of") are never
    searched, nor entries that are not one word."""
    from neurosearch.index.query import expandable

    return ([word for word in listed.members if expandable(word)],
            listed.not_words + [word for word in listed.members if not expandable(word)])


def find_members(index: Index, concept: str, config: "LabelConfig", api_key: str | None = None, *,
                 cache_dir: str | os.PathLike[str] | None = None, refresh: bool = False,
                 **find_options: Any) -> "FindResult":
    """``index.find`` for the members the LLM lists for ``concept`` (``Index.find``'s options; the
    cache as for :func:`llm_members`), with a note naming the model and what was left out."""
    listed = llm_members(concept, config, api_key, cache_dir=cache_dir, refresh=refresh)
    words, left_out = search_words(listed)
    if not any(index.vocabulary.is_kept(word) for word in words):
        raise LabelError(f"none of the {len(listed.members)} members {config.llm_model} listed for "
                         f"'{for_terminal(one_line(concept, 60))}' is in this index's kept vocabulary: "
                         f"{', '.join(listed.members[:10])}")
    result = index.find(tokens=words, **find_options)
    note = (f"searched for the members {config.llm_model} listed for '{for_terminal(one_line(concept, 60))}' "
            + ("on an earlier run (--llm-refresh asks again)" if listed.kept else "(--llm)"))
    if left_out:
        note += f"; not single content words, left out: {', '.join(left_out[:10])}"
    return replace(result, query=replace(result.query, text=concept), notes=[note, *result.notes])
