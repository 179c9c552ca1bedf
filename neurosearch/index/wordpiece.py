"""BERT's WordPiece tokenizer in pure Python, for the few words of a query.

``find`` tokenises a handful of words, and parsing the model's ``tokenizer.json`` with the
``tokenizers`` library is slow for a cold start (docs/decisions.md). This tokenizer loads the
vocabulary from ``search/wordpiece_vocab.txt`` (one token per line, which the build extracts next
to the settings in ``search/wordpiece.json``) and gives the same ids as ``tokenizers`` for BERT's normaliser, pre-tokeniser and WordPiece model
(tested against it). Indexes of other tokenizers (BPE, Unigram) have no ``wordpiece.json`` and use
``tokenizers``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

_ASCII_PUNCTUATION = frozenset(chr(c) for c in [*range(33, 48), *range(58, 65), *range(91, 97), *range(123, 127)])


@dataclass
class WordPiece:
    """BertNormalizer + BertPreTokenizer + WordPiece, the settings of one ``tokenizer.json``."""

    vocab: dict[str, int]
    lowercase: bool = True
    strip_accents: bool = True
    handle_chinese_chars: bool = True
    clean_text: bool = True
    prefix: str = "##"
    unk_token: str = "[UNK]"
    max_chars: int = 100

    @staticmethod
    def settings_of(tokenizer_json: dict[str, Any]) -> dict[str, Any] | None:
        """The WordPiece settings and token list (``tokens``, by id) of a ``tokenizers`` JSON.

        None unless it is plain BERT, or a token holds a line break (the vocabulary is stored one per line).
        """
        model, normalizer = tokenizer_json.get("model") or {}, tokenizer_json.get("normalizer") or {}
        if (model.get("type") != "WordPiece" or normalizer.get("type") != "BertNormalizer"
                or (tokenizer_json.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer"):
            return None
        lowercase = bool(normalizer.get("lowercase", True))
        strip = normalizer.get("strip_accents")
        vocab = model["vocab"]
        if sorted(vocab.values()) != list(range(len(vocab))) or any("\n" in t or "\r" in t for t in vocab):
            return None
        return {
            "lowercase": lowercase,
            "strip_accents": lowercase if strip is None else bool(strip),
            "handle_chinese_chars": bool(normalizer.get("handle_chinese_chars", True)),
            "clean_text": bool(normalizer.get("clean_text", True)),
            "prefix": model.get("continuing_subword_prefix", "##"),
            "unk_token": model.get("unk_token", "[UNK]"),
            "max_chars": int(model.get("max_input_chars_per_word", 100)),
            "tokens": sorted(vocab, key=vocab.__getitem__),
        }

    @classmethod
    def from_settings(cls, settings: dict[str, Any], tokens: list[str] | None = None) -> "WordPiece":
        """From ``settings_of``'s dict, the token list given there or separately (by id)."""
        fields = {k: v for k, v in settings.items() if k != "tokens"}
        tokens = settings["tokens"] if tokens is None else tokens
        return cls(vocab=dict(zip(tokens, range(len(tokens)))), **fields)

    def _normalise(self, text: str) -> str:
        if self.clean_text:
            text = "".join(
                " " if ch.isspace() else ch for ch in text
                if not (ch == "\0" or ch == "\ufffd" or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"))
            )
        if self.handle_chinese_chars:
            text = "".join(f" {ch} " if _is_cjk(ord(ch)) else ch for ch in text)
        if self.strip_accents:
            text = "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")
        return text.lower() if self.lowercase else text

    def _words(self, text: str) -> list[str]:
        words: list[str] = []
        for chunk in text.split():
            current = ""
            for ch in chunk:
                if ch in _ASCII_PUNCTUATION or unicodedata.category(ch).startswith("P"):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def _pieces(self, word: str) -> list[int]:
        unk = [self.vocab[self.unk_token]] if self.unk_token in self.vocab else []
        if len(word) > self.max_chars:
            return unk
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return unk  # some part of the word has no piece: the whole word is unknown
            start = end
        return ids

    def encode(self, text: str) -> list[int]:
        """Vocabulary ids of ``text``, without special tokens."""
        return [i for word in self._words(self._normalise(text)) for i in self._pieces(word)]


def _is_cjk(code: int) -> bool:
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2B73F or 0x2B740 <= code <= 0x2B81F or 0x2B820 <= code <= 0x2CEAF
            or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F)
