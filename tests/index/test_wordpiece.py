"""The pure-Python WordPiece tokenizer gives the ids of the tokenizers library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from neurosearch.index.wordpiece import WordPiece

SHIPPED = Path(__file__).resolve().parents[2] / "index" / "default" / "tokenizer.json"
TEXTS = [
    "weekdays", "Weekdays", "colours of the rainbow", "body parts", "  spaced\tout\nwords ", "don't", "U.S.A.",
    "café naïve résumé", "Ünïcödé", "東京 tower", "emoji 🙂 face", "hyphen-ated", "under_score", "#hashtag",
    "zzqqxx", "a" * 120, "supercalifragilisticexpialidocious", "numbers 1,234.56", "control\x07char",
    "quote’s “curly”", "ß straße", "ΑΘΗΝΑ", "москва", "", "   ",
]


def _pair(path: Path) -> tuple[WordPiece, Tokenizer]:
    settings = WordPiece.settings_of(json.loads(path.read_text(encoding="utf-8")))
    assert settings is not None
    return WordPiece.from_settings(settings), Tokenizer.from_file(str(path))


@pytest.mark.parametrize("text", TEXTS)
def test_same_ids_as_tokenizers_on_the_shipped_bert_vocabulary(text: str):
    if not SHIPPED.is_file():
        pytest.skip("the shipped index's tokenizer.json is not in this checkout")
    wordpiece, reference = _pair(SHIPPED)
    assert wordpiece.encode(text) == reference.encode(text, add_special_tokens=False).ids


def test_same_ids_on_the_tiny_test_tokenizer(tiny_model: Path):
    wordpiece, reference = _pair(tiny_model / "tokenizer.json")
    for text in TEXTS:
        assert wordpiece.encode(text) == reference.encode(text, add_special_tokens=False).ids, text


def test_other_tokenizers_are_left_to_the_tokenizers_library():
    assert WordPiece.settings_of({"model": {"type": "BPE", "vocab": {}}, "normalizer": None}) is None
    bert = {"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 1}}, "normalizer": {"type": "BertNormalizer"},
            "pre_tokenizer": {"type": "Whitespace"}}
    assert WordPiece.settings_of(bert) is None  # a different pre-tokeniser: not plain BERT
