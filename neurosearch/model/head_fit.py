"""Fitting the masked-LM head of ``head.py`` on a frozen encoder, and ``neurosearch fit-head``.

The last documents are held out with one fixed seeded masking (:func:`heldout_set`), so losses
compare across runs: ``fit-head`` scores the stored head on the same held-out text as the new one
and keeps the better (a worse one replaces it only when forced).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from neurosearch.config import to_dict
from neurosearch.model.head import HeadConfig, HeadedMaskedLM, HeadError, MLMHead

if TYPE_CHECKING:
    from neurosearch.index.index import Index

HELDOUT_SEED = 1_000_003
"""Seeds the held-out masking independently of ``HeadConfig.seed``, so every run (and a run
resumed from a checkpoint with another seed) is scored on the same masked positions."""


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
class Heldout:
    """The held-out windows with one fixed masking: every head is scored on the same positions."""

    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    """(inputs, attention, labels) with the fixed masking."""

    @property
    def labels(self) -> torch.Tensor:
        """Every predicted token id, in order."""
        return torch.cat([labels[labels != -100] for _, _, labels in self.batches])


def heldout_set(tokenizer: Any, texts: Sequence[str], config: HeadConfig, vocab_size: int) -> Heldout:
    """The last ``config.heldout_docs`` texts, windowed and masked with ``HELDOUT_SEED``."""
    held = _windows(tokenizer, texts[len(texts) - config.heldout_docs:], config.window)
    if not held:
        raise HeadError("the held-out texts contain no tokens")
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    generator = torch.Generator().manual_seed(HELDOUT_SEED)
    batches = []
    for start in range(0, len(held), 64):
        ids, attn = _pad(held[start : start + 64], tokenizer.pad_token_id)
        maskable = attn.bool() & ~torch.isin(ids, special)
        inputs, labels = mask_tokens(ids, maskable, mask_token_id=tokenizer.mask_token_id, vocab_size=vocab_size,
                                     prob=config.mask_prob, generator=generator)
        batches.append((inputs, attn, labels))
    return Heldout(batches)


@torch.no_grad()
def evaluate_head(model: HeadedMaskedLM, heldout: Heldout) -> tuple[float, float]:
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
    if len(texts) <= config.heldout_docs:
        raise HeadError(f"need more than {config.heldout_docs} documents to fit a head (the last are held out), got {len(texts)}")
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
    if not train:
        raise HeadError("the training or held-out texts contain no tokens")
    heldout = heldout_set(tokenizer, texts, config, vocab)

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

    unigram_loss = float(-log_unigram[heldout.labels].mean())

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

    loss0, mask0 = evaluate_head(model, heldout)
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
            record = {"step": step, "epoch": step / per_epoch, "lr": lr, "done": min(1.0, progress(step)),
                      "train_loss": loss_value / n, "seconds": time.perf_counter() - started}
            if step % config.eval_every == 0 or finished:
                heldout_loss, mask_loss = evaluate_head(model, heldout)
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
            raise HeadError("no maskable tokens in the training texts")
    head.eval()
    return FitResult(
        head=head, curve=curve, heldout_loss=heldout_loss, unigram_loss=unigram_loss,
        seconds=time.perf_counter() - started, steps=step, config=config,
    )


# --------------------------------------------------------------------------------------------
# neurosearch fit-head: fit and store a head for an index's model


def fit_head_for_index(
    index: Index,
    *,
    corpus: str | None = None,
    epochs: float = 2.0,
    lr: float = 3e-3,
    max_docs: int | None = None,
    force: bool = False,
    reporter: Any = None,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Fit a head on the index's (frozen) model over a corpus and store it in ``out`` (default: the
    index's ``head/`` when the index is the user's own, else the user's state folder for it).

    Everything is checked before the model is loaded (the settings, the corpus, that the head's
    folder can be written, that the head it would replace can be read). That head (the one at the
    target, else the one ``ablate`` uses now) is scored on the new head's held-out text; when the
    new one is not better it is not stored (``HeadError``) unless ``force``. A head written into
    the index is listed in its manifest (sha256). ``meta["path"]`` says where it went and
    ``meta["replaced_heldout_loss"]`` what it replaced.
    """
    from neurosearch.corpus import read_documents
    from neurosearch.format.store import check_writable
    from neurosearch.index.contexts import index_corpus
    from neurosearch.format import layout
    from neurosearch.index.stored import record_in_manifest
    from neurosearch.model.head import has_head, load_head, read_head_meta, save_head
    from neurosearch.model.loading import load_index_model

    config = HeadConfig(epochs=epochs, lr=lr, schedule="cosine", warmup_steps=10)
    source = index_corpus(index, corpus, max_docs)
    target = Path(out) if out is not None else index.state.write_path(layout.HEAD_DIR)
    check_writable(target, "the fitted head")
    previous_dir = None
    if not force:
        previous_dir = target if has_head(target) else (index.head_dir if out is None else None)
        if previous_dir is not None:
            read_head_meta(previous_dir)
    # announced as a task, not a log line: fit-head's reporter is transient (its outcome is one line)
    loading = reporter.task(f"loading model {index.manifest.model.get('id')}", 1) if reporter else (lambda _n: None)
    loaded = load_index_model(index)
    loading(1)
    previous = load_head(previous_dir, loaded.encoder)[0] if previous_dir is not None else None
    texts = list(read_documents(source))
    config = replace(config, heldout_docs=min(500, max(1, len(texts) // 10)))
    advance = reporter.task("fitting MLM head (% done)", 100) if reporter else (lambda _n: None)
    shown = [0.0]

    def on_step(record: dict[str, float], _head: Any) -> None:
        advance(100 * record["done"] - shown[0])
        shown[0] = 100 * record["done"]

    result = fit_head(loaded.encoder, loaded.tokenizer, texts, config, on_step=on_step)
    meta = result.meta(loaded.model_id)
    if previous is not None:
        vocab = loaded.encoder.get_input_embeddings().weight.shape[0]
        heldout = heldout_set(loaded.tokenizer, texts, config, vocab)
        old_loss = evaluate_head(HeadedMaskedLM(loaded.encoder, previous), heldout)[0]
        if not result.heldout_loss < old_loss:
            raise HeadError(
                f"the new head's held-out masked loss {result.heldout_loss:.3f} is not better than that of the "
                f"head in {previous_dir} ({old_loss:.3f}) on the same text; that head was kept "
                "(pass force to replace it)", option="force")
        meta["replaced_heldout_loss"] = old_loss
    save_head(result.head, target, meta)
    if target.resolve() == (index.path / layout.HEAD_DIR).resolve():
        record_in_manifest(index.path, list(layout.HEAD_FILES))
    return {**meta, "path": str(target)}
