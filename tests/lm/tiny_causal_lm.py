"""A tiny random causal LM (Llama architecture) with a word-level tokenizer, saved like a real model."""

from __future__ import annotations

from pathlib import Path

LM_WORDS = (
    "monday tuesday wednesday thursday friday saturday sunday apple banana cherry carrot potato "
    "examples of fruits weekdays vegetables the a and is red green blue dog cat , : ."
).split()
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def save_tiny_causal_lm(directory: Path, seed: int = 0) -> Path:
    """A randomly initialised LlamaForCausalLM + fast word-level tokenizer (adds ``<s>`` first)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(SPECIALS + LM_WORDS)}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(directory)
    config = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():  # sharper than the default init, so greedy choices are not near ties
        model.lm_head.weight.mul_(20)
    model.save_pretrained(directory, safe_serialization=True)
    return directory
