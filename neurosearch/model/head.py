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
``head.json`` (architecture and training record); nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from neurosearch.config import to_dict
from neurosearch.index.stored import HEAD_FORMAT
from neurosearch.index.stored import HEAD_META as META_FILE
from neurosearch.index.stored import HEAD_WEIGHTS as WEIGHTS_FILE

SCHEDULES = ("constant", "cosine")
HELDOUT_SEED = 1_000_003
"""Seeds the held-out masking independently of ``HeadConfig.seed``, so every run (and a run
resumed from a checkpoint with another seed) is scored on the same masked positions."""


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
    schedule: str = "constant"
    """Learning-rate shape after warmup: ``constant``, or ``cosine`` decaying to 0 at the end."""
    warmup_steps: int = 0
    """Linear warmup steps."""
    weight_decay: float = 0.0
    """AdamW weight decay (0: the head is small and the data plentiful)."""
    max_seconds: float | None = None
    """Wall-time budget (None: none). Training stops when it is spent, and the cosine schedule
    runs on whichever of steps and seconds is further along, so a budgeted run on a shared,
    unpredictable CPU still ends with a decayed learning rate."""


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
# Data


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    prob: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: (model inputs, labels with -100 where nothing is predicted).

    Each ``maskable`` position is chosen with ``prob``; a chosen input becomes [MASK] (80%),
    a uniformly random token (10%) or stays (10%).
    """
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & maskable
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    kind = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    masks = torch.full_like(input_ids, mask_token_id)
    inputs = torch.where(chosen & (kind < 0.8), masks, input_ids)
    inputs = torch.where(chosen & (kind >= 0.8) & (kind < 0.9), random_ids, inputs)
    return inputs, labels


def _windows(tokenizer: Any, texts: Sequence[str], window: int) -> list[list[int]]:
    """[CLS] piece [SEP] windows covering every token of every document, in document order."""
    if window < 3:
        raise ValueError("window must hold [CLS], [SEP] and at least one token")
    body = window - 2
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    out = []
    for ids in encoded:
        for start in range(0, len(ids), body):
            out.append([cls, *ids[start : start + body], sep])
    return out


def _pad(windows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(w) for w in windows)
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(windows), width), dtype=torch.long)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = torch.tensor(w)
        attn[i, : len(w)] = 1
    return ids, attn


def _batches(
    windows: Sequence[list[int]], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Shuffled batches of window indices, length-bucketed so padding stays small."""
    order = torch.randperm(len(windows), generator=generator).tolist()
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: len(windows[i]))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


# --------------------------------------------------------------------------------------------
# Fitting


@dataclass
class FitResult:
    """What :func:`fit_head` produced."""

    head: MLMHead
    curve: list[dict[str, float | None]]
    """One record per evaluation: step, epoch, train_loss (mean since the previous evaluation;
    None at step 0),
    heldout_loss (all predicted positions) and heldout_mask_loss ([MASK]-input positions only)."""
    heldout_loss: float
    unigram_loss: float
    """Held-out loss of predicting every masked token from training-split unigram frequencies."""
    seconds: float
    steps: int
    config: HeadConfig = field(default_factory=HeadConfig)

    def meta(self, model_id: str) -> dict[str, Any]:
        """JSON record for :func:`save_head`."""
        return {
            "model": model_id,
            "config": to_dict(self.config),
            "curve": self.curve,
            "heldout_loss": self.heldout_loss,
            "unigram_loss": self.unigram_loss,
            "steps": self.steps,
            "seconds": self.seconds,
        }


@dataclass
class _Heldout:
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    """(inputs, attention, labels) with the fixed masking."""


@torch.no_grad()
def _evaluate(model: HeadedMaskedLM, heldout: _Heldout) -> tuple[float, float]:
    """(mean loss over all predicted positions, mean over positions whose input is [MASK])."""
    total, n, mask_total, mask_n = 0.0, 0, 0.0, 0
    mask_id = model.head.mask_token_id
    for inputs, attn, labels in heldout.batches:
        losses = model.token_losses(inputs, attn, labels)
        is_mask = inputs[labels != -100] == mask_id
        total += float(losses.sum())
        n += losses.numel()
        mask_total += float(losses[is_mask].sum())
        mask_n += int(is_mask.sum())
    return total / max(n, 1), mask_total / max(mask_n, 1)


