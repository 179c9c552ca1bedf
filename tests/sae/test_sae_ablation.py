"""Ablating SAE features: the empty set is the identity bit for bit; a set removes only its own contribution."""

from __future__ import annotations

import pytest
import torch

from neurosearch.errors import NeurosearchError
from neurosearch.sae.ablation import ablate, ablation_delta
from neurosearch.sae.model import TopKSAE

from test_sae_model import X, hand_sae


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int64)


def test_ablating_no_feature_returns_x_bit_for_bit_in_float64():
    sae = TopKSAE.initialised(8, 64, 4, seed=3).double()
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(0))
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(50, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 1e3
    x[0, 0] = -0.0  # a signed zero survives too
    for features in ([], torch.zeros(0, dtype=torch.int64)):
        assert torch.equal(bits(ablate(sae, x, features)), bits(x))
        delta = ablation_delta(sae, x, features)
        assert delta.shape == x.shape and torch.equal(delta, torch.zeros_like(x))
    assert torch.equal(bits(x + ablation_delta(sae, x, [])), bits(x + 0.0))  # the formula adds exactly zero


def test_ablating_a_feature_removes_only_its_contribution_hand_case():
    sae = hand_sae()
    # row 0 has a3 = 1.5 and W_dec[3] = [-0.8, 0.6]: x - 1.5 * W_dec[3]; rows 1, 2 have a3 = 0: unchanged
    out = ablate(sae, X, [3])
    assert torch.allclose(out[0], torch.tensor([4.2, 1.1], dtype=torch.float64), atol=1e-12)
    assert torch.equal(bits(out[1:]), bits(X[1:]))
    # set to 1.0 instead of zero: row 0 changes by (1 - 1.5) * W_dec[3], the others by (1 - 0) * W_dec[3]
    out = ablate(sae, X, [3], value=1.0)
    expected = X + torch.tensor([[0.4, -0.3], [-0.8, 0.6], [-0.8, 0.6]], dtype=torch.float64)
    assert torch.allclose(out, expected, atol=1e-12)


def test_ablation_keeps_the_error_term_and_the_other_features():
    """x + delta equals decode(a') + (x - decode(a)) up to rounding, with a per-feature value."""
    sae = hand_sae()
    features, values = [1, 2], torch.tensor([0.5, 0.0], dtype=torch.float64)
    a = sae.encode(X)
    changed = a.clone()
    changed[:, features] = values
    reference = sae.decode(changed) + (X - sae.decode(a))
    assert torch.allclose(ablate(sae, X, features, values), reference, atol=1e-12)
    # row 2 had features 1 and 2: 2.25*[0,1] + 2*[0.6,0.8] replaced by 0.5*[0,1]
    assert torch.allclose(ablate(sae, X, features, values)[2], X[2] - torch.tensor([1.2, 1.6 + 1.75], dtype=torch.float64))


def test_ablation_checks_its_features():
    sae = hand_sae()
    with pytest.raises(NeurosearchError):
        ablate(sae, X, [4])
    with pytest.raises(NeurosearchError):
        ablate(sae, X, [1, 1])
    with pytest.raises(NeurosearchError):
        ablate(sae, X, [1, 2], value=torch.tensor([1.0, 2.0, 3.0]))
