"""One conversation with an OpenAI-compatible chat-completions server per item, with classified failures.

Failures are classified (``connection``, ``timeout``, ``http <status>``, ``rate-limit``,
``junk``) so the caller can say in one line what went wrong; transient ones are retried with
backoff, replies that are not the JSON asked for are re-asked, and a server that cannot be reached
or rejects the credentials marks the failure ``abort``. The API key is scrubbed from every message.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from neurosearch.index.labels import Label, LabelError
from neurosearch.labeling.config import LabelConfig
from neurosearch.labeling.prompt import LABEL_REASK, Junk, one_line, parse_reply

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_PLACEHOLDER_KEY = "not-needed"
"""Sent to a ``base_url`` server when no key is set: local servers ignore it, clients need one."""
MAX_RETRY_AFTER = 60.0
"""Upper bound on a server's ``Retry-After`` that we honour, so one 429 cannot stall a run."""
ABORT_STATUSES = (401, 403, 404)
"""Statuses that will be the same for every item (bad key, no access, wrong model or URL)."""


@dataclass
class Failure:
    kind: str
    detail: str
    abort: bool = False


@dataclass
class Session:
    """Per-run state shared by requests: the client, and what we learnt about the server."""

    client: Any
    config: LabelConfig
    api_key: str
    base_url: str
    use_response_format: bool = True
    connected: bool = False


def check_credentials(config: LabelConfig, api_key: str | None = None) -> str:
    """The key requests will use; raises ``LabelError`` when there is no key for OpenAI (no
    ``base_url``, or OpenAI's own) (the CLI checks it before it prepares any request)."""
    key = api_key or os.environ.get("OPENAI_API_KEY") or ""
    if not key:
        if config.base_url is None or needs_key(config.base_url):
            raise LabelError(
                "OPENAI_API_KEY is not set; export it, or give base_url for a local OpenAI-compatible server",
                option="base_url",
            )
        key = LOCAL_PLACEHOLDER_KEY
    return key


def needs_key(base_url: str) -> bool:
    """Whether the server at ``base_url`` is OpenAI's, which answers nothing without a key (a
    local server gets a placeholder)."""
    from urllib.parse import urlparse

    return (urlparse(base_url).hostname or "").lower() in ("api.openai.com",)


def open_session(config: LabelConfig, api_key: str | None) -> Session:
    import openai  # imported lazily: most commands never label

    key = check_credentials(config, api_key)
    base_url = config.base_url or DEFAULT_BASE_URL
    client = openai.OpenAI(
        api_key=key, base_url=base_url, timeout=config.timeout, max_retries=0
    )
    return Session(client=client, config=config, api_key=key, base_url=base_url)


def request_label(
    session: Session, messages: list[dict[str, str]], digest: str
) -> Label | Failure:
    """One item: bounded retries for transient errors, re-asks for junk, classified failure."""
    reply = request_reply(session, messages, parse_reply, LABEL_REASK)
    if isinstance(reply, Failure):
        return reply
    theme, explanation = reply
    return Label(
        theme=theme,
        explanation=explanation,
        model=session.config.llm_model,
        prompt_hash=digest,
        source="llm",
    )


def request_reply(
    session: Session, messages: list[dict[str, str]], parse: Callable[[str | None], T], reask: str
) -> T | Failure:
    """One conversation: the reply as ``parse`` reads it (it raises ``Junk`` for an unusable one),
    with bounded retries for transient errors, ``config.junk_retries`` re-asks (``reask``: what
    to reply with), and a classified failure."""
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
                return Failure(kind, f"{detail} after {retries + 1} attempt(s)")
            return Failure(f"http {status}", detail, abort=status in ABORT_STATUSES)
        except openai.APITimeoutError:
            if retries < config.max_retries:
                _sleep_before_retry(config, retries, None)
                retries += 1
                continue
            return Failure(
                "timeout", f"no reply within {config.timeout:g} s, {retries + 1} attempt(s)"
            )
        except openai.APIConnectionError as exc:
            if not session.connected:  # never reached: asking again, or for the rest, is futile
                detail = f"cannot reach {session.base_url} ({exc})"
                return Failure("connection", detail, abort=True)
            if retries < config.max_retries:
                _sleep_before_retry(config, retries, None)
                retries += 1
                continue
            return Failure(
                "connection",
                f"lost {session.base_url} ({exc}), {retries + 1} attempt(s)",
                abort=True,
            )
        except (openai.APIResponseValidationError, ValueError) as exc:  # 200 with a non-JSON body
            session.connected = True
            content, reason = None, f"unreadable response ({one_line(str(exc), 80)})"
        else:
            session.connected = True
            if dropping_response_format:
                session.use_response_format = False
            content, reason = _content(response), ""
        try:
            parsed = parse(content)
        except Junk as exc:
            reason = reason or str(exc)
            if junk < config.junk_retries:
                junk += 1
                conversation = list(messages)
                if content:
                    conversation.append({"role": "assistant", "content": content[:2000]})
                conversation.append({"role": "user", "content": f"That reply was not usable ({reason}). {reask}"})
                continue
            snippet = f": {one_line(content, 60)!r}" if content else ""
            return Failure("junk", f"{reason} after {junk + 1} attempt(s){snippet}")
        return parsed


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
    return f"HTTP {exc.status_code}: {one_line(str(message), 160)}"


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


def scrub(text: str, secret: str) -> str:
    """Remove the API key from text meant for a terminal or log."""
    if secret and secret != LOCAL_PLACEHOLDER_KEY:
        text = text.replace(secret, "***")
    return text
