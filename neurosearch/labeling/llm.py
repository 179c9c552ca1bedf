"""Short LLM-written themes for clusters and neurons, cached in ``labels.json``.

Two writers: a language model on this machine completing a prompt (``completion.py``; the default
is Gemma 3 270M from the ``lm`` extra), or any OpenAI-compatible chat-completions server (OpenAI,
or a local llama.cpp / vLLM via ``base_url``). Every received label is merged into the store at once, under the store's lock
(``index/labels.py``), so an interrupted, failing or concurrent run never loses a label. Failures are
classified (``client.py``) so the CLI can say in one line what went wrong; a server that cannot be
reached, that rejects the credentials, or that fails ``max_consecutive_failures`` items in a row
stops the run instead of being asked once per item. ``fallback_label`` gives a deterministic
offline label without any LLM.

The API key is only ever read from the ``api_key`` argument or ``OPENAI_API_KEY`` and sent to
``base_url``; it is never written to the store and is scrubbed from every message.

Modules: ``prompt.py`` (what is asked, how replies are parsed), ``client.py`` (one item's
conversation with the server), ``completion.py`` (a language model's prompt and theme), ``config.py`` (``LabelConfig``), ``requests.py`` (what an index asks);
the label store is ``index/labels.py``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

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
from neurosearch.labeling.client import LOCAL_PLACEHOLDER_KEY, Failure, Session, open_session, request_label, scrub  # noqa: F401
from neurosearch.labeling.config import LabelConfig  # noqa: F401 (part of this module's API)
from neurosearch.labeling.prompt import LabelRequest, build_messages, parse_reply, prompt_hash  # noqa: F401

if TYPE_CHECKING:
    from neurosearch.labeling.completion import LMLike
    from neurosearch.progress import Reporter


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
    model: str = ""
    """What wrote the labels: the server's model name, or a language model's identity key."""
    seconds: float = 0.0
    """Seconds spent asking for labels (requests or generation; loading a model not counted)."""
    load_seconds: float | None = None
    """Seconds a language model took to load (None: none was loaded)."""

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.aborted is None

    @property
    def seconds_per_label(self) -> float | None:
        """Mean seconds per label asked for (written or failed); None when none was asked for."""
        asked = self.labelled + self.failed
        return self.seconds / asked if asked else None


ProgressFn = Callable[[int, int, LabelRequest, str], None]
"""``on_progress(done, total, request, outcome)`` after every request; outcome is ``labelled``,
``cached``, ``skipped`` (run aborted) or a failure kind."""


class ServerWriter:
    """Labels from an OpenAI-compatible chat server (``client.py``): one conversation per item."""

    def __init__(self, config: LabelConfig, api_key: str | None = None) -> None:
        self.config = config
        self.api_key = api_key
        self.session: Session | None = None
        self.load_seconds: float | None = None

    @property
    def model(self) -> str:
        return self.config.llm_model

    def prepare(self, request: LabelRequest) -> tuple[list[dict[str, str]], str]:
        messages = build_messages(request, self.config)
        return messages, prompt_hash(messages, self.config.llm_model)

    def check(self) -> None:
        from neurosearch.labeling.client import check_credentials

        check_credentials(self.config, self.api_key)

    def start(self) -> None:
        self.session = open_session(self.config, self.api_key)

    def write(self, request: LabelRequest, messages: list[dict[str, str]], digest: str) -> Label | Failure:
        assert self.session is not None
        return request_label(self.session, messages, digest)

    def scrub(self, text: str) -> str:
        return scrub(text, self.session.api_key) if self.session is not None else text

    def stops_on(self, failure: Failure) -> bool:
        """Whether ``failure`` counts towards ``max_consecutive_failures``: every one of a server's."""
        return True

    def close(self) -> None:
        if self.session is not None:
            self.session.client.close()


def _writer(config: LabelConfig, api_key: str | None, lm: LMLike | None, reporter: Reporter | None) -> Any:
    if lm is None:
        return ServerWriter(config, api_key)
    from neurosearch.labeling.completion import CompletionWriter

    return CompletionWriter(lm, config, reporter)


