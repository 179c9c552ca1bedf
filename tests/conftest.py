"""Shared fixtures: a tiny random BERT with a word-level vocabulary, saved like a real model."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

WORDS = (
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june "
    "red green blue yellow dog cat horse bird car bus train boat one two three four five the a of and "
    "is was to in on at it he she they we you happy sad music song band"
).split()

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEUROSEARCH_SHARED") or ROOT.parent / "shared")
"""The development data beside the checkout (``../shared``; NEUROSEARCH_SHARED points elsewhere,
e.g. from a git worktree). Tests that need it call :func:`requires_shared` and skip without it."""


def file_tree(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` (hidden ones too, no bytecode caches) -> sha256."""
    import hashlib

    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def git_status() -> str | None:
    """``git status`` of the checkout (untracked files too); None outside a git checkout."""
    import shutil
    import subprocess

    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return None
    return subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
                          capture_output=True, text=True).stdout


def make_corpus(path: Path, documents: int, seed: int = 0, words: tuple[int, int] = (5, 40)) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(documents):
            handle.write(" ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) + "\n")
    return path


def save_tiny_model(directory: Path, family: str = "bert", seed: int = 0) -> Path:
    """A randomly initialised encoder + fast tokenizer in ``directory`` (loads like a hub model)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    backend = Tokenizer(WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )
    tokenizer.save_pretrained(directory)
    common = dict(vocab_size=len(vocab), max_position_embeddings=64, pad_token_id=0)
    if family == "bert":
        config = transformers.BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=24, **common)
        model = transformers.BertForMaskedLM(config)
    elif family == "roberta":
        config = transformers.RobertaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=24, **{**common, "max_position_embeddings": 70})
        model = transformers.RobertaForMaskedLM(config)
    elif family == "distilbert":
        config = transformers.DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=24, **common)
        model = transformers.DistilBertForMaskedLM(config)
    else:
        raise ValueError(family)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(autouse=True)
def _state_outside_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results about read-only indexes go to a temporary state folder, never the user's own."""
    monkeypatch.setenv("NEUROSEARCH_STATE", str(tmp_path_factory.getbasetemp() / "state"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "docs.txt", 240)


def _tiny_build(out: Path, tiny_model: Path, tiny_corpus: Path, methods: tuple[str, ...] | None = None) -> Path:
    """An index of the tiny model over the tiny corpus at K = 3 and 6 (every method, or ``methods``)."""
    from neurosearch.pipeline import build_index
    from neurosearch.config import BuildConfig, ClusterConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig

    config = BuildConfig(
        model=ModelConfig(model=str(tiny_model), dtype="float32"),
        corpus=CorpusConfig(source=str(tiny_corpus), window=16),
        stats=StatsConfig(batch_tokens=256, shard_docs=100),
        profiles=ProfileConfig(min_count=2, **({"methods": methods} if methods else {})),
        clusters=ClusterConfig(ks=(3, 6)),
    )
    build_index(config, out)
    return out


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tiny_corpus: Path) -> Path:
    """A complete index of the tiny model over the tiny corpus (K = 3 and 6); copy it before writing to it."""
    return _tiny_build(tmp_path_factory.mktemp("index") / "tiny", tiny_model, tiny_corpus)


def requires_shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared development data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def small_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tiny_corpus: Path) -> Path:
    """A tiny index of two methods (filter, filter+smooth+tfidf) at K = 3, 6; treat it as read-only."""
    return _tiny_build(tmp_path_factory.mktemp("small-index") / "tiny", tiny_model, tiny_corpus,
                       ("filter", "filter+smooth+tfidf"))


@pytest.fixture
def llm():
    """A fake OpenAI-compatible server on 127.0.0.1 (see fake_llm.py)."""
    from fake_llm import fake_llm

    with fake_llm() as fake:
        yield fake
