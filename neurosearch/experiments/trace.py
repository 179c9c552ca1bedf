"""Trace a text through the indexed neurons: which units respond to each of its tokens.

``Tracer(index, loaded).trace(text)`` runs the index's model over the text, cut into the same
windows as the build's statistics pass (``[CLS]`` + ``window - 2`` word pieces + ``[SEP]``, same
autocast), reads every neuron of the index's site at every word piece, and z-scores each activation
against that neuron's corpus statistics::

    z = (activation - mean_n) / std_n

where ``mean_n`` and ``std_n`` (``neurons/mean.npy``, ``neurons/std.npy``) are the neuron's mean
and standard deviation over every counted token occurrence of the index's corpus (all word
pieces, ``[CLS]``/``[SEP]``/``[PAD]`` excluded; float64 sums, ``pipeline/stats.py``). A z of 3 means
"three standard deviations above what this neuron usually does on a corpus token". Neurons whose
corpus std is below ``TraceConfig.min_std`` (nearly constant: a tiny wobble would read as a huge
z) are left out of the rankings; they still have a value in ``trace_unit``.

A cluster's response at a token is the **mean z of its neurons** there (``top_neuron`` names the
member that responds most). Themes are the index's (``Index.neuron`` / ``Index.cluster``): the
LLM theme when one is stored, else the build's automatic label (source ``fallback``).

``Tracer.trace_unit(text, "2:1454")`` (a neuron) or ``"k200/84"`` (a cluster) is the reverse: the
text with that unit's activation and z at every word piece.

The ``--json`` contract of ``neurosearch trace`` is ``TraceResult.to_json`` / ``UnitTrace.to_json``
(documented there and in docs/guide/trace.md). This module needs torch (it runs the model); nothing on
``find``'s path imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from neurosearch.errors import NeurosearchError
from neurosearch.format import layout

if TYPE_CHECKING:
    from neurosearch.index.index import Index

KINDS = ("both", "neurons", "clusters")


@dataclass(frozen=True)
class TraceConfig:
    """What ``trace`` ranks and how much of the text it takes."""

    top: int = 5
    """Units listed per token (of each kind)."""
    kind: str = "both"
    """``neurons``, ``clusters`` or ``both``."""
    method: str | None = None
    """Profile method whose themes and clusters are used (default: the index's search method)."""
    k: int | None = None
    """Cluster granularity (default: the index's largest K)."""
    max_tokens: int = 4096
    """Longest text traced, in word pieces (a longer one is refused before the model loads)."""
    min_std: float = 1e-3
    """Neurons with a smaller corpus std are not ranked (their z would be noise)."""

    def validate(self) -> None:
        if self.top < 1:
            raise NeurosearchError(f"--top must be at least 1, got {self.top}")
        if self.kind not in KINDS:
            raise NeurosearchError(f"--kind must be one of {', '.join(KINDS)}, got '{self.kind}'")
        if self.max_tokens < 1:
            raise NeurosearchError(f"--max-tokens must be at least 1, got {self.max_tokens}")


@dataclass
class Piece:
    """One word piece of the traced text."""

    index: int
    """Position among the text's word pieces (0-based, no special tokens)."""
    token: str
    """The vocabulary token (``##ing`` for a continuation)."""
    text: str
    """The characters of the input it covers."""
    start: int
    end: int
    """Character offsets of ``text`` in the input."""

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "token": self.token, "text": self.text, "start": self.start, "end": self.end}


