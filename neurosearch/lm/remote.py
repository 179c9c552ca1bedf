"""The remote backend: any OpenAI-compatible server, through the labelling client (``labeling/client.py``).

How scores are obtained (``LMSpec.scoring``; ``auto`` tries them in this order and remembers what
the server can do):

1. ``echo`` -- the completions endpoint with ``echo=True, logprobs=1`` on ``prompt + candidate``
   (all candidates of a call in one request, 32 at a time): the server returns the log-probability
   of every token of the text, so both rules of ``base.py`` hold exactly. A candidate's tokens are
   those whose text overlaps it (a token that straddles the prompt's end counts). vLLM and other
   servers of base models do this; OpenAI's chat models do not.
2. ``top_logprobs`` -- chat completions with ``logprobs=True, top_logprobs=20, max_tokens=1``,
   the prompt as the user's message: a candidate scores the log-probability of the reply's first
   token that begins it (whitespace ignored at the start, the longest such token); one that no top
   token begins scores the lowest of the 20 (an upper bound of its own). Estimates
   (``exact=False``): the reply follows the server's chat template, not the prompt itself.
   ``continuation_logprobs`` (which needs every token) uses ``json`` instead.
3. ``json`` -- a structured prompt: the model is asked for the probability (0 to 1) that the text
   continues with each candidate, as a JSON object (the labelling client's re-asks apply); the
   score is its natural log (floored at 1e-6). Estimates.

``generate`` uses the completions endpoint when the server has one, else chat (the prompt as the
user's message); ``temperature=0``, and the ``stop`` strings are applied here too. Faults --
unreachable server, timeouts and 5xx after the retries, 4xx, bodies that are not the expected
JSON -- raise ``LMError`` with one line naming the server; the API key is never in it.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

from neurosearch.labeling.client import (
    Failure,
    _sleep_before_retry,
    _status_detail,
    open_session,
    request_reply,
    scrub,
)
from neurosearch.labeling.prompt import Junk, one_line, reply_object
from neurosearch.lm.base import Identified, LMError, ModelIdentity, Scored, check_generate_args, cut_at_stop

if TYPE_CHECKING:
    from neurosearch.lm.config import LMSpec

ECHO_BATCH = 32
"""Texts per completions request when scoring by echo."""
TOP_LOGPROBS = 20
"""The most the OpenAI chat API returns per position."""
JSON_BATCH = 40
"""Candidates per structured-prompt request."""
MIN_STATED = 1e-6
"""Floor of a stated probability before its log is taken."""
UNSUPPORTED = (400, 404, 405, 422, 501)
"""Statuses that, while ``auto`` probes a way of scoring, mean "not this way": the next is tried."""
SYSTEM_PROMPT = "You estimate how likely continuations of a text are. Reply with a single JSON object and nothing else."
JSON_REASK = 'Reply with only the JSON object {"probabilities": {"<candidate>": <number from 0 to 1>, ...}}.'


class _Unsupported(Exception):
    """The server does not offer what was asked (a status in UNSUPPORTED, or a reply without it)."""


class RemoteLM(Identified):
    """A model on an OpenAI-compatible server behind the :class:`LanguageModel` interface."""

    def __init__(self, spec: LMSpec, api_key: str | None = None) -> None:
        from neurosearch.labeling.config import LabelConfig
        from neurosearch.index.labels import LabelError

        assert spec.base_url is not None and spec.model is not None
        config = LabelConfig(llm_model=spec.model, base_url=spec.base_url, timeout=spec.timeout,
                             max_retries=spec.max_retries, backoff_seconds=0.5)
        try:
            self.session = open_session(config, api_key)
        except LabelError as exc:
            raise LMError(str(exc), option=exc.option) from None
        self.scoring = spec.scoring
        self._identity = ModelIdentity("remote", spec.model, None, spec.base_url.rstrip("/"))
        self._echo: bool | None = None if spec.scoring == "auto" else spec.scoring == "echo"
        self._top: bool | None = None if spec.scoring == "auto" else spec.scoring == "top_logprobs"
        self._completions: bool | None = None

    def close(self) -> None:
        self.session.client.close()

    # requests
    def _error(self, kind: str, detail: str) -> LMError:
        return LMError(scrub(f"language model server {self.session.base_url}: {kind}: {detail}", self.session.api_key))

    def _call(self, create: Callable[..., Any], probing: bool, **kwargs: Any) -> Any:
        """One request with the labelling client's retries; faults raise LMError (``_Unsupported``
        instead for a status in UNSUPPORTED while ``probing``)."""
        import openai

        config = self.session.config
        retries = 0
        while True:
            try:
                response = create(model=config.llm_model, **kwargs)
            except openai.APIStatusError as exc:
                self.session.connected = True
                status = exc.status_code
                if probing and status in UNSUPPORTED:
                    raise _Unsupported(_status_detail(exc)) from None
                if (status == 429 or status >= 500) and retries < config.max_retries:
                    _sleep_before_retry(config, retries, exc)
                    retries += 1
                    continue
                raise self._error(f"http {status}", f"{_status_detail(exc)}, {retries + 1} attempt(s)") from None
            except openai.APITimeoutError:
                if retries < config.max_retries:
                    _sleep_before_retry(config, retries, None)
                    retries += 1
                    continue
                raise self._error("timeout", f"no reply within {config.timeout:g} s, {retries + 1} attempt(s)") from None
            except openai.APIConnectionError as exc:
                if self.session.connected and retries < config.max_retries:
                    _sleep_before_retry(config, retries, None)
                    retries += 1
                    continue
                raise self._error("connection", f"cannot reach it ({exc})") from None
            except (openai.APIResponseValidationError, ValueError) as exc:
                self.session.connected = True
                if retries < config.max_retries:
                    retries += 1
                    continue
                raise self._error("junk", f"unreadable response ({one_line(str(exc), 80)}), "
                                          f"{retries + 1} attempt(s)") from None
            self.session.connected = True
            return response

    def _junk(self, what: str) -> LMError:
        return self._error("junk", what)

    # echo
    def _echo_scores(self, prompt: str, texts: list[str]) -> list[list[float]]:
        """Per text: the log-probabilities of its tokens after ``prompt`` (echo; raises _Unsupported)."""
        if not prompt:
            raise LMError("a server cannot score the first token of an empty prompt (echo gives it no "
                          "log-probability)", option="prompt")
        found: list[list[float]] = []
        for start in range(0, len(texts), ECHO_BATCH):
            batch = texts[start:start + ECHO_BATCH]
            response = self._call(self.session.client.completions.create, self._echo is None,
                                  prompt=[prompt + t for t in batch], echo=True, logprobs=1, max_tokens=1,
                                  temperature=0)
            choices = sorted(getattr(response, "choices", None) or [], key=lambda c: getattr(c, "index", 0) or 0)
            if len(choices) != len(batch):
                if self._echo is None:
                    raise _Unsupported(f"{len(choices)} choices for {len(batch)} prompts")
                raise self._junk(f"{len(choices)} choices for {len(batch)} prompts")
            for text, choice in zip(batch, choices):
                values = _echoed(choice, len(prompt), len(prompt) + len(text))
                if values is None:
                    if self._echo is None:
                        raise _Unsupported("no echoed log-probabilities")
                    raise self._junk("the reply has no log-probabilities for the echoed text")
                found.append(values)
        self._echo = True
        self._completions = True
        return found

    def _try_echo(self, prompt: str, texts: list[str]) -> list[list[float]] | None:
        if self._echo is False:
            return None
        try:
            return self._echo_scores(prompt, texts)
        except _Unsupported:
            self._echo = False
            return None

    # top log-probabilities
    def _top_logprobs(self, prompt: str) -> list[tuple[str, float]] | None:
        if self._top is False:
            return None
        try:
            response = self._call(self.session.client.chat.completions.create, self._top is None,
                                  messages=[{"role": "user", "content": prompt}], max_tokens=1, logprobs=True,
                                  top_logprobs=TOP_LOGPROBS, temperature=0)
        except _Unsupported:
            self._top = False
            return None
        try:
            top = response.choices[0].logprobs.content[0].top_logprobs
            pairs = [(str(t.token), float(t.logprob)) for t in top]
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            pairs = []
        if not pairs or not all(math.isfinite(v) and v <= 1e-6 for _, v in pairs):
            if self._top is None:
                self._top = False
                return None
            raise self._junk("the reply has no top log-probabilities")
        self._top = True
        return pairs

    # a structured prompt
    def _stated(self, prompt: str, candidates: list[str]) -> list[Scored]:
        scores: list[Scored] = []
        for start in range(0, len(candidates), JSON_BATCH):
            batch = candidates[start:start + JSON_BATCH]
            reply = request_reply(self.session, json_messages(prompt, batch), _parser(batch), JSON_REASK)
            if isinstance(reply, Failure):
                raise self._error(reply.kind, reply.detail)
            scores.extend(Scored(c, math.log(max(p, MIN_STATED)), None, exact=False) for c, p in zip(batch, reply))
        return scores

    # the interface
    def next_token_logprobs(self, prompt: str, candidates: Sequence[str]) -> list[Scored]:
        candidates = list(candidates)
        if not candidates:
            return []
        echoed = self._try_echo(prompt, candidates) if self.scoring in ("auto", "echo") else None
        if echoed is not None:
            return [Scored(c, v[0], len(v)) for c, v in zip(candidates, echoed)]
        top = self._top_logprobs(prompt) if self.scoring in ("auto", "top_logprobs") else None
        if top is not None:
            return [Scored(c, match_top(c, top), None, exact=False) for c in candidates]
        return self._stated(prompt, candidates)

    def continuation_logprobs(self, prompt: str, continuations: Sequence[str]) -> list[Scored]:
        continuations = list(continuations)
        if not continuations:
            return []
        echoed = self._try_echo(prompt, continuations) if self.scoring in ("auto", "echo") else None
        if echoed is not None:
            return [Scored(c, sum(v), len(v)) for c, v in zip(continuations, echoed)]
        return self._stated(prompt, continuations)

    def continuation_logprob(self, prompt: str, continuation: str) -> float:
        return self.continuation_logprobs(prompt, [continuation])[0].logprob

    def generate(self, prompt: str, max_tokens: int = 64, stop: Sequence[str] = ()) -> str:
        check_generate_args(max_tokens, stop)
        stops = [s for s in stop if s][:4] or None  # the OpenAI API takes at most 4
        if self._completions is not False:
            try:
                response = self._call(self.session.client.completions.create, self._completions is None,
                                      prompt=prompt, max_tokens=max_tokens, temperature=0, stop=stops)
                text = response.choices[0].text
            except _Unsupported:
                self._completions = False
            except (AttributeError, IndexError, TypeError):
                raise self._junk("the completion has no text") from None
            else:
                if not isinstance(text, str):
                    raise self._junk("the completion has no text")
                self._completions = True
                return cut_at_stop(text, stop)[0]
        response = self._call(self.session.client.chat.completions.create, False,
                              messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                              temperature=0, stop=stops)
        try:
            text = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            text = None
        if not isinstance(text, str):
            raise self._junk("the chat reply has no text")
        return cut_at_stop(text, stop)[0]


def _echoed(choice: Any, start: int, end: int) -> list[float] | None:
    """The log-probabilities of the echoed tokens overlapping characters ``[start, end)``, or None
    when the choice does not carry them."""
    logprobs = getattr(choice, "logprobs", None)
    tokens = getattr(logprobs, "tokens", None)
    values = getattr(logprobs, "token_logprobs", None)
    offsets = getattr(logprobs, "text_offset", None)
    if not tokens or not isinstance(values, list) or not isinstance(offsets, list):
        return None
    if not len(tokens) == len(values) == len(offsets) or offsets[0] != 0:
        return None  # echo ignored: the offsets start after the prompt
    picked: list[float] = []
    for token, value, offset in zip(tokens, values, offsets):
        if not isinstance(offset, int) or offset >= end or offset + len(str(token)) <= start:
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value > 1e-6:
            return None
        picked.append(float(value))
    return picked or None


def match_top(candidate: str, top: list[tuple[str, float]]) -> float:
    """The log-probability of the longest top token that begins ``candidate`` (leading whitespace
    ignored on both), else the lowest top log-probability."""
    text = candidate.lstrip()
    matches = [(len(t.lstrip()), v) for t, v in top if t.strip() and text.startswith(t.lstrip())]
    return max(matches)[1] if matches else min(v for _, v in top)


def json_messages(prompt: str, candidates: list[str]) -> list[dict[str, str]]:
    """Chat messages asking for ``{"probabilities": {candidate: p}}``."""
    user = "\n".join([
        "Text:", "<<<", prompt, ">>>", "",
        "For each candidate below, estimate the probability (a number from 0 to 1) that the text "
        "continues directly with it.",
        f"Candidates (JSON list): {json.dumps(candidates, ensure_ascii=False)}", "",
        'Reply with only this JSON object, every candidate a key exactly as written: '
        '{"probabilities": {"<candidate>": <number>, ...}}',
    ])
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _parser(candidates: list[str]) -> Callable[[str | None], list[float]]:
    def parse(text: str | None) -> list[float]:
        data = reply_object(text).get("probabilities")
        if not isinstance(data, dict):
            raise Junk('no "probabilities" object')
        loose = {str(k).strip().lower(): v for k, v in data.items()}
        values = []
        for candidate in candidates:
            value = data.get(candidate, loose.get(candidate.strip().lower()))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise Junk(f"no probability from 0 to 1 for {candidate!r}")
            values.append(float(value))
        return values

    return parse
