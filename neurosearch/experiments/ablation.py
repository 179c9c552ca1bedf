"""Causal verification: a target's neurons ablated, measured by a readout, against random baselines.

For a target (a cluster, a neuron list, or a query's top cluster) take corpus sentences that
contain its target tokens (``targets.py``, ``sentences.py``), run them clean and with each condition's neurons
ablated -- the target and ``draws`` random sets of each baseline kind (``baselines.py``) -- and
read the effect out (``readouts.py``). The result (``results.py``) carries one verdict per readout.

Ablations (forward hooks on the site): ``mean`` replaces a neuron's activation by its corpus mean
(standard mean ablation), ``layer-mean`` by the mean over its layer's neurons at the same token
(the paper's code), ``zero`` by 0.

Every condition reuses the same tokenised batches. The clean pass of a batch records every block's
input, and each ablated pass starts at the first block that holds an ablated neuron from those
inputs (:class:`~neurosearch.model.loading.StartAtBlock`): the blocks before it would recompute the
clean pass exactly. On CUDA the conditions of a batch run stacked in one forward pass (the batch
repeated once per condition, the hooks ablating each condition's neurons in its own rows); on a
CPU one pass per condition measured faster, so that is the default there.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from neurosearch.config import ABLATIONS, BASELINES, Ablation, Baseline, check_choices, check_float, check_int
from neurosearch.errors import ConfigError, NeurosearchError
from neurosearch.experiments.baselines import baseline_sets, compare
from neurosearch.experiments.readouts import READOUTS
from neurosearch.format.results import AblationResult, ReadoutResult, TargetRecord
from neurosearch.verdicts import verdict
from neurosearch.experiments.sentences import SentencePool
from neurosearch.experiments.targets import AblationTarget
from neurosearch.model.loading import LayerInputs, NeuronHooks, NeuronSite, StartAtBlock


@dataclass(frozen=True)
class AblationConfig:
    """How a target is tested."""

    readouts: tuple[str, ...] = ("auto",)
    """``auto`` (``mlm`` for a model with its own MLM head, else ``embedding`` for a sentence
    encoder), ``mlm``, ``mlm-context`` or ``embedding``; several run on the same sentences and
    draws, and the first gives the verdict."""
    ablation: Ablation = "mean"
    """``mean`` (corpus mean of each neuron), ``layer-mean`` (paper's code) or ``zero``."""
    sentences: int = 64
    """Target sentences (stratified over the target tokens); ``embedding`` adds as many controls."""
    top_tokens: int = 10
    """A cluster's or neuron's target tokens: its first content tokens (a query's: its members)."""
    draws: int = 20
    """Draws of each random baseline (a verdict at level 0.05 needs >= 20)."""
    level: float = 0.05
    """A target beats a baseline when its t prediction p and rank p are both below this."""
    baselines: tuple[Baseline, ...] = BASELINES
    max_tokens: int = 40
    """Sentences are cut to this many word pieces (with [CLS]/[SEP])."""
    window: int = 12
    """``embedding``: each target sentence is cut to this many pieces around its first target token
    (its control to the same length; the target's share of the mean-pooled embedding grows as the
    window shrinks, and so does the cost saved); 0 keeps whole sentences."""
    batch_sentences: int = 128
    """Sentences per forward batch (each repeated once per stacked condition)."""
    conditions_per_pass: int = 0
    """Conditions stacked into one forward pass; 0 = automatic: 8 on CUDA, 1 on CPU."""
    seed: int = 0
    """Seeds sentence sampling, control choice and (with the target's identity) the baseline draws."""

    def __post_init__(self) -> None:
        check_choices(self)
        bad = [r for r in self.readouts if r not in ("auto", *READOUTS)]
        if bad or not self.readouts or len(set(self.readouts)) != len(self.readouts):
            raise ConfigError(f"readouts must be distinct, from auto, {', '.join(READOUTS)}; got "
                              f"{','.join(map(str, self.readouts))!r}", option="readouts")
        for name, minimum in (("sentences", 1), ("draws", 2), ("top_tokens", 1), ("max_tokens", 8), ("window", 0),
                              ("batch_sentences", 1), ("conditions_per_pass", 0), ("seed", 0)):
            check_int(name, getattr(self, name), minimum)
        check_float("level", self.level, 0.0, maximum=0.5)


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
            assert self.means is not None
            replacement = self.means[layer].to(x.dtype).view(1, 1, 1, -1)
        elif self.ablation == "layer-mean":
            replacement = view.mean(dim=-1, keepdim=True)
        else:
            replacement = torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.where(mask.view(conditions, 1, 1, -1).to(x.device), replacement, view).view_as(x)


class FeatureAblator:
    """Per-condition SAE feature sets ablated inside the hook of a site of SAE features, with
    :func:`neurosearch.sae.ablation.ablate`: the features' contribution to the module's output is
    replaced (``mean``: by their corpus mean, the index's ``neurons/mean.npy``; ``zero``: removed)
    and the SAE's error term and the other features stay; a condition without features is left
    untouched bit for bit. Hooked with ``NeuronHooks(..., raw=True)``: it gets the module's output.
    """

    def __init__(self, site: NeuronSite, ablation: str, means: np.ndarray | None):
        if ablation not in ("mean", "zero"):
            raise ConfigError(f"ablation '{ablation}' is not defined for SAE features: use mean or zero", option="ablation")
        if ablation == "mean" and means is None:
            raise NeurosearchError("mean ablation needs the features' corpus means (neurons/mean.npy)")
        self.site = site
        self.ablation = ablation
        self.means = None if means is None else torch.as_tensor(np.asarray(means), dtype=torch.float32)
        self.sets: list[torch.Tensor] = []

    def set_conditions(self, neuron_sets: Sequence[np.ndarray]) -> None:
        self.sets = [torch.as_tensor(np.asarray(features, dtype=np.int64)) for features in neuron_sets]

    def __call__(self, layer: int, x: torch.Tensor) -> torch.Tensor | None:
        from neurosearch.sae.ablation import ablate

        if not any(features.numel() for features in self.sets):
            return None
        conditions = len(self.sets)
        rows = x.shape[0] // conditions
        view = x.view(conditions, rows, *x.shape[1:])
        sae = self.site.sae
        out = []
        with torch.autocast(x.device.type, enabled=False):
            for c, features in enumerate(self.sets):
                if features.numel() == 0:
                    out.append(view[c])
                    continue
                value = 0.0 if self.means is None or self.ablation == "zero" else self.means[features].to(x.device)
                out.append(ablate(sae, view[c].float(), features.to(x.device), value).to(x.dtype))
        return torch.stack(out).view_as(x)


def make_ablator(site: NeuronSite, ablation: str, means: np.ndarray | None) -> "ConditionAblator | FeatureAblator":
    """The ablator of a site: neuron masks, or SAE feature sets on a site of SAE features."""
    return FeatureAblator(site, ablation, means) if site.sae is not None else ConditionAblator(site, ablation, means)


def first_block(neurons: np.ndarray, site: NeuronSite) -> int:
    """The first block a pass must compute to ablate ``neurons`` (all blocks before it are clean)."""
    if neurons.size == 0:
        return 0
    layer = site.first_layer + int(neurons.min()) // site.neurons_per_layer
    # hidden site: layer 0 is the embedding output, layer l >= 1 the output of block l - 1
    return max(layer - 1, 0) if site.name == "hidden" else layer


def run_conditions(readout: Any, batches: Sequence[Any], sets: Sequence[np.ndarray],
                   ablator: "ConditionAblator | FeatureAblator",
                   site: NeuronSite, encoder: Any, *, per_pass: int, skip_clean_blocks: bool = True,
                   on_step: Callable[[], None] | None = None) -> None:
    """Feed every batch through every condition (``sets[0]`` is the clean one) into ``readout``."""
    starts = [first_block(np.asarray(s), site) for s in sets]
    recorder = LayerInputs(encoder) if skip_clean_blocks else None
    readout.start(len(sets))
    with NeuronHooks(site, ablator, raw=site.sae is not None), torch.inference_mode():
        for batch in batches:
            rows = batch.input_ids.shape[0]
            clean = None
            for start in range(0, len(sets), per_pass):
                group = list(sets[start : start + per_pass])
                ablator.set_conditions(group)
                first = min(starts[start : start + per_pass])
                if recorder is None:
                    output = readout.forward(batch, len(group))
                elif start == 0:  # the clean pass (always first): record every block's input
                    with recorder:
                        output = readout.forward(batch, len(group))
                else:
                    cached = recorder.inputs[first]
                    assert cached is not None
                    with StartAtBlock(encoder, first, cached[:rows].repeat(len(group), 1, 1)):
                        output = readout.forward(batch, len(group))
                if clean is None:
                    clean = output[0]
                for offset in range(len(group)):
                    readout.consume(start + offset, output[offset], clean, batch)
                if on_step is not None:
                    on_step()


def _words(identity: str) -> list[int]:
    return [int(identity[i : i + 8], 16) for i in range(0, 32, 8)]


def run_ablation(
    readouts: Sequence[Any],
    site: NeuronSite,
    tokenizer: Any,
    pool: SentencePool,
    target: AblationTarget,
    config: AblationConfig,
    *,
    means: np.ndarray | None,
    encoder: Any,
    skip_clean_blocks: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> AblationResult:
    """The target's effect and its baselines' in each readout, on the same sentences and draws."""
    started = time.time()
    width = site.neurons_per_layer
    identity = target.identity(site.unit_names)
    rng = np.random.default_rng([config.seed, 1, *_words(identity)])
    chosen, per_token = pool.select(target.token_ids, config.sentences, rng)
    if not chosen:
        raise NeurosearchError(f"no sentence of the corpus contains the target tokens of {target.kind} {target.id}")
    needs_controls = any(r.name == "embedding" for r in readouts)
    controls = pool.controls(chosen, target.token_ids, rng) if needs_controls else []
    notes = list(target.notes)
    if len(chosen) < config.sentences:
        notes.append(f"found {len(chosen)} sentences with the target tokens, fewer than the {config.sentences} asked")
    if needs_controls and len(controls) < len(chosen):
        notes.append(f"found {len(controls)} control sentences for {len(chosen)} target sentences")
    missing = [tok for tok, tid in zip(target.tokens, target.token_ids) if per_token.get(tid, 0) == 0]
    if missing:
        notes.append(f"no sentence contains: {', '.join(missing)}")
    neurons = np.asarray(target.neurons, dtype=np.int64)
    drawn = baseline_sets(neurons, identity, config.baselines, config.draws, config.seed, site.n_layers, width)
    sets = [np.zeros(0, dtype=np.int64), neurons, *[s for _, s in drawn]]
    per_pass = config.conditions_per_pass or (8 if next(encoder.parameters()).is_cuda else 1)
    ablator = make_ablator(site, config.ablation, means)
    sentences = [pool.sentence(n) for n in chosen]
    control_sentences = [pool.sentence(n) for n in controls]
    target_ids = set(int(t) for t in target.token_ids)
    prepared = [(r, r.batches(tokenizer, sentences, control_sentences, target_ids,
                              np.random.default_rng([config.seed, 2, *_words(identity)]), config.batch_sentences))
                for r in readouts]
    total = sum(len(b) for _, b in prepared) * math.ceil(len(sets) / per_pass)
    done = [0]

    def step() -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], total)

    results: dict[str, ReadoutResult] = {}
    for readout, batches in prepared:
        run_conditions(readout, batches, sets, ablator, site, encoder, per_pass=per_pass,
                       skip_clean_blocks=skip_clean_blocks, on_step=step)
        measures = readout.measures(1)
        stats = readout.statistics()
        value = float(stats[1])
        baselines = [compare(kind, value, [float(stats[2 + i]) for i, (k, _) in enumerate(drawn) if k == kind])
                     for kind in config.baselines]
        results[readout.name] = ReadoutResult(readout.name, value, {b.kind: b for b in baselines},
                                              verdict(readout.name, value, baselines, config.level), measures)
    names = target.names(site.unit_names)
    record = TargetRecord(target.kind, target.id, names, identity, list(target.tokens), target.token_source)
    vocab_of = dict(zip(target.token_ids, target.tokens))
    return AblationResult(
        target=record, ablation=config.ablation, seed=config.seed, draws=config.draws, level=config.level,
        sentences=len(chosen), sentences_asked=config.sentences,
        sentences_per_token={vocab_of.get(t, str(t)): n for t, n in per_token.items()}, readouts=results,
        notes=notes, seconds=round(time.time() - started, 2),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
