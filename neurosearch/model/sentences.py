"""Texts -> unit vectors in the model's sentence space (mean pooling, as sentence-transformers does).

all-MiniLM-L6-v2 is a sentence encoder: trained so that the mean of its last hidden states over
a text's tokens (``[CLS]`` and ``[SEP]`` included) is close, in cosine, for texts that mean the
same. The build embeds every kept token and every concept key once (``pipeline/semantic.py``);
``find`` embeds a phrase it has no stored expansion of (the slow path, which says so).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def sentence_vectors(loaded: Any, texts: list[str], batch: int = 256, max_length: int = 32) -> np.ndarray:
    """Float32 [len(texts), H] unit vectors of ``texts`` under ``loaded.encoder`` (a ``LoadedModel``)."""
    out = np.zeros((len(texts), loaded.encoder.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths: little padding
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            encoded = loaded.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                       max_length=max_length, return_tensors="pt").to(loaded.device)
            hidden = loaded.encoder(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            out[rows] = torch.nn.functional.normalize(mean.float(), dim=-1).cpu().numpy()
    return out
