"""MLM head on a tiny random BERT: masked-only logits, tying, training, storage, hooks."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from neurosearch.model.head import HeadConfig, HeadedMaskedLM, MLMHead, load_head, save_head
from neurosearch.model.head_fit import fit_head

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(95)]
MASK_ID = 4


def tiny_encoder(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(SPECIALS) + len(WORDS), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
    )
    return BertModel(config, add_pooling_layer=False).eval().requires_grad_(False)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ids with some [MASK]s, a padded row, and labels at the masked positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (3, 12), generator=g)
    attn = torch.ones_like(ids)
    attn[2, 8:] = 0
    ids[2, 8:] = 0
    labels = torch.full_like(ids, -100)
    for row, col in [(0, 1), (0, 5), (1, 3), (1, 10), (2, 2), (2, 6)]:
        labels[row, col] = ids[row, col]
        ids[row, col] = MASK_ID
    labels[1, 7] = ids[1, 7]  # a predicted position whose input is kept
    return ids, attn, labels


def make_model(seed: int = 0) -> HeadedMaskedLM:
    encoder = tiny_encoder(seed)
    head = MLMHead(encoder.get_input_embeddings(), mask_token_id=MASK_ID)
    with torch.no_grad():
        head.mask_vector.normal_()
        head.bias.normal_()
    return HeadedMaskedLM(encoder, head)


def test_masked_logits_match_full_logits():
    model = make_model()
    ids, attn, labels = batch()
    with torch.no_grad():
        full = model.head(model(ids, attn))  # [B, T, V]
        selected = labels != -100
        expected = torch.nn.functional.cross_entropy(
            full[selected], labels[selected], reduction="none"
        )
        losses = model.token_losses(ids, attn, labels)
        total, n = model.masked_loss(ids, attn, labels)
    assert n == int(selected.sum()) == 7
    torch.testing.assert_close(losses, expected)
    torch.testing.assert_close(total, expected.sum())


def test_mask_vector_replaces_mask_embedding_only():
    model = make_model()
    ids, attn, _ = batch()
    with torch.no_grad():
        ours = model(ids, attn)
        emb = model.encoder.get_input_embeddings()(ids)
        emb[ids == MASK_ID] = model.head.mask_vector
        reference = model.encoder(inputs_embeds=emb, attention_mask=attn).last_hidden_state
        plain = model.encoder(input_ids=ids, attention_mask=attn).last_hidden_state
    torch.testing.assert_close(ours, reference)
    assert not torch.allclose(ours, plain)  # the learned vector is really used
    model.head.mask_vector = None
    with torch.no_grad():  # without it, inputs_embeds equals the input_ids path (pos/type/LN added)
        torch.testing.assert_close(model(ids, attn), plain)


def test_decoder_is_the_frozen_embedding():
    model = make_model()
    weight = model.encoder.get_input_embeddings().weight
    assert model.head.decoder_weight is weight
    assert model.head.decoder_weight.data_ptr() == weight.data_ptr()
    assert not weight.requires_grad
    names = {name for name, _ in model.head.named_parameters()}
    assert names == {"dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias",
                     "mask_vector"}
    ids, attn, labels = batch()
    total, n = model.masked_loss(ids, attn, labels)
    total.backward()
    assert weight.grad is None
    assert model.head.mask_vector.grad is not None and model.head.mask_vector.grad.abs().sum() > 0


def test_forward_hooks_fire_on_mask_vector_path():
    model = make_model()
    seen = []
    handles = [model.encoder.embeddings.register_forward_hook(lambda m, i, o: seen.append("emb"))]
    for i, layer in enumerate(model.encoder.encoder.layer):
        handles.append(layer.intermediate.register_forward_hook(
            lambda m, inp, out, i=i: seen.append(f"ffn{i}")))
        handles.append(
            layer.register_forward_hook(lambda m, inp, out, i=i: seen.append(f"block{i}"))
        )
    ids, attn, labels = batch()
    with torch.no_grad():
        before = model.masked_loss(ids, attn, labels)[0]
    assert seen == ["emb", "ffn0", "block0", "ffn1", "block1"]
    # An ablating hook changes the loss, so hooks are on the path that matters.
    handles.append(model.encoder.encoder.layer[0].intermediate.register_forward_hook(
        lambda m, inp, out: torch.zeros_like(out)))
    with torch.no_grad():
        after = model.masked_loss(ids, attn, labels)[0]
    assert not torch.isclose(before, after)
    for h in handles:
        h.remove()


def corpus(n: int = 80) -> list[str]:
    """Docs with learnable structure: each word is followed by its successor (mod 95)."""
    g = torch.Generator().manual_seed(3)
    docs = []
    for _ in range(n):
        start = int(torch.randint(95, (1,), generator=g))
        length = int(torch.randint(6, 20, (1,), generator=g))
        docs.append(" ".join(WORDS[(start + k) % 95] for k in range(length)))
    return docs


def test_fit_reduces_heldout_loss_and_round_trips(tmp_path):
    encoder, tokenizer = tiny_encoder(), tiny_tokenizer()
    config = HeadConfig(epochs=4, lr=1e-2, batch_size=16, window=10, heldout_docs=16, eval_every=5,
                        mask_prob=0.3, seed=1)
    records = []
    result = fit_head(encoder, tokenizer, corpus(), config, on_step=lambda r, h: records.append(r))
    assert [r["step"] for r in records] == list(range(1, result.steps + 1))
    assert result.curve[0]["step"] == 0
    assert result.heldout_loss < result.curve[0]["heldout_loss"]
    assert result.heldout_loss == result.curve[-1]["heldout_loss"]
    assert result.unigram_loss > 0
    assert not any(p.requires_grad for p in encoder.parameters())

    save_head(result.head, tmp_path / "head", result.meta("tiny"))
    files = sorted(p.name for p in (tmp_path / "head").iterdir())
    assert files == ["head.json", "head.safetensors"]
    loaded, meta = load_head(tmp_path / "head", encoder)
    assert meta["model"] == "tiny" and meta["heldout_loss"] == result.heldout_loss
    assert meta["config"]["lr"] == 1e-2
    json.loads((tmp_path / "head" / "head.json").read_text())
    assert loaded.decoder_weight is encoder.get_input_embeddings().weight
    ids, attn, labels = batch()
    with torch.no_grad():
        a = HeadedMaskedLM(encoder, result.head).token_losses(ids, attn, labels)
        b = HeadedMaskedLM(encoder, loaded).token_losses(ids, attn, labels)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_max_steps_and_cosine_schedule():
    config = HeadConfig(epochs=10, batch_size=8, window=12, heldout_docs=8, max_steps=6,
                        eval_every=100, schedule="cosine", warmup_steps=2)
    records = []
    result = fit_head(tiny_encoder(), tiny_tokenizer(), corpus(40), config,
                      on_step=lambda r, h: records.append(r))
    assert result.steps == 6 and len(result.curve) == 2
    lrs = [r["lr"] for r in records]
    assert lrs[0] == pytest.approx(config.lr / 2) and lrs[1] == pytest.approx(config.lr)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    # The held-out masking ignores the seed, so runs stay comparable.
    other = fit_head(tiny_encoder(), tiny_tokenizer(), corpus(40),
                     HeadConfig(batch_size=8, window=12, heldout_docs=8, max_steps=1, seed=5))
    assert other.unigram_loss == result.unigram_loss


def test_load_rejects_mismatched_encoder(tmp_path):
    model = make_model()
    save_head(model.head, tmp_path, {"model": "tiny"})
    other = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=4, intermediate_size=64))
    with pytest.raises(ValueError):
        load_head(tmp_path, other)
    with pytest.raises(ValueError):
        HeadedMaskedLM(other, model.head)
