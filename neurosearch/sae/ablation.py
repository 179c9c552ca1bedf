"""Remove some SAE features' contribution from activations, and keep everything else.

With ``a = encode(x)`` and ``a'`` equal to ``a`` except that the features in ``F`` are set to
``value`` (zero, or their mean activation), the ablated activations are

    x + (a'[:, F] - a[:, F]) @ W_dec[F]

that is ``x`` plus the change of the reconstruction's decoder term: the SAE's error
``x - decode(a)`` and the other features' contributions stay as they are. The formula adds the
change itself, never ``decode(a') + (x - decode(a))``, whose rounding would alter ``x`` even when
nothing changes; ablating no feature returns ``x`` bit for bit.
"""

from __future__ import annotations

from typing import Sequence

import torch

from neurosearch.errors import NeurosearchError
from neurosearch.sae.model import TopKSAE


def feature_index(features: Sequence[int] | torch.Tensor, d_sae: int, device: torch.device | None = None) -> torch.Tensor:
    """``features`` as a 1-D int64 tensor of distinct indices, checked against ``d_sae``."""
    index = torch.as_tensor(list(features) if not isinstance(features, torch.Tensor) else features,
                            dtype=torch.int64, device=device).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= d_sae):
        raise NeurosearchError(f"feature indices must lie in 0..{d_sae - 1}")
    if torch.unique(index).numel() != index.numel():
        raise NeurosearchError("feature indices must be distinct")
    return index


def ablation_delta(sae: TopKSAE, x: torch.Tensor, features: Sequence[int] | torch.Tensor,
                   value: float | torch.Tensor = 0.0) -> torch.Tensor:
    """``(a'[:, F] - a[:, F]) @ W_dec[F]`` for activations ``x`` [..., d_in]: what ablating adds.

    ``value``: what the features are set to, a number or one per feature ([len(F)], e.g.
    ``FeatureStats.mean_activation[F]``)."""
    index = feature_index(features, sae.d_sae, x.device)
    rows = x.reshape(-1, sae.d_in)
    a = sae.encode(rows)[:, index]
    target = torch.as_tensor(value, dtype=a.dtype, device=a.device)
    if target.ndim not in (0, 1) or (target.ndim == 1 and target.numel() != index.numel()):
        raise NeurosearchError(f"value must be a number or one per feature ({index.numel()}), got shape {list(target.shape)}")
    change = target.expand_as(a) - a
    return (change @ sae.W_dec[index]).reshape(x.shape)


def ablate(sae: TopKSAE, x: torch.Tensor, features: Sequence[int] | torch.Tensor,
           value: float | torch.Tensor = 0.0) -> torch.Tensor:
    """``x`` with the contribution of ``features`` replaced: ``x + ablation_delta(...)``.

    No features: ``x`` itself, unchanged bit for bit (a copy)."""
    index = feature_index(features, sae.d_sae, x.device)
    if index.numel() == 0:
        return x.clone()
    with torch.no_grad():
        return x + ablation_delta(sae, x, index, value)