@dataclass
class UnitResponse:
    """How strongly one neuron or cluster responds at one token."""

    kind: str
    """``neuron`` or ``cluster``."""
    id: str
    """``L:I`` for a neuron, ``METHOD/kK/ID`` for a cluster."""
    z: float
    """Neuron: its z; cluster: the mean z of its neurons."""
    value: float | None
    """Neuron: the raw activation; cluster: None."""
    label: str | None
    label_source: str | None
    """``llm`` (or the labeller's name) when a stored theme, ``fallback`` for the automatic label."""
    size: int = 1
    top_neuron: str | None = None
    """Cluster: the member neuron with the highest z at this token."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "id": self.id, "z": round(self.z, 3),
                                "label": self.label, "label_source": self.label_source}
        if self.kind == "neuron":
            data["value"] = None if self.value is None else round(self.value, 5)
        else:
            data.update(size=self.size, top_neuron=self.top_neuron)
        return data


@dataclass
class TracedToken:
    piece: Piece
    neurons: list[UnitResponse] = field(default_factory=list)
    clusters: list[UnitResponse] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.piece.to_json(), "neurons": [u.to_json() for u in self.neurons],
                "clusters": [u.to_json() for u in self.clusters]}


@dataclass
class TraceResult:
    """``trace TEXT``: the units that respond most at each word piece."""

    text: str
    model: str
    site: str
    method: str
    k: int
    tokens: list[TracedToken]
    config: TraceConfig

    def to_json(self) -> dict[str, Any]:
        """The ``trace --json`` contract (version 1)::

            {"version": 1, "text": str, "model": str, "site": "ffn"|"hidden",
             "method": str, "k": int,
             "z": "(activation - corpus mean) / corpus std, per neuron",
             "cluster_z": "mean z of the cluster's neurons",
             "tokens": [{"index", "token", "text", "start", "end",
                         "neurons": [{"kind": "neuron", "id": "L:I", "z", "value", "label", "label_source"}],
                         "clusters": [{"kind": "cluster", "id": "METHOD/kK/ID", "z", "size", "top_neuron",
                                       "label", "label_source"}]}]}

        Units are best first (highest z), ``top`` of each kind; a kind not asked for is ``[]``.
        """
        return {"version": layout.TRACE_JSON_VERSION, "text": self.text, "model": self.model, "site": self.site,
                "method": self.method, "k": self.k,
                "z": "(activation - corpus mean) / corpus std, per neuron",
                "cluster_z": "mean z of the cluster's neurons",
                "tokens": [t.to_json() for t in self.tokens]}


@dataclass
class UnitTrace:
    """``trace TEXT --unit U``: one unit's response at every word piece."""

    text: str
    kind: str
    id: str
    label: str | None
    label_source: str | None
    neurons: list[str]
    pieces: list[Piece]
    z: list[float]
    values: list[float | None]
    """Neuron: raw activations; cluster: None at every token."""
    top_neurons: list[str | None]
    """Cluster: the member with the highest z at each token; neuron: None."""
    low_std: bool = False
    """True for a neuron whose corpus std is below ``TraceConfig.min_std`` (its z is unreliable)."""

    def to_json(self) -> dict[str, Any]:
        """The ``trace --unit --json`` contract (version 1)::

            {"version": 1, "text": str,
             "unit": {"kind": "neuron"|"cluster", "id", "label", "label_source", "neurons": [L:I, ...],
                      "low_std": bool},
             "tokens": [{"index", "token", "text", "start", "end", "z", "value", "top_neuron"}]}

        ``z`` is the neuron's z, or for a cluster the mean z of its neurons; ``value`` is the raw
        activation (None for a cluster); ``top_neuron`` is the cluster's member with the highest z
        there (None for a neuron).
        """
        tokens = []
        for piece, z, value, top in zip(self.pieces, self.z, self.values, self.top_neurons):
            tokens.append({**piece.to_json(), "z": round(z, 3),
                           "value": None if value is None else round(value, 5), "top_neuron": top})
        return {"version": layout.TRACE_JSON_VERSION, "text": self.text,
                "unit": {"kind": self.kind, "id": self.id, "label": self.label, "label_source": self.label_source,
                         "neurons": self.neurons, "low_std": self.low_std},
                "tokens": tokens}


@dataclass
class Activations:
    """Every neuron's activation at every word piece of a text."""

    pieces: list[Piece]
    values: np.ndarray
    """float32 [pieces, neurons]."""
    z: np.ndarray
    """float32 [pieces, neurons], against the corpus mean and std."""


def resolve_unit(index: Index, unit: str) -> tuple[str, str, list[int]]:
    """(kind, canonical id, flat neuron indices) of ``L:I`` or a cluster id (``17``, ``k200/17``,
    ``METHOD/kK/ID``); raises a one-line error for a bad or unknown one (no model needed)."""
    text = unit.strip()
    if ":" in text:
        flat = index.neuron_index(text)
        return "neuron", index.neuron_name(flat), [flat]
    info = index.cluster(text)
    return "cluster", info.key, [index.neuron_index(n) for n in info.neurons]


