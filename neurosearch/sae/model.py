"""A TopK sparse autoencoder, stored in the SAELens layout.

Parameters (SAELens names and shapes): ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec``
[d_sae, d_in] (one row per feature, of unit norm after training), ``b_dec`` [d_in].

* ``encode(x)``: the pre-activations ``(x - b_dec) @ W_enc + b_enc``, passed through ReLU, of which
  each row keeps its ``k`` largest and sets the others to zero;
* ``decode(a)``: ``a @ W_dec + b_dec``.

A directory holds ``sae_weights.safetensors`` (the four tensors) and ``cfg.json``: the SAELens
fields (``architecture`` ``"topk"``, ``d_in``, ``d_sae``, ``k``, ``apply_b_dec_to_input``,
``normalize_activations``, ``rescale_acts_by_decoder_norm``, ``metadata`` with ``model_name`` and
``hook_name``) and an object ``neurosearch`` with what SAELens does not record (site, layer,
training tokens, held-out FVU, dead share, training settings). SAELens ignores top-level keys it
does not know, so it can load these files, and this module loads SAELens's inference files of
the ``topk`` architecture. Training statistics of the features (mean activation, firing frequency)
go to ``feature_stats.safetensors`` beside them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurosearch.errors import NeurosearchError

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"
FEATURE_STATS_FILE = "feature_stats.safetensors"
ARCHITECTURE = "topk"
TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")


class SAEFileError(NeurosearchError):
    """An SAE directory is missing, unreadable, of another architecture, or its tensors disagree with cfg.json."""


@dataclass
class SAEInfo:
    """What an SAE was trained on and how well it reconstructs (cfg.json's ``metadata`` and ``neurosearch``)."""

    model_name: str = ""
    """The model whose activations it encodes (SAELens ``metadata.model_name``)."""
    hook_name: str = ""
    """The module whose output it encodes, e.g. ``encoder.layer.2.intermediate`` (``metadata.hook_name``)."""
    site: str = ""
    """The neuron site (``ffn`` or ``hidden``), when trained by neurosearch."""
    layer: int | None = None
    """The layer of the site."""
    context_size: int | None = None
    """Tokens per model window (``metadata.context_size``)."""
    dataset_path: str = ""
    """The corpus (``metadata.dataset_path``)."""
    training_tokens: int = 0
    """Activation rows in one epoch of training."""
    heldout_tokens: int = 0
    """Activation rows of the held-out documents the FVU is measured on."""
    fvu: float | None = None
    """Fraction of variance unexplained on the held-out rows: sum of squared errors over the sum of
    squared deviations from their mean."""
    dead_share: float | None = None
    """Share of features that fire on none of the training rows (final weights)."""
    train_seconds: float | None = None
    """Seconds of training (all runs of a resumed training together, evaluation not included)."""
    training: dict[str, Any] = field(default_factory=dict)
    """The training settings (``SAEConfig`` as a dict) and facts of the run."""

    METADATA_KEYS = ("model_name", "hook_name", "context_size", "dataset_path")
    """Fields written to SAELens's ``metadata``; the others go to ``neurosearch``."""

    def to_cfg(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(``metadata`` entries, ``neurosearch`` entries) of cfg.json."""
        data = asdict(self)
        metadata = {key: data.pop(key) for key in self.METADATA_KEYS}
        return metadata, data

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> "SAEInfo":
        """Read back from a cfg.json (unknown keys ignored, missing ones left at their defaults)."""
        names = {f.name for f in fields(cls)}
        metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        ours = cfg.get("neurosearch") if isinstance(cfg.get("neurosearch"), dict) else {}
        values = {k: v for k, v in {**metadata, **ours}.items() if k in names and v is not None}
        return cls(**values)


class TopKSAE(nn.Module):
    """A TopK sparse autoencoder: ``d_in`` activations <-> ``d_sae`` features, ``k`` active per row."""

    def __init__(self, d_in: int, d_sae: int, k: int, *, apply_b_dec_to_input: bool = True,
                 dtype: torch.dtype = torch.float32, info: SAEInfo | None = None):
        super().__init__()
        if not (0 < k <= d_sae and d_in > 0):
            raise NeurosearchError(f"a TopK SAE needs 0 < k <= d_sae and d_in > 0 (got d_in {d_in}, d_sae {d_sae}, k {k})")
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        self.apply_b_dec_to_input = apply_b_dec_to_input
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae, dtype=dtype))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=dtype))
        self.info = info if info is not None else SAEInfo()

    @classmethod
    def initialised(cls, d_in: int, d_sae: int, k: int, seed: int = 0) -> "TopKSAE":
        """Decoder rows of random directions (unit norm), the encoder their transpose, biases zero
        (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", section 2.4)."""
        sae = cls(d_in, d_sae, k)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=generator))
            sae.normalize_decoder()
            sae.W_enc.copy_(sae.W_dec.t())
        return sae

    # -- the map -------------------------------------------------------------------------------------
    def preacts(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - b_dec) @ W_enc + b_enc`` ([n, d_sae]; ``b_dec`` is subtracted when ``apply_b_dec_to_input``)."""
        inputs = x - self.b_dec if self.apply_b_dec_to_input else x
        return torch.addmm(self.b_enc, inputs.reshape(-1, self.d_in), self.W_enc).reshape(*x.shape[:-1], self.d_sae)

    def encode_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [n, k], feature indices [n, k]) of each row's ``k`` largest ReLU'd pre-activations,
        largest first (values may be 0 where fewer than ``k`` are positive)."""
        values, indices = torch.relu(self.preacts(x)).topk(self.k, dim=-1)
        return values, indices

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations [n, d_sae]: each row's top ``k`` of ``relu(preacts(x))``, zero elsewhere."""
        values, indices = self.encode_topk(x)
        return torch.zeros(*x.shape[:-1], self.d_sae, dtype=values.dtype, device=values.device).scatter_(-1, indices, values)

    def decode(self, a: torch.Tensor) -> torch.Tensor:
        """``a @ W_dec + b_dec``."""
        return a @ self.W_dec + self.b_dec

    def decode_topk(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """:meth:`decode` of the activations ``encode_topk`` returns, without making them dense."""
        flat = nn.functional.embedding_bag(indices.reshape(-1, indices.shape[-1]), self.W_dec,
                                           per_sample_weights=values.reshape(-1, values.shape[-1]), mode="sum")
        return flat.reshape(*values.shape[:-1], self.d_in) + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction ``decode(encode(x))``."""
        return self.decode_topk(*self.encode_topk(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Scale every decoder row to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).tiny))

    # -- files -----------------------------------------------------------------------------------------
    def cfg(self) -> dict[str, Any]:
        """cfg.json of this SAE (SAELens fields, then ``neurosearch``)."""
        metadata, ours = self.info.to_cfg()
        return {
            "architecture": ARCHITECTURE,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "k": self.k,
            "dtype": str(self.W_enc.dtype).removeprefix("torch."),
            "device": "cpu",
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "rescale_acts_by_decoder_norm": False,
            "metadata": metadata,
            "neurosearch": ours,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``sae_weights.safetensors`` then ``cfg.json`` (each atomically) into ``directory``."""
        from safetensors.torch import save_file

        from neurosearch.format.atomic import atomic_path, write_json_atomic

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {name: getattr(self, name).detach().cpu().contiguous() for name in TENSORS}
        with atomic_path(out / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp))
        write_json_atomic(out / CONFIG_FILE, _json_ready(self.cfg()))
        return out


def _json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def read_cfg(directory: str | Path) -> dict[str, Any]:
    """cfg.json of an SAE directory, or SAEFileError naming what is wrong."""
    from neurosearch.format.store import read_json_object

    return read_json_object(Path(directory) / CONFIG_FILE, SAEFileError, what="the SAE config",
                            missing=f"no SAE in {Path(directory)} ({CONFIG_FILE} not found)")


def load_sae(directory: str | Path, dtype: torch.dtype = torch.float32) -> TopKSAE:
    """Load an SAE directory in the SAELens layout (architecture ``topk``) as a :class:`TopKSAE`.

    Refused, with one SAEFileError that lists every problem: another architecture, settings this
    module does not implement (input normalisation, pre-activations rescaled by decoder norms),
    missing or extra tensors, or tensor shapes that disagree with cfg.json's d_in, d_sae.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(directory)
    cfg = read_cfg(root)
    architecture = cfg.get("architecture")
    if architecture != ARCHITECTURE:
        raise SAEFileError(f"the SAE in {root} is of architecture {architecture!r}; only {ARCHITECTURE!r} is supported")
    sizes = {key: cfg.get(key) for key in ("d_in", "d_sae", "k")}
    bad = [key for key, value in sizes.items() if not (isinstance(value, int) and not isinstance(value, bool) and value > 0)]
    if bad:
        raise SAEFileError(f"the SAE config {root / CONFIG_FILE} has no valid {', '.join(bad)} (whole numbers > 0)")
    d_in, d_sae, k = sizes["d_in"], sizes["d_sae"], sizes["k"]
    problems = []
    if k > d_sae:
        problems.append(f"k {k} > d_sae {d_sae}")
    if cfg.get("normalize_activations", "none") not in ("none", None):
        problems.append(f"normalize_activations {cfg['normalize_activations']!r} (only 'none')")
    if cfg.get("rescale_acts_by_decoder_norm"):
        problems.append("rescale_acts_by_decoder_norm (fold the decoder norms into the weights first)")
    if cfg.get("reshape_activations", "none") not in ("none", None):
        problems.append(f"reshape_activations {cfg['reshape_activations']!r} (only 'none')")
    try:
        tensors = load_file(str(root / WEIGHTS_FILE))
    except FileNotFoundError:
        raise SAEFileError(f"the SAE in {root} has no {WEIGHTS_FILE}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SAEFileError(f"the SAE weights {root / WEIGHTS_FILE} cannot be read ({exc})") from None
    expected = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    for name, shape in expected.items():
        if name not in tensors:
            problems.append(f"no tensor {name}")
        elif tuple(tensors[name].shape) != shape:
            problems.append(f"{name} is {list(tensors[name].shape)}, cfg.json says {list(shape)}")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        problems.append(f"unexpected tensors {', '.join(extra)}")
    if problems:
        raise SAEFileError(f"the SAE in {root} does not match its {CONFIG_FILE} (d_in {d_in}, d_sae {d_sae}, k {k}): "
                           + "; ".join(problems))
    sae = TopKSAE(d_in, d_sae, k, apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)), dtype=dtype,
                  info=SAEInfo.from_cfg(cfg))
    with torch.no_grad():
        for name in TENSORS:
            getattr(sae, name).copy_(tensors[name].to(dtype))
    sae.requires_grad_(False)
    return sae.eval()


@dataclass
class FeatureStats:
    """Per-feature statistics over the training rows (``feature_stats.safetensors``)."""

    mean_activation: torch.Tensor
    """float32 [d_sae]: mean activation over all rows (zeros included): the value of a mean ablation."""
    frequency: torch.Tensor
    """float32 [d_sae]: share of rows on which the feature fires (activation > 0)."""

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        from neurosearch.format.atomic import atomic_path

        with atomic_path(Path(directory) / FEATURE_STATS_FILE) as tmp:
            save_file({"mean_activation": self.mean_activation.float().contiguous(),
                       "frequency": self.frequency.float().contiguous()}, str(tmp))

    @classmethod
    def load(cls, directory: str | Path) -> "FeatureStats":
        from safetensors.torch import load_file

        path = Path(directory) / FEATURE_STATS_FILE
        try:
            tensors = load_file(str(path))
            return cls(tensors["mean_activation"], tensors["frequency"])
        except FileNotFoundError:
            raise SAEFileError(f"no feature statistics in {Path(directory)} ({FEATURE_STATS_FILE})") from None
        except (KeyError, OSError, ValueError, RuntimeError) as exc:
            raise SAEFileError(f"the feature statistics {path} cannot be read ({type(exc).__name__}: {exc})") from None
