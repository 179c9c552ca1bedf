"""Short LLM-written themes for clusters and neurons, cached in ``labels.json``.

Any OpenAI-compatible chat-completions server works (OpenAI, or a local llama.cpp / vLLM via
``base_url``). Every received label is merged into the store at once, under the store's lock
(``index/labels.py``), so an interrupted, failing or concurrent run never loses a label. Failures are
classified (``client.py``) so the CLI can say in one line what went wrong; a server that cannot be
reached, that rejects the credentials, or that fails ``max_consecutive_failures`` items in a row
stops the run instead of being asked once per item. ``fallback_label`` gives a deterministic
offline label without any LLM.

The API key is only ever read from the ``api_key`` argument or ``OPENAI_API_KEY`` and sent to
``base_url``; it is never written to the store and is scrubbed from every message.

Modules: ``prompt.py`` (what is asked, how replies are parsed), ``client.py`` (one item's
conversation with the server), ``config.py`` (``LabelConfig``), ``requests.py`` (what an index asks);
the label store is ``index/labels.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from neurosearch.ids import store_key  # noqa: F401 (part of this module's API)
from neurosearch.index.labels import (  # noqa: F401 (part of this module's API)
    KINDS,
    Label,
    LabelError,
    fallback_label,
    load_labels,
    merge_label,
    save_labels,
)
from neurosearch.labeling.client import LOCAL_PLACEHOLDER_KEY, Session, open_session, request_label, scrub  # noqa: F401
from neurosearch.labeling.config import LabelConfig  # noqa: F401 (part of this module's API)
from neurosearch.labeling.prompt import LabelRequest, build_messages, parse_reply, prompt_hash  # noqa: F401


@dataclass
class LabelRun:
    """What one ``label_items`` call did."""

    labelled: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0
    """Items not attempted because the run was aborted."""
    failures: dict[str, list[str]] = field(default_factory=dict)
    """Failure kind -> store keys (``<kind>:<id>``) that failed that way."""
    messages: list[str] = field(default_factory=list)
    """One line per failure, plus the abort reason; never contains the API key."""
    aborted: str | None = None
    """Why the run stopped early (unreachable server, rejected key), else None."""
    labels: dict[str, Label] = field(default_factory=dict)
    """The whole store after the run."""

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.aborted is None


ProgressFn = Callable[[int, int, LabelRequest, str], None]
"""``on_progress(done, total, request, outcome)`` after every request; outcome is ``labelled``,
``cached``, ``skipped`` (run aborted) or a failure kind."""


def _plan(requests: list[LabelRequest], labels: dict[str, Label], config: LabelConfig, force: bool,
          shipped: dict[str, Label] | None = None) -> list[tuple[LabelRequest, list[dict[str, str]], str] | None]:
    """Per request: (request, messages, prompt hash) to send, or None when its label is current."""
    plan: list[tuple[LabelRequest, list[dict[str, str]], str] | None] = []
    seen: set[str] = set()
    for request in requests:
        messages = build_messages(request, config)
        digest = prompt_hash(messages, config.llm_model)
        existing = labels.get(request.key) or (shipped or {}).get(request.key)
        current = (
            existing is not None
            and existing.source == "llm"
            and existing.prompt_hash == digest
            and existing.model == config.llm_model
        )
        if request.key in seen or (current and not force):
            plan.append(None)
        else:
            plan.append((request, messages, digest))
        seen.add(request.key)
    return plan


def pending_requests(requests: Iterable[LabelRequest], store_path: str | os.PathLike[str],
                     config: LabelConfig = LabelConfig(), *, force: bool = False,
                     shipped: dict[str, Label] | None = None) -> list[tuple[LabelRequest, list[dict[str, str]]]]:
    """What :func:`label_items` would send (``label --dry-run``): each request without a current
    label, with its chat messages. Sends nothing and needs no key."""
    plan = _plan(list(requests), load_labels(Path(store_path)), config, force, shipped)
    return [(step[0], step[1]) for step in plan if step is not None]


def label_items(
    requests: Iterable[LabelRequest],
    store_path: str | os.PathLike[str],
    config: LabelConfig = LabelConfig(),
    *,
    force: bool = False,
    api_key: str | None = None,
    on_progress: ProgressFn | None = None,
    shipped: dict[str, Label] | None = None,
) -> LabelRun:
    """Label every request that has no current label (all of them with ``force``).

    A label is current when it came from the LLM with the same prompt hash and model. Each
    received label is merged into the store at once (another run's labels are kept). Per-item
    failures are recorded and the run goes on; an unreachable server, a rejected key (401/403, or
    404: wrong model/URL) or ``config.max_consecutive_failures`` failures in a row stop it, leaving
    the remaining items ``skipped``. Raises ``LabelError`` (before any request) when there is work
    but neither a key nor a ``base_url``, or when the store is corrupt, and ``StoreError`` when the
    store's folder cannot be written. ``shipped``: labels stored elsewhere (a read-only index's own
    ``labels.json``) that count as cached but are not copied.
    """
    store_path = Path(store_path)
    labels = load_labels(store_path)
    run = LabelRun(labels=labels)
    requests = list(requests)
    total = len(requests)
    plan = _plan(requests, labels, config, force, shipped)

    session: Session | None = None
    if any(step is not None for step in plan):
        from neurosearch.format.store import check_writable

        session = open_session(config, api_key)
        try:
            check_writable(store_path.parent, "labels")  # now, not after the first paid request
        except BaseException:
            session.client.close()
            raise
    consecutive = 0
    try:
        for done, (request, step) in enumerate(zip(requests, plan), start=1):
            if step is None:
                run.cached += 1
                outcome = "cached"
            elif run.aborted is not None:
                run.skipped += 1
                outcome = "skipped"
            else:
                assert session is not None
                result = request_label(session, step[1], step[2])
                if isinstance(result, Label):
                    labels = merge_label(store_path, request.key, result)
                    run.labelled += 1
                    consecutive = 0
                    outcome = "labelled"
                else:
                    run.failed += 1
                    consecutive += 1
                    run.failures.setdefault(result.kind, []).append(request.key)
                    run.messages.append(scrub(f"{request.key}: {result.kind}: {result.detail}", session.api_key))
                    outcome = result.kind
                    limit = config.max_consecutive_failures
                    if result.abort or (limit and consecutive >= limit):
                        remaining = sum(1 for s in plan[done:] if s is not None)
                        why = (f"run aborted after {result.kind} ({result.detail})" if result.abort else
                               f"run stopped after {consecutive} failures in a row (last: {result.kind}, "
                               f"{result.detail})")
                        run.aborted = scrub(f"{why}; {remaining} item(s) not attempted, "
                                            f"{len(labels)} stored label(s) kept", session.api_key)
                        run.messages.append(run.aborted)
            if on_progress is not None:
                on_progress(done, total, request, outcome)
    finally:
        if session is not None:
            session.client.close()
        run.labels = labels
    return run
