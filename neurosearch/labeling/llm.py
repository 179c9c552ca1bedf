"""Short LLM-written themes for clusters and neurons, cached in ``labels.json``.

Any OpenAI-compatible chat-completions server works (OpenAI, or a local llama.cpp / vLLM via
``base_url``). The store is rewritten atomically after every received label, so an interrupted or
failing run never loses a label it already has. Failures are classified (``connection``,
``timeout``, ``http <status>``, ``rate-limit``, ``junk``) so the CLI can say in one line what went
wrong; a server that cannot be reached, or that rejects the credentials, aborts the run instead of
being asked once per item. ``fallback_label`` gives a deterministic offline label without any LLM.

The API key is only ever read from the ``api_key`` argument or ``OPENAI_API_KEY``; it is never
written to the store and is scrubbed from every message.
"""

from __future__ import annotations

from neurosearch.errors import NeurosearchError
from neurosearch.ids import store_key  # noqa: F401 (part of this module's API)
from neurosearch.index.labels import Label, fallback_label  # noqa: F401 (part of this module's API)
from neurosearch.format.atomic import write_bytes_atomic

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

STORE_VERSION = 1
KINDS = ("cluster", "neuron")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_PLACEHOLDER_KEY = "not-needed"
"""Sent to a ``base_url`` server when no key is set: local servers ignore it, clients need one."""
MAX_RETRY_AFTER = 60.0
"""Upper bound on a server's ``Retry-After`` that we honour, so one 429 cannot stall a run."""
ABORT_STATUSES = (401, 403, 404)
"""Statuses that will be the same for every item (bad key, no access, wrong model or URL)."""


class LabelError(NeurosearchError):
    """A labelling problem the user must fix (no key, unreadable store)."""


@dataclass(frozen=True)
class LabelConfig:
    """How labels are requested."""

    llm_model: str = "gpt-4o-mini"
    """Chat model name as the server knows it."""
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:8080/v1`` for llama.cpp; None: OpenAI.
    Passed explicitly, so ``OPENAI_BASE_URL`` in the environment is not consulted."""
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

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        for name in ("max_retries", "junk_retries", "contexts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.backoff_seconds < 0:
            raise ValueError("backoff_seconds must be >= 0")
        if self.top_tokens < 1:
            raise ValueError("top_tokens must be >= 1")


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


# --------------------------------------------------------------------------------------- store


def load_labels(path: str | os.PathLike[str]) -> dict[str, Label]:
    """Read a label store; a missing file is an empty store, a damaged one an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise LabelError(f"cannot read label store {path}: {exc}") from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or "labels" not in data:
            raise ValueError("expected an object with 'version' and 'labels'")
        if data.get("version") != STORE_VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}")
        if not isinstance(data["labels"], dict):
            raise ValueError("'labels' is not an object")
        return {str(key): _label_from_dict(value) for key, value in data["labels"].items()}
    except (ValueError, TypeError) as exc:
        raise LabelError(
            f"label store {path} is corrupt ({exc}); delete it to relabel from scratch"
        ) from exc


def save_labels(path: str | os.PathLike[str], labels: dict[str, Label]) -> None:
    """Write the store atomically: a crash leaves either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": STORE_VERSION,
        "labels": {key: asdict(labels[key]) for key in sorted(labels)},
    }
    text = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def _label_from_dict(value: Any) -> Label:
    if not isinstance(value, dict):
        raise ValueError("a label is not an object")
    names = ("theme", "explanation", "model", "prompt_hash", "source")
    missing = [name for name in names if not isinstance(value.get(name), str)]
    if missing:
        raise ValueError(f"a label lacks string field(s) {', '.join(missing)}")
    return Label(**{name: value[name] for name in names})


# -------------------------------------------------------------------------------------- prompt

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
    contexts = [_one_line(c, 200) for c in request.contexts[: config.contexts] if c.strip()]
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


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


class _Junk(ValueError):
    """A reply that is not the JSON we asked for."""


def parse_reply(text: str | None) -> tuple[str, str]:
    """``(theme, explanation)`` from a model reply, tolerating code fences and stray prose."""
    if not text or not text.strip():
        raise _Junk("empty reply")
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
            raise _Junk("not JSON") from None
    if not isinstance(data, dict):
        raise _Junk("JSON is not an object")
    theme, explanation = data.get("theme"), data.get("explanation")
    if not isinstance(theme, str) or not isinstance(explanation, str):
        raise _Junk("'theme' and 'explanation' must be strings")
    theme = " ".join(theme.split()).strip(" .\"'")
    explanation = " ".join(explanation.split())
    if not 1 <= len(theme.split()) <= 6:
        raise _Junk(f"theme has {len(theme.split())} words, expected 1-6")
    if not explanation:
        raise _Junk("empty explanation")
    return theme, explanation


# ------------------------------------------------------------------------------------ fallback


# ----------------------------------------------------------------------------------- labelling


@dataclass
class _Failure:
    kind: str
    detail: str
    abort: bool = False


@dataclass
class _Session:
    """Per-run state shared by requests: the client, and what we learnt about the server."""

    client: Any
    config: LabelConfig
    api_key: str
    base_url: str
    use_response_format: bool = True
    connected: bool = False


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

    A label is current when it came from the LLM with the same prompt hash and model. The store
    is saved after each received label. Per-item failures are recorded and the run goes on; an
    unreachable server or a rejected key (401/403, or 404: wrong model/URL) aborts it, leaving the
    remaining items ``skipped``. Raises ``LabelError`` (before any request) when there is work but
    neither a key nor a ``base_url``, or when the store is corrupt. ``shipped``: labels stored
    elsewhere (a read-only index's own ``labels.json``) that count as cached but are not copied.
    """
    store_path = Path(store_path)
    labels = load_labels(store_path)
    run = LabelRun(labels=labels)
    requests = list(requests)
    total = len(requests)

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

    session: _Session | None = None
    if any(step is not None for step in plan):
        session = _open_session(config, api_key)
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
                result = _request_label(session, step[1], step[2])
                if isinstance(result, Label):
                    labels[request.key] = result
                    save_labels(store_path, labels)
                    run.labelled += 1
                    outcome = "labelled"
                else:
                    run.failed += 1
                    run.failures.setdefault(result.kind, []).append(request.key)
                    run.messages.append(
                        _scrub(f"{request.key}: {result.kind}: {result.detail}", session.api_key)
                    )
                    outcome = result.kind
                    if result.abort:
                        remaining = sum(1 for s in plan[done:] if s is not None)
                        run.aborted = _scrub(
                            f"run aborted after {result.kind} ({result.detail}); "
                            f"{remaining} item(s) not attempted, "
                            f"{len(labels)} stored label(s) kept",
                            session.api_key,
                        )
                        run.messages.append(run.aborted)
            if on_progress is not None:
                on_progress(done, total, request, outcome)
    finally:
        if session is not None:
            session.client.close()
    return run