def fit_head(
    encoder: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    config: HeadConfig = HeadConfig(),
    *,
    head: MLMHead | None = None,
    on_step: Callable[[dict[str, float], MLMHead], None] | None = None,
) -> FitResult:
    """Fit an MLM head on ``encoder`` (frozen in place: eval mode, requires_grad False).

    The last ``config.heldout_docs`` texts are held out. ``head`` continues training an existing
    head (e.g. a checkpoint) instead of a fresh one; the schedule restarts. ``on_step(record,
    head)`` is called after every step with step, epoch, lr, train_loss, seconds, and
    heldout_loss / heldout_mask_loss on evaluation steps (use it to log and checkpoint).
    """
    if config.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}")
    if len(texts) <= config.heldout_docs:
        raise ValueError("need more texts than heldout_docs")
    started = time.perf_counter()
    encoder.eval()
    encoder.requires_grad_(False)
    embeddings = encoder.get_input_embeddings()
    vocab = embeddings.weight.shape[0]
    mask_id = tokenizer.mask_token_id
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    generator = torch.Generator().manual_seed(config.seed)

    split = len(texts) - config.heldout_docs
    train = _windows(tokenizer, texts[:split], config.window)
    held = _windows(tokenizer, texts[split:], config.window)
    if not train or not held:
        raise ValueError("the training or held-out texts contain no tokens")

    # Unigram baseline (add-one smoothed, specials excluded), also the decoder bias init.
    counts = torch.ones(vocab, dtype=torch.float64)
    flat = torch.tensor([t for w in train for t in w], dtype=torch.long)
    counts += torch.bincount(flat, minlength=vocab).double()
    counts[special] = 0.0
    log_unigram = (counts / counts.sum()).log()

    if head is None:
        head = MLMHead(
            embeddings,
            mask_token_id=mask_id,
            layer_norm_eps=getattr(getattr(encoder, "config", None), "layer_norm_eps", 1e-12),
            learn_mask_vector=config.learn_mask_vector,
        )
        with torch.no_grad():
            nn.init.normal_(head.dense.weight, std=0.02, generator=generator)
            # Starting at the unigram distribution skips the slow first phase of learning it.
            head.bias.copy_(log_unigram.clamp_min(-30.0).float())
    model = HeadedMaskedLM(encoder, head)

    held_gen = torch.Generator().manual_seed(HELDOUT_SEED)
    held_batches = []
    held_labels = []
    for start in range(0, len(held), 64):
        ids, attn = _pad(held[start : start + 64], tokenizer.pad_token_id)
        maskable = attn.bool() & ~torch.isin(ids, special)
        inputs, labels = mask_tokens(
            ids, maskable, mask_token_id=mask_id, vocab_size=vocab,
            prob=config.mask_prob, generator=held_gen,
        )
        held_batches.append((inputs, attn, labels))
        held_labels.append(labels[labels != -100])
    heldout = _Heldout(held_batches)
    unigram_loss = float(-log_unigram[torch.cat(held_labels)].mean())

    per_epoch = math.ceil(len(train) / config.batch_size)
    total = max(1, math.ceil(config.epochs * per_epoch))
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimiser = torch.optim.AdamW(
        [p for p in head.parameters() if p.requires_grad],
        lr=config.lr, weight_decay=config.weight_decay,
    )

    def progress(step: int) -> float:
        """Fraction of the run done: steps, or the time budget when that is further along."""
        done = step / total
        if config.max_seconds is not None:
            done = max(done, (time.perf_counter() - train_started) / config.max_seconds)
        return done

    def lr_at(step: int) -> float:  # step counts from 0
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        if config.schedule == "cosine":
            return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress(step))))
        return config.lr

    loss0, mask0 = _evaluate(model, heldout)
    curve = [{"step": 0, "epoch": 0.0, "train_loss": None,
              "heldout_loss": loss0, "heldout_mask_loss": mask0}]
    heldout_loss = loss0
    step, run_sum, run_n = 0, 0.0, 0
    train_started = time.perf_counter()
    head.train()
    finished = False
    while not finished:
        steps_before = step
        for batch in _batches(train, config.batch_size, generator):
            ids, attn = _pad([train[i] for i in batch], tokenizer.pad_token_id)
            maskable = attn.bool() & ~torch.isin(ids, special)
            inputs, labels = mask_tokens(
                ids, maskable, mask_token_id=mask_id, vocab_size=vocab,
                prob=config.mask_prob, generator=generator,
            )
            if not bool((labels != -100).any()):
                continue
            lr = lr_at(step)
            for group in optimiser.param_groups:
                group["lr"] = lr
            loss_sum, n = model.masked_loss(inputs, attn, labels)
            optimiser.zero_grad(set_to_none=True)
            (loss_sum / n).backward()
            optimiser.step()
            step += 1
            finished = progress(step) >= 1.0
            loss_value = loss_sum.item()
            run_sum += loss_value
            run_n += n
            record = {"step": step, "epoch": step / per_epoch, "lr": lr,
                      "train_loss": loss_value / n, "seconds": time.perf_counter() - started}
            if step % config.eval_every == 0 or finished:
                heldout_loss, mask_loss = _evaluate(model, heldout)
                curve.append({"step": step, "epoch": step / per_epoch,
                              "train_loss": run_sum / max(run_n, 1),
                              "heldout_loss": heldout_loss, "heldout_mask_loss": mask_loss})
                record.update(heldout_loss=heldout_loss, heldout_mask_loss=mask_loss)
                run_sum, run_n = 0.0, 0
            if on_step is not None:
                on_step(record, head)
            if finished:
                break
        if step == steps_before:
            raise ValueError("no maskable tokens in the training texts")
    head.eval()
    return FitResult(
        head=head, curve=curve, heldout_loss=heldout_loss, unigram_loss=unigram_loss,
        seconds=time.perf_counter() - started, steps=step, config=config,
    )


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
    _atomic_write(out / WEIGHTS_FILE, lambda p: save_file(state, p))
    from neurosearch.format.atomic import sha256_file

    record = dict(meta)
    record["weights_sha256"] = sha256_file(out / WEIGHTS_FILE)  # checked by `neurosearch verify`
    record["head"] = {
        "format": HEAD_FORMAT,
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

    _atomic_write(out / META_FILE, write_json)
    return out


def load_head(
    directory: str | os.PathLike[str], encoder: nn.Module
) -> tuple[MLMHead, dict[str, Any]]:
    """Load a head saved by :func:`save_head`, tied to ``encoder``'s word embeddings."""
    root = Path(directory)
    with open(root / META_FILE, encoding="utf-8") as f:
        meta = json.load(f)
    arch = meta.get("head", {})
    if arch.get("format") != HEAD_FORMAT:
        raise ValueError(f"unsupported head format {arch.get('format')!r} in {root}")
    embeddings = encoder.get_input_embeddings()
    vocab, hidden = embeddings.weight.shape
    if (arch["vocab_size"], arch["hidden_size"]) != (vocab, hidden):
        raise ValueError(
            f"head is for vocab {arch['vocab_size']} x hidden {arch['hidden_size']}, "
            f"encoder has {vocab} x {hidden}"
        )
    head = MLMHead(
        embeddings,
        mask_token_id=arch["mask_token_id"],
        layer_norm_eps=arch["layer_norm_eps"],
        learn_mask_vector=arch["mask_vector"],
    )
    state = load_file(str(root / WEIGHTS_FILE))
    dtype = embeddings.weight.dtype
    head.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    head.to(embeddings.weight.device)
    head.eval()
    return head, meta


# --------------------------------------------------------------------------------------------
# neurosearch fit-head: fit and store a head for an index's model


def fit_head_for_index(
    index: Any,
    *,
    corpus: str | None = None,
    epochs: float = 2.0,
    lr: float = 3e-3,
    max_docs: int | None = None,
    reporter: Any = None,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Fit a head on the index's (frozen) model over a corpus and store it in ``out`` (default: the
    index's ``head/`` when the index is the user's own, else the user's state folder for it).

    A head written into the index is listed in its manifest (sha256), like every other index file.
    ``meta["path"]`` says where it went.
    """
    from neurosearch.index.contexts import index_corpus
    from neurosearch.corpus import read_documents
    from neurosearch.model.loading import load_index_model

    loaded = load_index_model(index)
    texts = list(read_documents(index_corpus(index, corpus, max_docs)))
    config = HeadConfig(epochs=epochs, lr=lr, schedule="cosine", warmup_steps=10,
                        heldout_docs=min(500, max(1, len(texts) // 10)))
    advance = reporter.task("fitting MLM head (steps)", None) if reporter else (lambda _n: None)
    result = fit_head(loaded.encoder, loaded.tokenizer, texts, config, on_step=lambda record, head: advance(1))
    meta = result.meta(loaded.model_id)
    from neurosearch.index.stored import HEAD, HEAD_FILES, record_in_manifest

    target = Path(out) if out is not None else index.state.write_path(HEAD)
    save_head(result.head, target, meta)
    if target.resolve() == (index.path / HEAD).resolve():
        record_in_manifest(index.path, list(HEAD_FILES))
    return {**meta, "path": str(target)}
