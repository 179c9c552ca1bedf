"""Causal verification: masked-LM loss on a target's tokens with its neurons ablated.

For a target (a cluster, a neuron list, or a query's top cluster): take sentences of the corpus that
contain its target tokens, mask every target occurrence -- and as many other tokens of the same
sentences as a *control* -- and compare the masked-LM loss with and without the neurons ablated.

Ablations (forward hooks on the site): ``mean`` replaces a neuron's activation by its corpus mean
(standard mean ablation), ``layer-mean`` by the mean over its layer's neurons at the same token
(the paper's code), ``zero`` by 0.

Baselines, each drawn ``seeds`` times, with the target's size: ``random`` (anywhere in the site),
``random_layer`` (the same count in each layer), ``random_position`` (the same layers, each distinct
index of the target mapped to a random other index, so neurons sharing an index across layers
still share one; the paper's code capped this at one neuron per layer, which we do not copy).
The z-score compares the target's % change with each baseline's draws; the p-value is the
one-sided t prediction test of a new observation against ``seeds`` draws (with 5 draws an
empirical rank p-value cannot go below 1/6, so it is reported beside it as ``p_empirical``).

The sentences are tokenised and masked once, and every condition reuses them. On CUDA the
conditions of a batch run stacked in one forward pass (the batch repeated once per condition, the
hooks ablating each condition's neurons in its own rows); on a CPU one pass per condition measured
faster, so that is the default there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurosearch.config import ABLATIONS, BASELINES, Ablation, Baseline, check_choices, check_int
from neurosearch.errors import NeurosearchError
from neurosearch.model.loading import LayerInputs, NeuronHooks, NeuronSite, StartAtBlock


@dataclass(frozen=True)
class AblationConfig:
    """How a target is tested (paper defaults: 96 sentences, top-30 tokens)."""

    ablation: Ablation = "mean"
    """``mean`` (corpus mean of each neuron), ``layer-mean`` (paper's code) or ``zero``."""
    sentences: int = 96
    """Evaluation sentences containing at least one target token."""
    top_tokens: int = 30
    """A cluster's target tokens: its top tokens."""
    seeds: int = 5
    """Draws of each random baseline."""
    baselines: tuple[Baseline, ...] = BASELINES
    max_tokens: int = 64
    """Sentences are cut to this many word pieces (with [CLS]/[SEP])."""
    batch_sentences: int = 32
    """Sentences per forward batch (each repeated once per condition)."""
    conditions_per_pass: int = 0
    """Conditions stacked into one forward pass; 0 = automatic: 8 on CUDA, 1 on CPU, where
    stacking measured slower (benchmarks/ablate.py: 16.2 s stacked vs 11.9 s one per pass)."""
    seed: int = 0
    """Seed of sentence sampling, control masking and baseline draws."""

    def __post_init__(self) -> None:
        check_choices(self)
        for name, minimum in (("sentences", 1), ("seeds", 2), ("top_tokens", 1), ("max_tokens", 3),
                              ("batch_sentences", 1), ("conditions_per_pass", 0)):
            check_int(name, getattr(self, name), minimum)


# -------------------------------------------------------------------------------------------
# Baselines


def _layers_and_indices(neurons: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    return neurons // width, neurons % width


def draw_baseline(kind: str, neurons: Sequence[int], n_layers: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random neuron set with the target's size and the structure ``kind`` requires."""
    target = np.asarray(sorted(set(int(n) for n in neurons)), dtype=np.int64)
    if target.size == 0:
        return target
    if kind == "random":
        return np.sort(rng.choice(n_layers * width, size=target.size, replace=False))
    layers, indices = _layers_and_indices(target, width)
    if kind == "random_layer":
        drawn = [layer * width + rng.choice(width, size=count, replace=False)
                 for layer, count in zip(*np.unique(layers, return_counts=True))]
        return np.sort(np.concatenate(drawn))
    if kind == "random_position":
        distinct = np.unique(indices)
        pool = np.setdiff1d(np.arange(width), distinct)
        if pool.size >= distinct.size:
            mapped = rng.choice(pool, size=distinct.size, replace=False)
        else:  # the target uses most indices: any other index, still one-to-one
            mapped = distinct.copy()
            while np.any(mapped == distinct):
                mapped = rng.permutation(width)[: distinct.size]
        mapping = dict(zip(distinct.tolist(), mapped.tolist()))
        return np.sort(layers * width + np.array([mapping[i] for i in indices.tolist()], dtype=np.int64))
    raise NeurosearchError(f"unknown baseline '{kind}' (choose from {', '.join(BASELINES)})")


# -------------------------------------------------------------------------------------------
# Evaluation sentences


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class SentencePool:
    """Corpus sentences as token ids, with an inverted index token -> sentences."""

    sentences: list[list[int]]
    postings: dict[int, list[int]]

    @classmethod
    def from_documents(cls, tokenizer: Any, documents: Sequence[str], max_tokens: int) -> "SentencePool":
        from neurosearch.corpus import plain_backend

        backend = plain_backend(tokenizer)
        texts = [s.strip() for document in documents for s in _SENTENCE.split(document) if len(s.strip()) > 10]
        sentences: list[list[int]] = []
        postings: dict[int, list[int]] = {}
        for encoding in backend.encode_batch(texts, add_special_tokens=False):
            ids = encoding.ids[: max_tokens - 2]
            if len(ids) < 4:
                continue
            number = len(sentences)
            sentences.append(ids)
            for token_id in set(ids):
                postings.setdefault(token_id, []).append(number)
        return cls(sentences, postings)

    def select(self, target_ids: Sequence[int], count: int, rng: np.random.Generator) -> list[int]:
        found = sorted({s for t in target_ids for s in self.postings.get(int(t), [])})
        if not found:
            return []
        if len(found) > count:
            found = sorted(rng.choice(found, size=count, replace=False).tolist())
        return found


@dataclass
class MaskedBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    """Original ids at masked positions, -100 elsewhere."""
    is_target: torch.Tensor
    """Per masked position (row-major order): True for target tokens, False for controls."""


def mask_sentences(
    tokenizer: Any, sentences: list[list[int]], target_ids: set[int], rng: np.random.Generator
) -> MaskedBatch:
    """Mask every target occurrence and as many random non-target tokens (controls)."""
    length = max(len(s) for s in sentences) + 2
    input_ids = torch.full((len(sentences), length), tokenizer.pad_token_id, dtype=torch.int64)
    attention = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    kind = torch.zeros_like(input_ids, dtype=torch.bool)
    for row, ids in enumerate(sentences):
        full = [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]
        input_ids[row, : len(full)] = torch.tensor(full)
        attention[row, : len(full)] = 1
        targets = [p + 1 for p, t in enumerate(ids) if t in target_ids]
        others = [p + 1 for p, t in enumerate(ids) if t not in target_ids]
        controls = rng.choice(others, size=min(len(targets), len(others)), replace=False).tolist() if others else []
        for position in targets + controls:
            labels[row, position] = input_ids[row, position]
            input_ids[row, position] = tokenizer.mask_token_id
        for position in targets:
            kind[row, position] = True
    selected = labels != -100
    return MaskedBatch(input_ids, attention, labels, kind[selected])


# -------------------------------------------------------------------------------------------
# Masked-LM scorers


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


# -------------------------------------------------------------------------------------------
# Ablation hooks


class ConditionAblator:
    """Per-condition neuron masks applied inside the site's forward hooks.

    The batch holds ``conditions`` copies of the same sentences; rows ``c*B:(c+1)*B`` belong to
    condition ``c``, whose neurons (flat indices) are replaced as the ablation prescribes.
    """

    def __init__(self, site: NeuronSite, ablation: str, means: np.ndarray | None):
        if ablation not in ABLATIONS:
            raise NeurosearchError(f"unknown ablation '{ablation}' (choose from {', '.join(ABLATIONS)})")
        if ablation == "mean" and means is None:
            raise NeurosearchError("mean ablation needs the neurons' corpus means (neurons/mean.npy)")
        self.site = site
        self.ablation = ablation
        width = site.neurons_per_layer
        self.means = None if means is None else torch.as_tensor(means, dtype=torch.float32).view(site.n_layers, width)
        self.masks: torch.Tensor | None = None  # [conditions, layers, width] bool

    def set_conditions(self, neuron_sets: Sequence[np.ndarray]) -> None:
        width = self.site.neurons_per_layer
        masks = torch.zeros((len(neuron_sets), self.site.n_layers, width), dtype=torch.bool)
        for c, neurons in enumerate(neuron_sets):
            flat = torch.as_tensor(np.asarray(neurons, dtype=np.int64))
            masks[c].view(-1)[flat] = True
        self.masks = masks

    def __call__(self, layer: int, x: torch.Tensor) -> torch.Tensor | None:
        assert self.masks is not None
        mask = self.masks[:, layer]  # [C, width]
        if not bool(mask.any()):
            return None
        conditions = mask.shape[0]
        rows = x.shape[0] // conditions
        view = x.view(conditions, rows, *x.shape[1:])
        if self.ablation == "mean":
            replacement = self.means[layer].to(x.dtype).view(1, 1, 1, -1)
        elif self.ablation == "layer-mean":
            replacement = view.mean(dim=-1, keepdim=True)
        else:
            replacement = torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.where(mask.view(conditions, 1, 1, -1).to(x.device), replacement, view).view_as(x)


# -------------------------------------------------------------------------------------------
# The experiment


@dataclass
class ConditionLosses:
    """Summed losses of one condition over target and control positions."""

    target_sum: float = 0.0
    control_sum: float = 0.0

    def add(self, losses: torch.Tensor, is_target: torch.Tensor) -> None:
        self.target_sum += float(losses[is_target].sum())
        self.control_sum += float(losses[~is_target].sum())


def _pct(new: float, old: float) -> float:
    return 100.0 * (new - old) / old if old else 0.0


def _first_block(neurons: np.ndarray, site: NeuronSite, width: int) -> int:
    """The first block a pass must compute to ablate ``neurons`` (all blocks before it are clean)."""
    if neurons.size == 0:
        return 0
    layer = int(neurons.min()) // width
    # hidden site: layer 0 is the embedding output, layer l >= 1 the output of block l - 1
    return max(layer - 1, 0) if site.name == "hidden" else layer


def prediction_p(value: float, draws: Sequence[float]) -> float:
    """One-sided p that a new draw from the draws' normal distribution is >= value (t prediction)."""
    draws = np.asarray(draws, dtype=np.float64)
    n = draws.size
    if n < 2:
        return float("nan")
    sd = draws.std(ddof=1)
    if sd == 0:
        return 0.0 if value > draws.mean() else 1.0
    t = (value - draws.mean()) / (sd * math.sqrt(1 + 1 / n))
    from scipy import stats

    return float(stats.t.sf(t, df=n - 1))


@dataclass
class AblationTarget:
    kind: str
    id: str
    neurons: list[int]
    token_ids: list[int]
    tokens: list[str] = field(default_factory=list)


def run_ablation(
    scorer: nn.Module,
    site: NeuronSite,
    tokenizer: Any,
    pool: SentencePool,
    target: AblationTarget,
    config: AblationConfig,
    *,
    means: np.ndarray | None,
    head: str,
    encoder: nn.Module | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Loss change of the target's ablation and of its random baselines; the JSON contract of ``ablate``.

    With ``encoder`` (the scorer's base model) given, each ablation pass starts at the first block
    that holds an ablated neuron, from the block inputs the clean pass recorded: identical losses,
    fewer blocks computed.
    """
    rng = np.random.default_rng(config.seed)
    chosen = pool.select(target.token_ids, config.sentences, rng)
    if not chosen:
        raise NeurosearchError(f"no sentence of the corpus contains the target tokens of {target.kind} {target.id}")
    chosen.sort(key=lambda n: len(pool.sentences[n]))  # batches of similar length: little padding
    width = site.neurons_per_layer
    neurons = np.asarray(sorted(set(target.neurons)), dtype=np.int64)
    sets: list[tuple[str, np.ndarray]] = [("clean", np.zeros(0, dtype=np.int64)), ("target", neurons)]
    for kind in config.baselines:
        draw_rng = np.random.default_rng([config.seed, BASELINES.index(kind) if kind in BASELINES else 9])
        for _ in range(config.seeds):
            sets.append((kind, draw_baseline(kind, neurons, site.n_layers, width, draw_rng)))
    losses = [ConditionLosses() for _ in sets]
    ablator = ConditionAblator(site, config.ablation, means)
    target_ids = set(int(t) for t in target.token_ids)
    mask_rng = np.random.default_rng(config.seed + 1)
    batches = [chosen[i : i + config.batch_sentences] for i in range(0, len(chosen), config.batch_sentences)]
    per_pass = config.conditions_per_pass or (8 if next(scorer.parameters()).is_cuda else 1)
    starts = [0] + [_first_block(s, site, width) for _, s in sets[1:]]
    masked_targets = masked_controls = 0
    total_steps = len(batches) * math.ceil(len(sets) / per_pass)
    step = 0
    recorder = LayerInputs(encoder) if encoder is not None else None
    with NeuronHooks(site, ablator), torch.inference_mode():
        for numbers in batches:
            batch = mask_sentences(tokenizer, [pool.sentences[n] for n in numbers], target_ids, mask_rng)
            masked_targets += int(batch.is_target.sum())
            masked_controls += int((~batch.is_target).sum())
            for start in range(0, len(sets), per_pass):
                group = sets[start : start + per_pass]
                ablator.set_conditions([s for _, s in group])
                repeat = len(group)
                arguments = (batch.input_ids.repeat(repeat, 1), batch.attention_mask.repeat(repeat, 1),
                             batch.labels.repeat(repeat, 1))
                first = min(starts[start : start + per_pass])
                if recorder is None:
                    token_losses = scorer.token_losses(*arguments)
                elif start == 0:  # the clean pass (always first): record every block's input
                    with recorder:
                        token_losses = scorer.token_losses(*arguments)
                else:
                    cached = recorder.inputs[first]
                    assert encoder is not None and cached is not None
                    clean_rows = cached[: batch.input_ids.shape[0]]  # the clean condition's rows
                    with StartAtBlock(encoder, first, clean_rows.repeat(repeat, 1, 1)):
                        token_losses = scorer.token_losses(*arguments)
                per_condition = token_losses.view(repeat, -1)
                for offset in range(repeat):
                    losses[start + offset].add(per_condition[offset], batch.is_target)
                step += 1
                if on_progress is not None:
                    on_progress(step, total_steps)
    if masked_targets == 0:
        raise NeurosearchError(f"the target tokens of {target.kind} {target.id} were not found in any sentence")
    clean = losses[0]
    loss = clean.target_sum / masked_targets
    loss_ablated = losses[1].target_sum / masked_targets
    change = _pct(loss_ablated, loss)
    control_change = _pct(losses[1].control_sum, clean.control_sum) if masked_controls else 0.0
    baselines: dict[str, Any] = {}
    for kind in config.baselines:
        draws = [_pct(l.target_sum / masked_targets, loss) for (name, _), l in zip(sets, losses) if name == kind]
        mean, sd = float(np.mean(draws)), float(np.std(draws, ddof=1)) if len(draws) > 1 else 0.0
        exceed = sum(d >= change for d in draws)
        baselines[kind] = {
            "mean_pct": mean,
            "std_pct": sd,
            "z": (change - mean) / sd if sd > 0 else float("inf") if change > mean else 0.0,
            "p": prediction_p(change, draws),
            "p_empirical": (1 + exceed) / (1 + len(draws)),
            "seeds": len(draws),
            "draws_pct": draws,
        }
    from neurosearch.ids import neuron_name

    return {
        "target": {"kind": target.kind, "id": target.id, "neurons": [neuron_name(n, width) for n in neurons]},
        "tokens": target.tokens,
        "ablation": config.ablation,
        "head": head,
        "sentences": len(chosen),
        "masked_tokens": masked_targets,
        "control_tokens": masked_controls,
        "loss": loss,
        "loss_ablated": loss_ablated,
        "change_pct": change,
        "control_change_pct": control_change,
        "baselines": baselines,
    }


# -------------------------------------------------------------------------------------------
# A session over one index: model, head and sentences loaded once, many targets


class AblationSession:
    """Loads the index's model, MLM head and evaluation sentences once; runs many targets."""

    def __init__(self, index: Any, config: AblationConfig, *, corpus: str | None = None,
                 max_docs: int | None = None):
        from neurosearch.index.contexts import index_corpus
        from neurosearch.corpus import read_documents
        from neurosearch.model.loading import load_index_model, neuron_site

        self.index = index
        self.config = config
        self.loaded = load_index_model(index, mlm=True)
        self.site = neuron_site(self.loaded.encoder, index.manifest.site)
        if self.loaded.has_mlm_head:
            self.scorer: nn.Module = OwnHeadMaskedLM(self.loaded.model)
            self.head = "model"
        else:
            from neurosearch.model.head import HeadedMaskedLM, load_head

            head_dir = index.head_dir  # the user's fitted head (state folder) or the index's
            if head_dir is None:
                raise NeurosearchError(
                    f"model {self.loaded.model_id} has no MLM head and the index has no fitted one: "
                    f"run `neurosearch fit-head --index {index.path}` first"
                )
            head, _ = load_head(head_dir, self.loaded.encoder)
            self.scorer = HeadedMaskedLM(self.loaded.encoder, head).eval()
            self.head = "fitted"
        self.means = index.npy("neurons/mean.npy")
        documents = list(read_documents(index_corpus(index, corpus, max_docs)))
        self.pool = SentencePool.from_documents(self.loaded.tokenizer, documents, config.max_tokens)
        self.vocab = self.loaded.tokenizer.get_vocab()

    def _token_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.vocab[t] for t in tokens if t in self.vocab]

    def cluster_target(self, cluster_id: str) -> AblationTarget:
        info = self.index.cluster(cluster_id)
        tokens = info.top_tokens[: self.config.top_tokens]
        neurons = [self.index.neuron_index(n) for n in info.neurons]
        return AblationTarget("cluster", info.key, neurons, self._token_ids(tokens), tokens)

    def neurons_target(self, names: Sequence[str], tokens: Sequence[str] | None = None) -> AblationTarget:
        neurons = [self.index.neuron_index(n) for n in names]
        if not neurons:
            raise NeurosearchError("no neurons given: `neurons` L:I,L:I", option="neurons")
        if not tokens:
            top_index, _ = self.index.method_top(self.index.search_method)
            counts: dict[int, int] = {}
            for n in neurons:
                for rank, t in enumerate(top_index[n][: self.config.top_tokens]):
                    counts[int(t)] = counts.get(int(t), 0) + (self.config.top_tokens - rank)
            best = sorted(counts, key=lambda t: -counts[t])[: self.config.top_tokens]
            tokens = [self.index.kept_tokens[t] for t in best]
        return AblationTarget("neurons", ",".join(self.index.neuron_name(n) for n in neurons), neurons,
                              self._token_ids(tokens), list(tokens))

    def query_target(self, query: str) -> AblationTarget:
        found = self.index.find(query, kind="clusters", top=1)
        if not found.results:
            raise NeurosearchError(f"no cluster matches '{query}'")
        target = self.cluster_target(found.results[0].id)
        target.kind = "cluster"
        return target

    def run(self, target: AblationTarget, on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        return run_ablation(self.scorer, self.site, self.loaded.tokenizer, self.pool, target, self.config,
                            means=self.means, head=self.head, encoder=self.loaded.encoder,
                            on_progress=on_progress)


def check_result_store(index: Any) -> None:
    """Before an ablation's work: every copy of its store can be read (never replaced when it cannot),
    and the folder the result goes to can be written."""
    from neurosearch.format.store import check_writable
    from neurosearch.index.stored import ABLATIONS, ablation_results

    ablation_results(index.state)
    check_writable(index.state.write_path(ABLATIONS).parent, "ablation results")


def store_result(index: Any, result: dict[str, Any]) -> Any:
    """Keep an ablation result (``ablations.json``) where ``show`` finds it: in the index when it is
    the user's own, else in the user's state folder (``index.state``). Returns the store's path."""
    from neurosearch.index.stored import store_ablation

    return store_ablation(index.state, result)
