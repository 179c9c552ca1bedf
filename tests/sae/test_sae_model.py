"""The TopK SAE: encode/decode on a hand-computed case, and its files in the SAELens layout."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from neurosearch.errors import NeurosearchError
from neurosearch.sae.model import FeatureStats, SAEFileError, SAEInfo, TopKSAE, load_sae


def hand_sae() -> TopKSAE:
    """d_in 2, d_sae 4, k 2, float64; decoder rows of unit norm."""
    sae = TopKSAE(2, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, -1.0, 2.0], [0.0, 1.0, 1.0, -1.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, 0.25, 0.0, -1.5]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-0.8, 0.6]]))
        sae.b_dec.copy_(torch.tensor([1.0, 1.0]))
    return sae


X = torch.tensor([[3.0, 2.0], [1.0, 0.0], [1.0, 3.0]], dtype=torch.float64)
# x - b_dec = [2, 1], [0, -1], [0, 2]
# pre-activations: [2, 1.25, -1, 1.5], [0, -0.75, -1, -0.5], [0, 2.25, 2, -3.5]
# relu, top 2: features 0 and 3; none positive; features 1 and 2
CODES = torch.tensor([[2.0, 0.0, 0.0, 1.5], [0.0, 0.0, 0.0, 0.0], [0.0, 2.25, 2.0, 0.0]], dtype=torch.float64)
# decode: 2*[1,0] + 1.5*[-0.8,0.6] + [1,1]; b_dec; 2.25*[0,1] + 2*[0.6,0.8] + [1,1]
RECONSTRUCTIONS = torch.tensor([[1.8, 1.9], [1.0, 1.0], [2.2, 4.85]], dtype=torch.float64)


def test_encode_keeps_the_top_k_of_the_relu_preactivations():
    sae = hand_sae()
    assert torch.allclose(sae.preacts(X), torch.tensor(
        [[2.0, 1.25, -1.0, 1.5], [0.0, -0.75, -1.0, -0.5], [0.0, 2.25, 2.0, -3.5]], dtype=torch.float64))
    assert torch.equal(sae.encode(X), CODES)


def test_decode_and_the_sparse_paths_agree_with_the_hand_case():
    sae = hand_sae()
    assert torch.allclose(sae.decode(CODES), RECONSTRUCTIONS, atol=1e-12)
    values, indices = sae.encode_topk(X)
    assert torch.allclose(sae.decode_topk(values, indices), RECONSTRUCTIONS, atol=1e-12)
    assert torch.allclose(sae(X), RECONSTRUCTIONS, atol=1e-12)
    assert sae(X.reshape(3, 1, 2)).shape == (3, 1, 2)  # leading dimensions are kept


def test_initialised_sae_has_unit_decoder_rows_and_a_tied_encoder():
    sae = TopKSAE.initialised(6, 20, 3, seed=1)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(20))
    assert torch.equal(sae.W_enc, sae.W_dec.t())
    assert torch.equal(TopKSAE.initialised(6, 20, 3, seed=1).W_dec, sae.W_dec)
    with pytest.raises(NeurosearchError):
        TopKSAE(6, 4, 5)


def saved(tmp_path, sae=None):
    sae = sae or TopKSAE.initialised(6, 20, 3, seed=2)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    sae.info = SAEInfo(model_name="tiny", hook_name="encoder.layer.1.intermediate", site="ffn", layer=1,
                       context_size=16, dataset_path="docs.txt", training_tokens=100, heldout_tokens=10,
                       fvu=0.25, dead_share=0.05, train_seconds=1.5, training={"steps": 3})
    return sae, sae.save(tmp_path / "sae")


def test_save_writes_the_saelens_layout_and_loads_back(tmp_path):
    sae, directory = saved(tmp_path)
    assert sorted(p.name for p in directory.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    tensors = load_file(str(directory / "sae_weights.safetensors"))
    assert {name: list(t.shape) for name, t in tensors.items()} == {
        "W_enc": [6, 20], "W_dec": [20, 6], "b_enc": [20], "b_dec": [6]}
    cfg = json.loads((directory / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"], cfg["k"]) == ("topk", 6, 20, 3)
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["model_name"] == "tiny" and cfg["metadata"]["hook_name"] == "encoder.layer.1.intermediate"
    assert cfg["neurosearch"]["layer"] == 1 and cfg["neurosearch"]["fvu"] == 0.25
    loaded = load_sae(directory)
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert torch.equal(getattr(loaded, name), getattr(sae, name))
    assert loaded.info == sae.info
    x = torch.randn(5, 6)
    assert torch.equal(loaded(x), sae(x).detach())


def test_loading_refuses_tensors_that_disagree_with_cfg_json(tmp_path):
    _, directory = saved(tmp_path)
    cfg = json.loads((directory / "cfg.json").read_text())
    (directory / "cfg.json").write_text(json.dumps({**cfg, "d_in": 7}))
    with pytest.raises(SAEFileError) as error:
        load_sae(directory)
    message = str(error.value)
    assert "cfg.json" in message and "W_enc is [6, 20], cfg.json says [7, 20]" in message
    assert "W_dec" in message and "b_dec" in message and "\n" not in message  # every problem, one line


def test_loading_refuses_other_architectures_and_missing_files(tmp_path):
    _, directory = saved(tmp_path)
    cfg = json.loads((directory / "cfg.json").read_text())
    (directory / "cfg.json").write_text(json.dumps({**cfg, "architecture": "jumprelu"}))
    with pytest.raises(SAEFileError, match="jumprelu"):
        load_sae(directory)
    (directory / "cfg.json").write_text(json.dumps({**cfg, "rescale_acts_by_decoder_norm": True}))
    with pytest.raises(SAEFileError, match="rescale_acts_by_decoder_norm"):
        load_sae(directory)
    (directory / "cfg.json").write_text(json.dumps(cfg))
    (directory / "sae_weights.safetensors").unlink()
    with pytest.raises(SAEFileError, match="no sae_weights.safetensors"):
        load_sae(directory)
    with pytest.raises(SAEFileError, match="cfg.json not found"):
        load_sae(tmp_path / "elsewhere")


def test_a_saelens_style_config_without_our_fields_loads(tmp_path):
    """Only SAELens's own fields (and its metadata keys): the info is what SAELens records."""
    sae, directory = saved(tmp_path)
    cfg = json.loads((directory / "cfg.json").read_text())
    del cfg["neurosearch"]
    cfg["metadata"]["sae_lens_version"] = "6.0.0"
    (directory / "cfg.json").write_text(json.dumps(cfg))
    loaded = load_sae(directory)
    assert loaded.info == SAEInfo(model_name="tiny", hook_name="encoder.layer.1.intermediate", context_size=16,
                                  dataset_path="docs.txt")


def test_feature_stats_round_trip(tmp_path):
    stats = FeatureStats(torch.tensor([0.5, 0.0]), torch.tensor([0.25, 0.0]))
    stats.save(tmp_path)
    back = FeatureStats.load(tmp_path)
    assert torch.equal(back.mean_activation, stats.mean_activation) and torch.equal(back.frequency, stats.frequency)
    with pytest.raises(SAEFileError):
        FeatureStats.load(tmp_path / "none")
