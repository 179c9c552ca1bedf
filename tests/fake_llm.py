"""A fake OpenAI-compatible chat-completions server for tests (a real ``openai`` client talks to it).

``respond(seen, n_for_this_prompt)`` decides each reply: a status, a content string, raw bytes,
a delay. Used by the ``llm`` fixture (conftest.py) and by tests that run ``neurosearch label`` in
subprocesses against it. ``complete(seen, n)`` answers the completions endpoint (``tests/lm``);
by default it does not exist (404), as on a chat-only server.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

GOOD = '{"theme": "days of the week", "explanation": "Names of weekdays."}'


@dataclass
class Reply:
    status: int = 200
    content: str | None = GOOD
    raw: bytes | None = None
    delay: float = 0.0
    body: dict | None = None
    """A 200 reply's whole JSON body, sent as it is (a completions reply)."""
    logprobs: dict | None = None
    """The chat choice's ``logprobs`` (``{"content": [...]}``), when given."""


@dataclass
class Seen:
    headers: dict[str, str]
    body: dict

    @property
    def prompt(self) -> str:
        return "\n".join(m["content"] for m in self.body["messages"])


@dataclass
class FakeLLM:
    """Chat-completions server; ``respond(seen, n_for_this_prompt)`` decides each reply."""

    base_url: str = ""
    seen: list[Seen] = field(default_factory=list)
    respond: Callable[[Seen, int], Reply] = lambda seen, n: Reply()
    complete: Callable[[Seen, int], Reply] = lambda seen, n: Reply(404, "no completions endpoint")
    stop: Callable[[], object] = lambda: None

    def count(self, needle: str) -> int:
        return sum(needle in s.body["messages"][1]["content"] for s in self.seen)



def _asked(body: dict) -> object:
    """What makes two requests the same question: a chat's second message (its first when it has
    one), a completion's prompt."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return messages[1] if len(messages) > 1 else messages[0]
    return body.get("prompt")


@contextmanager
def fake_llm() -> Iterator[FakeLLM]:
    """A fake chat-completions server on 127.0.0.1 in a thread, for as long as the block runs."""
    fake = FakeLLM()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen = Seen({k.lower(): v for k, v in self.headers.items()}, body)
            with lock:
                fake.seen.append(seen)
                n = sum(_asked(s.body) == _asked(body) for s in fake.seen)
            if self.path == "/v1/chat/completions":
                reply = fake.respond(seen, n)
            elif self.path == "/v1/completions":
                reply = fake.complete(seen, n)
            else:
                reply = Reply(404)
            time.sleep(reply.delay)
            if reply.raw is not None:
                payload = reply.raw
            elif reply.status == 200 and reply.body is not None:
                payload = json.dumps(reply.body).encode()
            elif reply.status == 200:
                payload = json.dumps({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply.content},
                                 **({"logprobs": reply.logprobs} if reply.logprobs is not None else {})}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
            else:
                payload = json.dumps({"error": {"message": reply.content or "failed",
                                                "type": "error"}}).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # client timed out and left
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    fake.stop = lambda: (server.shutdown(), server.server_close())
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