def _open_session(config: LabelConfig, api_key: str | None) -> _Session:
    import openai  # imported lazily: most commands never label

    key = api_key or os.environ.get("OPENAI_API_KEY") or ""
    if not key:
        if config.base_url is None:
            raise LabelError(
                "OPENAI_API_KEY is not set; export it or pass --base-url for a local "
                "OpenAI-compatible server"
            )
        key = LOCAL_PLACEHOLDER_KEY
    base_url = config.base_url or DEFAULT_BASE_URL
    client = openai.OpenAI(
        api_key=key, base_url=base_url, timeout=config.timeout, max_retries=0
    )
    return _Session(client=client, config=config, api_key=key, base_url=base_url)


def _request_label(
    session: _Session, messages: list[dict[str, str]], digest: str
) -> Label | _Failure:
    """One item: bounded retries for transient errors, re-asks for junk, classified failure."""
    import openai

    config = session.config
    conversation = list(messages)
    retries = 0
    junk = 0
    dropping_response_format = False
    while True:
        kwargs: dict[str, Any] = {"model": config.llm_model, "messages": conversation}
        if session.use_response_format and not dropping_response_format:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            response = session.client.chat.completions.create(**kwargs)
        except openai.APIStatusError as exc:
            session.connected = True
            status = exc.status_code
            if status == 400 and "response_format" in kwargs:
                dropping_response_format = True  # some servers reject it: ask once without
                continue
            detail = _status_detail(exc)
            if status == 429 or status >= 500:
                kind = "rate-limit" if status == 429 else f"http {status}"
                if retries < config.max_retries:
                    _sleep_before_retry(config, retries, exc)
                    retries += 1
                    continue
                return _Failure(kind, f"{detail} after {retries + 1} attempt(s)")
            return _Failure(f"http {status}", detail, abort=status in ABORT_STATUSES)
        except openai.APITimeoutError:
            if retries < config.max_retries:
                _sleep_before_retry(config, retries, None)
                retries += 1
                continue
            return _Failure(
                "timeout", f"no reply within {config.timeout:g} s, {retries + 1} attempt(s)"
            )
        except openai.APIConnectionError as exc:
            if not session.connected:  # never reached: asking again, or for the rest, is futile
                detail = f"cannot reach {session.base_url} ({exc})"
                return _Failure("connection", detail, abort=True)
            if retries < config.max_retries:
                _sleep_before_retry(config, retries, None)
                retries += 1
                continue
            return _Failure(
                "connection",
                f"lost {session.base_url} ({exc}), {retries + 1} attempt(s)",
                abort=True,
            )
        except (openai.APIResponseValidationError, ValueError) as exc:  # 200 with a non-JSON body
            session.connected = True
            content, reason = None, f"unreadable response ({_one_line(str(exc), 80)})"
        else:
            session.connected = True
            if dropping_response_format:
                session.use_response_format = False
            content, reason = _content(response), ""
        try:
            theme, explanation = parse_reply(content)
        except _Junk as exc:
            reason = reason or str(exc)
            if junk < config.junk_retries:
                junk += 1
                conversation = list(messages)
                if content:
                    conversation.append({"role": "assistant", "content": content[:2000]})
                conversation.append({
                    "role": "user",
                    "content": f"That reply was not usable ({reason}). Reply with only the JSON "
                    'object {"theme": "<2-5 words>", "explanation": "<one sentence>"}.',
                })
                continue
            snippet = f": {_one_line(content, 60)!r}" if content else ""
            return _Failure("junk", f"{reason} after {junk + 1} attempt(s){snippet}")
        return Label(
            theme=theme,
            explanation=explanation,
            model=config.llm_model,
            prompt_hash=digest,
            source="llm",
        )


def _content(response: Any) -> str | None:
    """The first choice's text, or None for a malformed completion."""
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _status_detail(exc: Any) -> str:
    message = getattr(exc, "message", "") or ""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            message = inner["message"]
    return f"HTTP {exc.status_code}: {_one_line(str(message), 160)}"


def _sleep_before_retry(config: LabelConfig, retry: int, exc: Any) -> None:
    delay = config.backoff_seconds * (2**retry)
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            delay = max(delay, min(float(response.headers.get("retry-after", "")), MAX_RETRY_AFTER))
        except (TypeError, ValueError):
            pass
    if delay > 0:
        time.sleep(delay)


def _scrub(text: str, secret: str) -> str:
    """Remove the API key from text meant for a terminal or log."""
    if secret and secret != LOCAL_PLACEHOLDER_KEY:
        text = text.replace(secret, "***")
    return text
