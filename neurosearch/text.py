"""Text that came from outside (LLM labels, corpus contexts, manifest fields, queries), made safe to print.

A terminal obeys what it is sent: an escape sequence in an LLM's theme can retitle the window
(``ESC ] 0 ;``), clear the screen (``ESC [ 2 J``) or plant a hidden link (OSC 8), and a right-to-left
override (U+202E) makes text read as something else. :func:`for_terminal` is the one filter every
outside string goes through before the CLI prints it; ``--json`` output stays exact. Standard
library only (``find`` imports it).
"""

from __future__ import annotations

import re

MAX_THEME = 80
"""Characters of a theme that are stored and shown (a theme is 2-5 words)."""
MAX_EXPLANATION = 400
"""Characters of a label's explanation that are stored and shown (one sentence)."""
MAX_QUERY = 200
"""Characters of a query shown back to the user (the library refuses queries over ``index.query.MAX_QUERY_CHARS``)."""
MAX_FIELD = 500
"""Characters of any other outside string shown in a table cell or an error line."""

_UNSAFE = re.compile(
    "["
    "\x00-\x08\x0b-\x1f\x7f"  # C0 controls but TAB and LF (handled below), DEL
    "\x80-\x9f"  # C1 controls (a lone U+009B is CSI on some terminals)
    "\u061c\u200e\u200f"  # bidi marks
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2066-\u2069"  # bidi isolates
    "\ufeff"  # zero-width no-break space / byte-order mark
    "]+"
)
_SPACE = re.compile(r"[\t\n]+")


def for_terminal(text: object, limit: int | None = MAX_FIELD) -> str:
    """``text`` without control characters or bidi controls, on one line, at most ``limit`` characters.

    ESC, NUL and every other C0/C1 control are removed (so no escape sequence survives), tabs and
    newlines become spaces, and text longer than ``limit`` ends in an ellipsis (None: no limit).
    Rich markup is not this function's business: print the result as ``rich.text.Text``, never as
    a markup string.
    """
    text = "" if text is None else str(text)
    text = _UNSAFE.sub("", _SPACE.sub(" ", text))
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text
