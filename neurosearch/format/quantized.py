"""Unit rows stored as int8 with a float32 scale each: how ``token_space.npy`` keeps the token
embedding space in a quarter of the float32 size. numpy is imported by the functions, not the module."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def unit(vectors: np.ndarray) -> np.ndarray:
    """Float32 rows scaled to unit length; all-zero rows stay zero."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float32), where=norms > 0).astype(np.float32)


def quantize_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows with a float32 scale each, of the unit-normalised ``vectors``."""
    import numpy as np

    normed = unit(vectors)
    scale = np.abs(normed).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    return np.round(normed / scale[:, None]).astype(np.int8), scale.astype(np.float32)


def dequantize_rows(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Unit float32 rows back from :func:`quantize_rows`' codes and scales."""
    import numpy as np

    return unit(codes.astype(np.float32) * scale[:, None])
