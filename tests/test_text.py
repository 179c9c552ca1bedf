"""for_terminal: the one filter for outside text on its way to a terminal."""

from __future__ import annotations

import pytest

from neurosearch.text import for_terminal


@pytest.mark.parametrize("raw, shown", [
    ("plain words", "plain words"),
    ("\x1b]0;title\x07after", "]0;titleafter"),
    ("\x1b[2J\x1b[31mred", "[2J[31mred"),
    ("a\u202eb\u2066c\u2069d\u200f", "abcd"),
    ("nul\x00del\x7fc1\x9b", "nuldelc1"),
    ("tab\tnew\nline\r", "tab new line"),
    ("[/] [bold]kept[/bold]", "[/] [bold]kept[/bold]"),
    ("ünïcödé 日本 emoji 🙂", "ünïcödé 日本 emoji 🙂"),
])
def test_for_terminal(raw: str, shown: str):
    assert for_terminal(raw) == shown and for_terminal(shown, None) == shown  # what it shows passes unchanged


def test_for_terminal_caps_length():
    assert for_terminal("x" * 100, 10) == "x" * 9 + "…"
    assert for_terminal("x" * 100, None) == "x" * 100
    assert for_terminal(None) == "" and for_terminal(12) == "12"