def _plan(requests: list[LabelRequest], labels: dict[str, Label], writer: Any, force: bool,
          shipped: dict[str, Label] | None = None) -> list[tuple[LabelRequest, Any, str] | None]:
    """Per request: (request, what to send, prompt hash) to send, or None when its label is current."""
    plan: list[tuple[LabelRequest, Any, str] | None] = []
    seen: set[str] = set()
    for request in requests:
        payload, digest = writer.prepare(request)
        existing = labels.get(request.key) or (shipped or {}).get(request.key)
        current = (
            existing is not None
            and existing.source == "llm"
            and existing.prompt_hash == digest
            and existing.model == writer.model
        )
        if request.key in seen or (current and not force):
            plan.append(None)
        else:
            plan.append((request, payload, digest))
        seen.add(request.key)
    return plan


def pending_requests(requests: Iterable[LabelRequest], store_path: str | os.PathLike[str],
                     config: LabelConfig = LabelConfig(), *, force: bool = False,
                     shipped: dict[str, Label] | None = None, lm: LMLike | None = None) -> list[tuple[LabelRequest, Any]]:
    """What :func:`label_items` would send (``label --dry-run``): each request without a current
    label, with its chat messages (a server) or its prompt (``lm``: a language model, which is not
    loaded). Sends nothing and needs no key."""
    plan = _plan(list(requests), load_labels(Path(store_path)), _writer(config, None, lm, None), force, shipped)
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
    lm: LMLike | None = None,
    reporter: Reporter | None = None,
) -> LabelRun:
    """Label every request that has no current label (all of them with ``force``).

    Labels come from the OpenAI-compatible server of ``config`` (``base_url``; None: OpenAI), or,
    given ``lm``, from that language model completing a prompt (``completion.py``): a loaded
    :class:`~neurosearch.lm.base.LanguageModel`, or what names one (``"local"``: the default Gemma
    3 270M of the ``lm`` extra; a path; an ``LMSpec``), loaded only when some label is missing,
    with ``reporter`` showing its loading.

    A label is current when it came from the same model with the same prompt hash. Each received
    label is merged into the store at once (another run's labels are kept). Per-item failures are
    recorded and the run goes on; an unreachable server, a rejected key (401/403, or 404: wrong
    model/URL) or ``config.max_consecutive_failures`` failures in a row (a language model's junk
    themes not counted: a small model writes some) stop it, leaving the
    remaining items ``skipped``. Raises ``LabelError`` (before any request) when a server is to be
    asked but there is neither a key nor a ``base_url``, or when the store is corrupt; ``LMError``
    when the language model cannot be loaded; and ``StoreError`` when the store's folder cannot be
    written. ``shipped``: labels stored elsewhere (a read-only index's own ``labels.json``) that
    count as cached but are not copied.
    """
    store_path = Path(store_path)
    labels = load_labels(store_path)
    writer = _writer(config, api_key, lm, reporter)
    run = LabelRun(labels=labels, model=writer.model)
    requests = list(requests)
    total = len(requests)
    plan = _plan(requests, labels, writer, force, shipped)

    started = False
    if any(step is not None for step in plan):
        from neurosearch.format.store import check_writable

        writer.check()  # before the store, and the store before a slow load or a paid request
        check_writable(store_path.parent, "labels")
        started = True
        try:
            writer.start()
        except BaseException:
            writer.close()
            raise
        run.load_seconds = writer.load_seconds
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
                clock = time.perf_counter()
                result = writer.write(request, step[1], step[2])
                run.seconds += time.perf_counter() - clock
                if isinstance(result, Label):
                    labels = merge_label(store_path, request.key, result)
                    run.labelled += 1
                    consecutive = 0
                    outcome = "labelled"
                else:
                    run.failed += 1
                    consecutive += 1 if writer.stops_on(result) else 0
                    run.failures.setdefault(result.kind, []).append(request.key)
                    run.messages.append(writer.scrub(f"{request.key}: {result.kind}: {result.detail}"))
                    outcome = result.kind
                    limit = config.max_consecutive_failures
                    if result.abort or (limit and consecutive >= limit):
                        remaining = sum(1 for s in plan[done:] if s is not None)
                        why = (f"run aborted after {result.kind} ({result.detail})" if result.abort else
                               f"run stopped after {consecutive} failures in a row (last: {result.kind}, "
                               f"{result.detail})")
                        run.aborted = writer.scrub(f"{why}; {remaining} item(s) not attempted, "
                                                   f"{len(labels)} stored label(s) kept")
                        run.messages.append(run.aborted)
            if on_progress is not None:
                on_progress(done, total, request, outcome)
    finally:
        if started:
            writer.close()
        run.labels = labels
    return run
