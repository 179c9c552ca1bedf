"""Readouts: what an ablation is measured by.

* ``mlm`` -- the paper's: every occurrence of a target token is masked (and as many other tokens of
  the same sentences, the *control*); the statistic is the % change of the masked-LM loss on the
  masked targets. The model's own head where it has one, the index's fitted head otherwise.
* ``mlm-context`` -- the target tokens stay visible; the tokens right next to them are masked and
  scored (a concept's neurons fire on the visible word, not on ``[MASK]``); same statistic.
* ``embedding`` -- the model's own sentence embedding (its sentence-transformers pooling): the mean
  L2 displacement of target sentences' embeddings under ablation divided by that of length-matched
  control sentences without any target token. A ratio: 1 means "moves everything alike".

Each readout turns sentences into batches once, runs one forward per condition group (the engine
in ``ablation.py`` decides which blocks run), and accumulates per-condition sums; ``statistics``
gives one number per condition, larger = a stronger, more specific effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurosearch.errors import NeurosearchError
from neurosearch.format.results import EmbeddingMeasures, MaskedLMMeasures, Measures

READOUTS = ("mlm", "mlm-context", "embedding")


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    """Masked-LM readouts: original ids at scored positions, -100 elsewhere."""
    is_target: torch.Tensor
    """Masked-LM: per scored position (row-major), True for the readout's positions, False for controls.
    Embedding: per row, True for target sentences, False for control sentences."""


class OwnHeadMaskedLM(nn.Module):
    """A masked-LM model's own head, applied only at masked positions (same API as HeadedMaskedLM)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        if hasattr(model, "cls"):
            self.head: Callable[[torch.Tensor], torch.Tensor] = model.cls
        elif hasattr(model, "lm_head"):
            self.head = model.lm_head
        elif hasattr(model, "vocab_projector"):
            self.head = lambda h: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))
        else:
            raise NeurosearchError(f"cannot find the MLM head of {type(model).__name__}")

    def token_losses(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        selected = labels != -100
        return F.cross_entropy(self.head(hidden[selected]).float(), labels[selected], reduction="none")


def _frame(tokenizer: Any, sentences: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] sentence [SEP], padded: (input_ids, attention_mask)."""
    length = max(len(s) for s in sentences) + 2
    input_ids = torch.full((len(sentences), length), tokenizer.pad_token_id, dtype=torch.int64)
    attention = torch.zeros_like(input_ids)
    for row, ids in enumerate(sentences):
        full = [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]
        input_ids[row, : len(full)] = torch.tensor(full)
        attention[row, : len(full)] = 1
    return input_ids, attention


def mask_sentences(tokenizer: Any, sentences: list[list[int]], target_ids: set[int], rng: np.random.Generator,
                   *, context: bool = False) -> Batch:
    """Mask the scored positions and as many random other tokens of the same sentences (controls).

    Scored: every target occurrence, or with ``context`` the non-target tokens right before and
    after each occurrence (the targets stay visible).
    """
    input_ids, attention = _frame(tokenizer, sentences)
    labels = torch.full_like(input_ids, -100)
    kind = torch.zeros_like(input_ids, dtype=torch.bool)
    for row, ids in enumerate(sentences):
        hits = [p for p, t in enumerate(ids) if t in target_ids]
        if context:
            near = {q for p in hits for q in (p - 1, p + 1) if 0 <= q < len(ids) and ids[q] not in target_ids}
            scored = sorted(near)
            others = [p for p in range(len(ids)) if p not in near and ids[p] not in target_ids]
        else:
            scored = hits
            others = [p for p, t in enumerate(ids) if t not in target_ids]
        controls = rng.choice(others, size=min(len(scored), len(others)), replace=False).tolist() if others else []
        for position in scored + controls:
            labels[row, position + 1] = input_ids[row, position + 1]
            input_ids[row, position + 1] = tokenizer.mask_token_id
        for position in scored:
            kind[row, position + 1] = True
    return Batch(input_ids, attention, labels, kind[labels != -100])


def _pct(new: float, old: float) -> float:
    return 100.0 * (new - old) / old if old else 0.0


class MaskedLMReadout:
    """% change of the masked-LM loss on the scored positions (``mlm`` or ``mlm-context``)."""

    def __init__(self, name: str, scorer: nn.Module, head: str):
        self.name = name
        self.scorer = scorer
        self.head = head
        self.context = name == "mlm-context"

    def batches(self, tokenizer: Any, sentences: list[list[int]], controls: list[list[int]], target_ids: set[int],
                rng: np.random.Generator, batch_size: int) -> list[Batch]:
        del controls  # controls are masked tokens of the same sentences
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        rows = [sentences[i] for i in order]
        return [mask_sentences(tokenizer, rows[i : i + batch_size], target_ids, rng, context=self.context)
                for i in range(0, len(rows), batch_size)]

    def start(self, conditions: int) -> None:
        self.scored = np.zeros(conditions)
        self.control = np.zeros(conditions)
        self.n_scored = self.n_control = 0

    def forward(self, batch: Batch, repeat: int) -> torch.Tensor:
        assert batch.labels is not None
        losses = self.scorer.token_losses(batch.input_ids.repeat(repeat, 1), batch.attention_mask.repeat(repeat, 1),
                                          batch.labels.repeat(repeat, 1))
        return losses.view(repeat, -1)

    def consume(self, condition: int, output: torch.Tensor, clean: torch.Tensor, batch: Batch) -> None:
        del clean
        self.scored[condition] += float(output[batch.is_target].sum())
        self.control[condition] += float(output[~batch.is_target].sum())
        if condition == 0:
            self.n_scored += int(batch.is_target.sum())
            self.n_control += int((~batch.is_target).sum())

    def statistics(self) -> np.ndarray:
        return np.array([_pct(s, self.scored[0]) for s in self.scored])

    def measures(self, condition: int) -> Measures:
        if self.n_scored == 0:
            what = "tokens next to a target" if self.context else "target tokens"
            raise NeurosearchError(f"the {self.name} readout found no {what} to score in the sentences")
        return MaskedLMMeasures(head=self.head, loss=self.scored[0] / self.n_scored,
                                loss_ablated=self.scored[condition] / self.n_scored, scored_tokens=self.n_scored,
                                control_tokens=self.n_control,
                                control_change_pct=_pct(self.control[condition], self.control[0]))


def windows(sentences: list[list[int]], controls: list[list[int]], target_ids: set[int], window: int,
            rng: np.random.Generator) -> tuple[list[list[int]], list[list[int]]]:
    """Cut each target sentence to ``window`` pieces centred on its first target token, and its
    matched control (same index) to the same length at a random offset; 0 keeps them whole."""
    if window <= 0:
        return sentences, controls
    cut_targets, cut_controls = [], []
    for i, ids in enumerate(sentences):
        first = next((p for p, t in enumerate(ids) if t in target_ids), 0)
        start = min(max(first - window // 2, 0), max(len(ids) - window, 0))
        cut = ids[start : start + window]
        cut_targets.append(cut)
        if i < len(controls):
            other = controls[i]
            offset = int(rng.integers(0, max(len(other) - len(cut), 0) + 1))
            cut_controls.append(other[offset : offset + len(cut)])
    return cut_targets, cut_controls


class EmbeddingReadout:
    """Sentence-embedding displacement on target sentences over that on length-matched controls."""

    name = "embedding"

    def __init__(self, encoder: nn.Module, pooling: Any, window: int = 0):
        self.encoder = encoder
        self.pooling = pooling
        self.window = window

    def batches(self, tokenizer: Any, sentences: list[list[int]], controls: list[list[int]], target_ids: set[int],
                rng: np.random.Generator, batch_size: int) -> list[Batch]:
        if not controls:
            raise NeurosearchError("the embedding readout found no control sentences without the target tokens")
        sentences, controls = windows(sentences, controls, target_ids, self.window, rng)
        rows = [(s, True) for s in sentences] + [(s, False) for s in controls]
        rows.sort(key=lambda r: len(r[0]))  # targets and their matched controls share batches
        out = []
        for i in range(0, len(rows), batch_size):
            part = rows[i : i + batch_size]
            ids, attention = _frame(tokenizer, [s for s, _ in part])
            out.append(Batch(ids, attention, None, torch.tensor([t for _, t in part])))
        return out

    def start(self, conditions: int) -> None:
        self.target = np.zeros(conditions)
        self.control = np.zeros(conditions)
        self.n_target = self.n_control = 0

    def forward(self, batch: Batch, repeat: int) -> torch.Tensor:
        mask = batch.attention_mask.repeat(repeat, 1)
        hidden = self.encoder(input_ids=batch.input_ids.repeat(repeat, 1), attention_mask=mask).last_hidden_state
        return self.pooling(hidden, mask).view(repeat, batch.input_ids.shape[0], -1)

    def consume(self, condition: int, output: torch.Tensor, clean: torch.Tensor, batch: Batch) -> None:
        moved = (output - clean).norm(dim=-1).double()
        self.target[condition] += float(moved[batch.is_target].sum())
        self.control[condition] += float(moved[~batch.is_target].sum())
        if condition == 0:
            self.n_target += int(batch.is_target.sum())
            self.n_control += int((~batch.is_target).sum())

    def statistics(self) -> np.ndarray:
        target = self.target / max(self.n_target, 1)
        control = self.control / max(self.n_control, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(control > 0, target / np.where(control > 0, control, 1), np.nan)
        return ratio

    def measures(self, condition: int) -> Measures:
        return EmbeddingMeasures(pooling=self.pooling.describe(),
                                 displacement_target=self.target[condition] / max(self.n_target, 1),
                                 displacement_control=self.control[condition] / max(self.n_control, 1),
                                 control_sentences=self.n_control)