class Tracer:
    """Runs an index's model over texts and reads them against the index's neurons."""

    def __init__(self, index: Index, loaded: Any, config: TraceConfig | None = None):
        from neurosearch.model.loading import index_site

        self.index = index
        self.loaded = loaded
        self.config = config or TraceConfig()
        self.config.validate()
        self.method = self.config.method or index.search_method
        if self.method not in index.methods:
            raise NeurosearchError(f"method '{self.method}' is not in this index (has: {', '.join(index.methods)})")
        self.k = self.config.k if self.config.k is not None else index.default_k
        if self.k not in index.ks:
            raise NeurosearchError(f"K={self.k} is not in this index (has K = {', '.join(map(str, index.ks))})")
        self.site = index_site(loaded, index)
        if self.site.n_neurons != index.manifest.n_neurons:
            raise NeurosearchError(f"the model has {self.site.n_neurons} {self.site.name} neurons, the index "
                                   f"{index.manifest.n_neurons}")
        self.mean = np.asarray(index.npy(layout.NEURON_MEAN), dtype=np.float32)
        self.std = np.asarray(index.npy(layout.NEURON_STD), dtype=np.float32)
        self.window = int(index.manifest.configs.get("corpus", {}).get("window", 128))
        self._labels: dict[tuple[str, str], tuple[str, str]] = {}

    # -- the model pass ---------------------------------------------------------------------------
    @cached_property
    def _backend(self) -> Any:
        from neurosearch.corpus import plain_backend

        return plain_backend(self.loaded.tokenizer)

    def pieces(self, text: str) -> tuple[list[Piece], list[int]]:
        """The text's word pieces (with character offsets) and their ids; refuses empty or too long."""
        if not text.strip():
            raise NeurosearchError("the text to trace is empty")
        encoding = self._backend.encode(text, add_special_tokens=False)
        if not encoding.ids:
            raise NeurosearchError("the text has no word pieces to trace")
        if len(encoding.ids) > self.config.max_tokens:
            raise NeurosearchError(f"the text has {len(encoding.ids)} word pieces; trace takes at most "
                                   f"{self.config.max_tokens} (--max-tokens)")
        pieces = [Piece(i, token, text[start:end], start, end)
                  for i, (token, (start, end)) in enumerate(zip(encoding.tokens, encoding.offsets))]
        return pieces, list(encoding.ids)

    def activations(self, text: str) -> Activations:
        """Run the model over ``text`` in the build's windows and read every neuron at every piece."""
        import torch

        from neurosearch.pipeline.stats import pad_batch
        from neurosearch.corpus import Windows
        from neurosearch.model.loading import NeuronHooks

        pieces, ids = self.pieces(text)
        tokenizer = self.loaded.tokenizer
        body = max(self.window - 2, 1)
        windows = Windows([], [], [])
        for start in range(0, len(ids), body):  # as corpus.make_windows cuts a document
            windows.input_ids.append([tokenizer.cls_token_id, *ids[start : start + body], tokenizer.sep_token_id])
            windows.document.append(0)
            windows.start.append(start)
        batch = pad_batch(windows, range(len(windows.input_ids)), tokenizer.pad_token_id)
        width = self.site.neurons_per_layer
        values = np.zeros((len(ids), self.site.n_neurons), dtype=np.float32)
        rows, cols = [], []  # (window, column) of each real word piece, in text order
        for number, start in enumerate(windows.start):
            count = len(windows.input_ids[number]) - 2
            rows.extend([number] * count)
            cols.extend(range(1, count + 1))  # column 0 is [CLS]
        rows_t, cols_t = torch.tensor(rows), torch.tensor(cols)

        def read(layer: int, x: torch.Tensor) -> None:
            values[:, layer * width : (layer + 1) * width] = x[rows_t, cols_t].float().cpu().numpy()

        with NeuronHooks(self.site, read), torch.inference_mode(), self.loaded.autocast():
            self.loaded.encoder(input_ids=batch["input_ids"].to(self.loaded.device),
                                attention_mask=batch["attention_mask"].to(self.loaded.device))
        z = (values - self.mean) / np.maximum(self.std, 1e-6)
        return Activations(pieces, values, z.astype(np.float32))

    # -- forward: the units at each token ------------------------------------------------------------
    def trace(self, text: str) -> TraceResult:
        acts = self.activations(text)
        top = self.config.top
        ranked_z = np.where(self.std >= self.config.min_std, acts.z, -np.inf)
        members, cluster_z = self._cluster_z(acts.z)
        tokens = []
        for row, piece in enumerate(acts.pieces):
            traced = TracedToken(piece)
            if self.config.kind in ("both", "neurons"):
                for flat in _top_rows(ranked_z[row], top):
                    name = self.index.neuron_name(int(flat))
                    label, source = self._label("neuron", name, int(flat))
                    traced.neurons.append(UnitResponse("neuron", name, float(acts.z[row, flat]),
                                                       float(acts.values[row, flat]), label, source))
            if self.config.kind in ("both", "clusters"):
                for number in _top_rows(cluster_z[row], top):
                    neurons = members[number]
                    best = neurons[int(np.argmax(acts.z[row, neurons]))]
                    key = f"{self.method}/k{self.k}/{number}"
                    label, source = self._label("cluster", key, number)
                    traced.clusters.append(UnitResponse("cluster", key, float(cluster_z[row, number]), None, label,
                                                        source, size=len(neurons),
                                                        top_neuron=self.index.neuron_name(int(best))))
            tokens.append(traced)
        return TraceResult(text, self.index.manifest.model.get("id", ""), self.site.name, self.method, self.k, tokens,
                           self.config)

    def _cluster_z(self, z: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Each cluster's member indices and its mean z at every token [pieces, clusters]."""
        clusters = self.index.clusters(self.method, self.k)
        members = [np.asarray(c.neurons, dtype=np.int64) for c in clusters]
        out = np.full((z.shape[0], len(members)), -np.inf, dtype=np.float32)
        for number, neurons in enumerate(members):
            if len(neurons):
                out[:, number] = z[:, neurons].mean(axis=1)
        return members, out

    def _label(self, kind: str, key: str, row: int) -> tuple[str, str]:
        if (kind, key) not in self._labels:
            if kind == "neuron":
                data = self.index.neuron(key, self.method)
                self._labels[(kind, key)] = (data.label, data.label_source)
            else:
                label = self.index.cluster(key).label or {}
                self._labels[(kind, key)] = (label.get("theme"), label.get("source"))
        return self._labels[(kind, key)]

    # -- reverse: one unit along the text ------------------------------------------------------------
    def trace_unit(self, text: str, unit: str) -> UnitTrace:
        kind, key, flats = resolve_unit(self.index, unit)
        acts = self.activations(text)
        names = [self.index.neuron_name(f) for f in flats]
        if kind == "neuron":
            flat = flats[0]
            label, source = self._label("neuron", key, flat)
            return UnitTrace(text, kind, key, label, source, names, acts.pieces,
                             [float(v) for v in acts.z[:, flat]], [float(v) for v in acts.values[:, flat]],
                             [None] * len(acts.pieces), low_std=bool(self.std[flat] < self.config.min_std))
        sub = acts.z[:, np.asarray(flats, dtype=np.int64)]
        label = self.index.cluster(key).label or {}
        best = [names[int(i)] for i in np.argmax(sub, axis=1)] if flats else [None] * len(acts.pieces)
        return UnitTrace(text, kind, key, label.get("theme"), label.get("source"), names, acts.pieces,
                         [float(v) for v in (sub.mean(axis=1) if flats else np.zeros(len(acts.pieces)))],
                         [None] * len(acts.pieces), best)


def _top_rows(scores: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` largest finite scores, best first (ties by index)."""
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0:
        return []
    count = min(count, finite.size)
    part = finite[np.argpartition(-scores[finite], count - 1)[:count]]
    return sorted((int(i) for i in part), key=lambda i: (-scores[i], i))
