"""A masked-LM head for encoders that ship without one.

Causal verification ablates neurons and measures masked-LM loss, so the encoder needs an MLM
head. Sentence-embedding models such as all-MiniLM-L6-v2 drop theirs, so we fit BERT's standard
head (dense + GELU + LayerNorm, decoder tied to the input word embeddings, per-token bias) on top
of the FROZEN encoder. The encoder's weights never change: any neuron statistics gathered on it
stay valid, and the head only reads out what the encoder already represents.

The sentence-tuned encoder no longer uses its own [MASK] input row (its masked-position states
carry little about the hidden word), so the head may also learn ``mask_vector``, a replacement
input embedding for [MASK]. Gradients flow through the frozen encoder to that one vector.
:class:`HeadedMaskedLM` feeds it in through ``inputs_embeds``, so BertEmbeddings still adds the
position and token-type embeddings and its LayerNorm, and forward hooks on ``embeddings``,
``encoder.layer[i]`` and ``encoder.layer[i].intermediate`` fire exactly as with ``input_ids``.

Heads are stored as ``head.safetensors`` (weights, without the tied decoder matrix) plus
``head.json`` (architecture and training record); nothing is pickled. Fitting is in ``head_fit.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from neurosearch.config import check_choices, check_float, check_int
from neurosearch.errors import NeurosearchError
from neurosearch.format import layout

Schedule = Literal["constant", "cosine"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)


class HeadError(NeurosearchError, ValueError):
    """A stored head that cannot be used (unreadable, another format, another encoder), or one not replaced."""


@dataclass(frozen=True)
class HeadConfig:
    """How the MLM head is fitted on a frozen encoder."""

    epochs: float = 3.0
    """Passes over the training windows (fractional values allowed)."""
    lr: float = 3e-3
    """AdamW learning rate; high because only the small head (and one vector) is trained."""
    batch_size: int = 32
    """Windows per optimisation step."""
    window: int = 128
    """Tokens per window including [CLS]/[SEP]; longer documents are split into consecutive
    windows, as in the statistics pass (MiniLM was trained at 128)."""
    mask_prob: float = 0.15
    """Fraction of ordinary tokens chosen for prediction; of those BERT's 80/10/10 rule puts
    [MASK] / a random token / the original token at the input."""
    heldout_docs: int = 500
    """The last documents, held out with one fixed seeded masking so losses compare across runs."""
    learn_mask_vector: bool = True
    """Learn the [MASK] input embedding jointly with the head (see module docstring)."""
    seed: int = 0
    """Seeds head init, shuffling and the training masking (not the held-out masking)."""
    max_steps: int | None = None
    """Stop after this many steps even if ``epochs`` are not done (None: no cap)."""
    eval_every: int = 100
    """Evaluate the held-out loss every this many steps (and at the start and end)."""
    schedule: Schedule = "constant"
    """Learning-rate shape after warmup: ``constant``, or ``cosine`` decaying to 0 at the end."""
    warmup_steps: int = 0
    """Linear warmup steps."""
    weight_decay: float = 0.0
    """AdamW weight decay (0: the head is small and the data plentiful)."""
    max_seconds: float | None = None
    """Wall-time budget (None: none). Training stops when it is spent, and the cosine schedule
    runs on whichever of steps and seconds is further along, so a budgeted run on a shared,
    unpredictable CPU still ends with a decayed learning rate."""

    def __post_init__(self) -> None:
        check_choices(self)
        check_float("epochs", self.epochs, 0.0)
        check_float("lr", self.lr, 0.0)
        check_float("mask_prob", self.mask_prob, 0.0, maximum=1.0)
        check_float("weight_decay", self.weight_decay, 0.0, inclusive=True)
        check_float("max_seconds", self.max_seconds, 0.0, optional=True)
        for name, minimum in (("batch_size", 1), ("window", 3), ("heldout_docs", 1), ("eval_every", 1),
                              ("warmup_steps", 0), ("seed", 0)):
            check_int(name, getattr(self, name), minimum)
        check_int("max_steps", self.max_steps, 1, optional=True)


# --------------------------------------------------------------------------------------------
# Modules


class MLMHead(nn.Module):
    """BERT's prediction head with the decoder tied to an encoder's frozen word embeddings.

    The decoder matrix is *the* ``nn.Embedding`` weight of the encoder (same storage), held by
    reference and not registered as a parameter, so it is neither trained nor saved here.
    """

    def __init__(
        self,
        word_embeddings: nn.Embedding,
        *,
        mask_token_id: int,
        layer_norm_eps: float = 1e-12,
        learn_mask_vector: bool = True,
    ) -> None:
        super().__init__()
        vocab, hidden = word_embeddings.weight.shape
        self.hidden_size = int(hidden)
        self.vocab_size = int(vocab)
        self.mask_token_id = int(mask_token_id)
        self.layer_norm_eps = float(layer_norm_eps)
        # A tuple keeps the embedding out of this module's parameters/state_dict.
        self._tied: tuple[nn.Embedding] = (word_embeddings,)
        self.dense = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.layer_norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.mask_vector: nn.Parameter | None = None
        if learn_mask_vector:
            start = word_embeddings.weight.detach()[self.mask_token_id].clone()
            self.mask_vector = nn.Parameter(start)
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    @property
    def decoder_weight(self) -> torch.Tensor:
        """The tied decoder matrix [V, H]: the encoder's input word embeddings."""
        return self._tied[0].weight

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        """dense -> GELU -> LayerNorm, the part of the head before the vocabulary projection."""
        return self.layer_norm(self.act(self.dense(hidden)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits [..., V] for hidden states [..., H]."""
        return F.linear(self.transform(hidden), self.decoder_weight, self.bias)


class HeadedMaskedLM(nn.Module):
    """A (frozen) BERT encoder plus an :class:`MLMHead`; the unit that ablation runs on."""

    def __init__(self, encoder: nn.Module, head: MLMHead) -> None:
        super().__init__()
        if encoder.get_input_embeddings() is not head._tied[0]:
            raise ValueError("head is tied to a different embedding table than this encoder's")
        self.encoder = encoder
        self.head = head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states [B, T, H]; [MASK] positions get the head's learned mask vector."""
        embeds = self.encoder.get_input_embeddings()(input_ids)
        vector = self.head.mask_vector
        if vector is not None:
            is_mask = (input_ids == self.head.mask_token_id).unsqueeze(-1)
            embeds = torch.where(is_mask, vector.to(embeds.dtype), embeds)
        out = self.encoder(
            inputs_embeds=embeds, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return out.last_hidden_state

    def token_losses(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cross-entropy [n] at each position with ``labels != -100``, in row-major order.

        Logits are computed only at those positions (a full [B, T, V] tensor would dominate
        the cost); ``labels[labels != -100]`` gives the matching targets.
        """
        hidden = self(input_ids, attention_mask, token_type_ids)
        selected = labels != -100
        logits = self.head(hidden[selected])
        return F.cross_entropy(logits.float(), labels[selected], reduction="none")

    def masked_loss(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        """(summed cross-entropy, number of predicted positions); sums add across batches."""
        losses = self.token_losses(input_ids, attention_mask, labels, token_type_ids)
        return losses.sum(), int(losses.numel())


# --------------------------------------------------------------------------------------------
# Storage


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    from neurosearch.format.atomic import atomic_path

    with atomic_path(path) as tmp:
        write(str(tmp))


def save_head(head: MLMHead, directory: str | os.PathLike[str], meta: dict[str, Any]) -> Path:
    """Write ``head.safetensors`` and ``head.json`` atomically; returns the directory.

    The weights are written first and the JSON (which records their shapes) last, so a reader
    that finds a complete JSON also finds matching weights.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous().cpu() for k, v in head.state_dict().items()}
    _atomic_write(out / layout.HEAD_WEIGHTS_NAME, lambda p: save_file(state, p))
    from neurosearch.format.atomic import sha256_file

    record = dict(meta)
    record["weights_sha256"] = sha256_file(out / layout.HEAD_WEIGHTS_NAME)  # checked by `neurosearch verify`
    record["head"] = {
        "format": layout.HEAD_FORMAT,
        "hidden_size": head.hidden_size,
        "vocab_size": head.vocab_size,
        "mask_token_id": head.mask_token_id,
        "layer_norm_eps": head.layer_norm_eps,
        "mask_vector": head.mask_vector is not None,
        "activation": "gelu",
    }

    def write_json(path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)

    _atomic_write(out / layout.HEAD_META_NAME, write_json)
    return out


def read_head_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The training record ``head.json`` of a stored head; unreadable -> HeadError naming it."""
    from neurosearch.format.store import read_json_object

    return read_json_object(Path(directory) / layout.HEAD_META_NAME, HeadError, what="the head record",
                            missing=f"no fitted head in {Path(directory)}")


def has_head(directory: str | os.PathLike[str]) -> bool:
    return (Path(directory) / layout.HEAD_WEIGHTS_NAME).is_file() or (Path(directory) / layout.HEAD_META_NAME).is_file()


def load_head(
    directory: str | os.PathLike[str], encoder: nn.Module
) -> tuple[MLMHead, dict[str, Any]]:
    """Load a head saved by :func:`save_head`, tied to ``encoder``'s word embeddings."""
    root = Path(directory)
    meta = read_head_meta(root)
    arch = meta.get("head")
    if not isinstance(arch, dict) or arch.get("format") != layout.HEAD_FORMAT:
        raise HeadError(f"unsupported head format {arch.get('format') if isinstance(arch, dict) else None!r} in {root}")
    embeddings = encoder.get_input_embeddings()
    vocab, hidden = embeddings.weight.shape
    try:
        if (arch["vocab_size"], arch["hidden_size"]) != (vocab, hidden):
            raise HeadError(
                f"head is for vocab {arch['vocab_size']} x hidden {arch['hidden_size']}, "
                f"encoder has {vocab} x {hidden}"
            )
        head = MLMHead(
            embeddings,
            mask_token_id=int(arch["mask_token_id"]),
            layer_norm_eps=float(arch["layer_norm_eps"]),
            learn_mask_vector=bool(arch["mask_vector"]),
        )
        state = load_file(str(root / layout.HEAD_WEIGHTS_NAME))
        dtype = embeddings.weight.dtype
        head.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    except HeadError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:  # safetensors raises several kinds
        raise HeadError(f"the head in {root} cannot be loaded ({type(exc).__name__}: {exc}); fit it again") from None
    head.to(embeddings.weight.device)
    head.eval()
    return head, meta
