"""Configuration dataclasses of the build's stages and of queries, and the checks every config uses.

Defaults follow Zhang, Gu & Yao, "Semantically Interpretable Neuron Clusters in BERT", unless a
field's comment says why we deviate; where they deviate, the defaults are the recipe the shipped
index is built with (``neurosearch build`` with no flags) and :data:`PAPER` holds the paper's
settings (``neurosearch build --paper``). Every config is plain data: it serialises to JSON in the
index manifest (``asdict``) and is read back with ``from_dict``, so an index records exactly how it
was built. Every config validates itself on construction (choices are ``Literal`` types, numbers
have ranges; NaN is refused) and raises :class:`~neurosearch.errors.ConfigError`, so bad values
fail before any work.

Where configs live: this module holds :class:`BuildConfig` and its parts (what ``build`` is given,
recorded in the manifest's ``configs``) and :class:`SearchConfig` (how an ``Index`` answers
queries). Every other config lives beside the code it configures: a command's (``LabelConfig`` in
``labeling/config.py``, ``AblationConfig``, ``HeadConfig``, ``TraceConfig``, ``ReportConfig``) and
an algorithm's fixed settings, which are not options (``WordNetConfig``, ``ScalableSettings``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any, Literal, Sequence, TypeVar, get_args, get_origin, get_type_hints

from neurosearch.errors import ConfigError

T = TypeVar("T")

Site = Literal["ffn", "hidden"]
Method = Literal["filter", "filter+tfidf", "filter+smooth", "filter+smooth+tfidf"]
EmbeddingSource = Literal["model", "fasttext", "file"]
Ablation = Literal["mean", "layer-mean", "zero"]
Baseline = Literal["random", "random_layer", "random_position"]
Dtype = Literal["auto", "float32", "bfloat16"]

SITES: tuple[str, ...] = get_args(Site)
METHODS: tuple[str, ...] = get_args(Method)
EMBEDDING_SOURCES: tuple[str, ...] = get_args(EmbeddingSource)
ABLATIONS: tuple[str, ...] = get_args(Ablation)
BASELINES: tuple[str, ...] = get_args(Baseline)
BASELINE_DESCRIPTIONS = {
    "random": "as many neurons, anywhere",
    "random_layer": "as many in each layer",
    "random_position": "same layers, each index mapped to another",
}
"""What each random baseline keeps of the target: every table, figure and report names a baseline by
its identifier (the JSON key) and, where there is room, this description."""
DTYPES: tuple[str, ...] = get_args(Dtype)
ClusterMode = Literal["exact", "scalable"]
CLUSTER_MODES: tuple[str, ...] = get_args(ClusterMode)
StatsCompression = Literal["none", "zstd"]
STATS_COMPRESSIONS: tuple[str, ...] = get_args(StatsCompression)


# ------------------------------------------------------------------------------------ validation


@lru_cache(maxsize=None)
def _literal_fields(cls: type) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """(field, allowed values) of every ``Literal`` (or ``tuple[Literal, ...]``) field of a dataclass."""
    found = []
    for name, hint in get_type_hints(cls).items():
        if get_origin(hint) is tuple and get_args(hint):
            hint = get_args(hint)[0]
        if get_origin(hint) is Literal:
            found.append((name, get_args(hint)))
    return tuple(found)


def check_choices(config: Any) -> None:
    """Every ``Literal``-typed field of ``config`` holds one of its choices."""
    for name, allowed in _literal_fields(type(config)):
        value = getattr(config, name)
        for item in value if isinstance(value, tuple) else (value,):
            if item not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, got {item!r}", option=name)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name: str, value: Any, minimum: int = 1, *, optional: bool = False) -> None:
    """``value`` is a whole number >= ``minimum`` (or None when ``optional``)."""
    if value is None and optional:
        return
    if not (_is_number(value) and float(value).is_integer() and value >= minimum):
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}", option=name)


def check_float(name: str, value: Any, minimum: float = 0.0, *, inclusive: bool = False,
                maximum: float | None = None, optional: bool = False) -> None:
    """``value`` is a finite number above ``minimum`` (at or above with ``inclusive``), at most ``maximum``."""
    if value is None and optional:
        return
    ok = _is_number(value) and (value >= minimum if inclusive else value > minimum)
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bound = f"{'>=' if inclusive else '>'} {minimum:g}" + (f" and <= {maximum:g}" if maximum is not None else "")
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}", option=name)


ADDED_LATER = {"clusters": {"mode": "exact"}, "corpus": {"heldout_share": 0.0}, "model": {"sae": None}}
"""Config fields added after indexes were built, with the value that older indexes were built with
(a manifest without them means exactly that; the build reads them so, and does not rebuild)."""


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return asdict(config)


def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Build ``cls`` from a dict, ignoring unknown keys (older/newer manifests stay readable)."""
    data = data or {}
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        if key in names:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Which model, and which neurons of it."""

    model: str = "minilm"
    """Alias (``minilm``, ``bert-base``), Hugging Face id, or local directory."""
    site: Site = "ffn"
    """``ffn``: intermediate activations after the nonlinearity (L x I neurons), chosen as default
    because FFN neurons are far more concept-selective (docs/results/retrieval.md, "Choosing the site
    and method"); ``hidden``: the paper's
    definition, embedding output plus every block's output ((L+1) x H neurons)."""
    dtype: Dtype = "auto"
    """``auto`` uses bf16 autocast only where the hardware runs it fast (AMX / AVX512-BF16 CPUs,
    CUDA); ``float32`` and ``bfloat16`` force a choice."""
    device: str = "auto"
    """``auto`` picks CUDA when present, else CPU."""
    sae: str | None = None
    """A directory holding a TopK sparse autoencoder in the SAELens layout (``neurosearch.sae``,
    ``build --sae``): the index's units are then its features, read at the SAE's layer of ``site``
    (``cfg.json``'s ``neurosearch.site`` and ``layer``; its ``d_in`` must be the site's width and its
    model this one) instead of the site's neurons. None: the neurons (docs/sae.md)."""

    def __post_init__(self) -> None:
        check_choices(self)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model must name a model (an alias, a Hugging Face id or a directory)", option="model")
        if self.sae is not None and (not isinstance(self.sae, str) or not self.sae.strip()):
            raise ConfigError("sae must be the directory of a sparse autoencoder, or None", option="sae")


@dataclass(frozen=True)
class CorpusConfig:
    """Where the text comes from and how it is cut into model windows."""

    source: str = ""
    """Path (.txt one document per line, .jsonl[.gz], .csv) or ``hf:NAME[:CONFIG]:SPLIT``."""
    text_field: str = "text"
    """Field holding the text in jsonl/csv/hf records."""
    max_docs: int | None = None
    """Read at most this many documents (None: all)."""
    window: int = 128
    """Tokens per model window including [CLS]/[SEP]; longer documents are split into consecutive
    windows so no token is dropped. 128 is the sequence length MiniLM was trained with."""
    heldout_share: float = 0.05
    """Share of documents the build leaves out of every statistic (chosen by a hash of their text,
    ``corpus.is_heldout``), so that explanations can be scored on text they were not built from."""

    def __post_init__(self) -> None:
        check_int("max_docs", self.max_docs, 1, optional=True)
        check_int("window", self.window, 3)
        check_float("heldout_share", self.heldout_share, 0.0, inclusive=True, maximum=0.5)


@dataclass(frozen=True)
class StatsConfig:
    """The streaming statistics pass (Eq. 1 sums, counts, moments, top activations)."""

    batch_tokens: int = 8192
    """Token budget of one forward batch (windows are sorted by length, so little is padding)."""
    shard_docs: int = 4000
    """Documents per shard: the unit of work (and of a Ray task) and the points where the build may
    checkpoint; a killed build resumes after the last checkpointed shard."""
    top_k: int = 20
    """Top activating occurrences kept per neuron (as references, never text)."""
    checkpoint_share: float = 0.05
    """Checkpoints take at most this share of the run's time: the first comes once the run has
    spent its estimated cost / share (the first shard when the tables are small), and after a
    checkpoint that took c seconds the next one waits for c / share seconds (0: only the first
    shard). A checkpoint holds the rows of the tokens seen so far, written straight from the table."""
    compress: StatsCompression = "none"
    """``zstd``: store the per-token sums of checkpoints and of ``stats/`` byte-shuffled and
    zstd-compressed (lossless, ~3x smaller, needs the ``zstandard`` package); ``none``: plain
    ``.npy``, memory-mapped by the profiles stage."""
    memory_gb: float | None = None
    """Memory budget of the pass in GB (None: 80% of the memory available when it starts). Tables
    that do not fit get rows only for the corpus's tokens, then one pass per group of layers
    (``pipeline/stats_plan.py``); the statistics are the same bits under any budget."""

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("batch_tokens", "shard_docs", "top_k"):
            check_int(name, getattr(self, name), 1)
        check_float("checkpoint_share", self.checkpoint_share, 0.0, inclusive=True, maximum=1.0)
        check_float("memory_gb", self.memory_gb, 0.0, optional=True)


@dataclass(frozen=True)
class ProfileConfig:
    """From statistics to neuron x token profiles (paper section 3.2)."""

    min_count: int | str = "auto"
    """Keep tokens seen at least this often. ``auto`` = max(20, 4 per million corpus tokens),
    which reproduces the paper's 20 for 8.6M Yelp tokens' order and 400 for 103M C4 tokens."""
    methods: tuple[Method, ...] = METHODS
    """Profile methods to build (Table 3 of the paper); clusters are built for each."""
    search_method: Method = "filter+smooth+tfidf"
    """The method whose profiles back ``find``: filter+smooth+tfidf had the best top-1 neuron and
    the best clusters at K=200 on both concept files (docs/results/retrieval.md), and backs the shipped
    index."""
    smoothing_lambda: float = 0.5
    """lambda of Eq. 2."""
    neighbours: int = 5
    """Top-n embedding neighbours used by Eq. 2."""
    embeddings: EmbeddingSource = "model"
    """Token neighbour source: ``model`` (the model's input-embedding table), ``fasttext`` (skip-gram
    trained on the corpus's word pieces, as in the paper) or ``file`` (``embeddings_path``)."""
    embeddings_path: str | None = None
    """Word vectors in .vec/.bin format when ``embeddings == 'file'``."""
    top_tokens: int = 50
    """Top tokens stored per neuron (by its profile) for display and scoring."""
    neuron_score_tokens: int | None = 10
    """``find`` scores a neuron by the query weights of its first this-many top tokens, equally
    weighted: the expected precision of the tokens it shows when the weights are read as membership
    probabilities. None: the cosine with its z-score peaks over all ``top_tokens`` (how clusters are
    scored). Why 10: docs/decisions.md. Changing it redoes only the search stage."""

    def __post_init__(self) -> None:
        check_choices(self)
        if self.min_count != "auto":
            try:
                check_int("min_count", self.min_count, 1)
            except ConfigError:
                raise ConfigError(f"min_count must be 'auto' or a whole number >= 1, got {self.min_count!r}",
                                  option="min_count") from None
        if not self.methods:
            raise ConfigError("methods must name at least one profile method", option="methods")
        if self.search_method not in self.methods:
            raise ConfigError(f"search_method {self.search_method} must be one of the built methods "
                              f"({', '.join(self.methods)})", option="search_method")
        check_float("smoothing_lambda", self.smoothing_lambda, 0.0, inclusive=True, maximum=1.0)
        check_int("neighbours", self.neighbours, 1)
        check_int("top_tokens", self.top_tokens, 1)
        check_int("neuron_score_tokens", self.neuron_score_tokens, 1, optional=True)
        if self.embeddings == "file" and not self.embeddings_path:
            raise ConfigError("embeddings 'file' needs embeddings_path (a .vec or .bin file)", option="embeddings_path")


@dataclass(frozen=True)
class ClusterConfig:
    """Agglomerative clustering of neurons (paper section 3.3)."""

    ks: tuple[int, ...] = (50, 200)
    """Numbers of clusters; one complete-linkage tree is cut at each."""
    refine: bool = False
    """Drop the neuron farthest from the cluster centre until max distance < refine_max_distance
    (the paper's step, ``--paper``). Off by default, as in the shipped index: refined clusters kept
    a median of 2 neurons and named a concept less often (docs/results/retrieval.md)."""
    refine_max_distance: float = 0.6
    """Euclidean distance between unit vectors (paper: 0.6)."""
    top_tokens: int = 50
    """Top tokens stored per cluster, from the cluster's mean profile."""
    curve_ks: tuple[int, ...] = (10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500)
    """K values of the within-cluster distance curve (paper Fig. 2)."""
    mode: ClusterMode = "exact"
    """``exact``: complete linkage over all pairs (the paper's; up to 40,000 neurons, above that a
    prototype tree); ``scalable``: a kNN graph on PCA-reduced profiles, Leiden communities, exact
    complete linkage inside each and between them by sampled diameters
    (``pipeline/scalable_clusters.py``), for neuron counts past exact linkage's memory (its figures:
    docs/results/benchmarks.md)."""

    def __post_init__(self) -> None:
        check_choices(self)
        if not self.ks:
            raise ConfigError("ks must hold at least one number of clusters", option="ks")
        for value in (*self.ks, *self.curve_ks):
            check_int("ks", value, 1)
        check_float("refine_max_distance", self.refine_max_distance, 0.0)
        check_int("top_tokens", self.top_tokens, 1)


@dataclass(frozen=True)
class ContextConfig:
    """The contexts stage: what a neuron's or cluster's top tokens mean, with evidence (``show``)."""

    mean_tokens: int = 30
    """Top tokens (of the search method) whose Eq. 1 mean activation is stored beside their weight."""
    context_tokens: int = 10
    """Top tokens whose strongest occurrence (where the neuron, or a neuron of the cluster, fires
    most on that token) is stored as a reference: the "on its top tokens" contexts of ``show``."""

    def __post_init__(self) -> None:
        check_int("mean_tokens", self.mean_tokens, 1)
        check_int("context_tokens", self.context_tokens, 1)
        if self.context_tokens > self.mean_tokens:
            raise ConfigError(f"context_tokens ({self.context_tokens}) must not exceed mean_tokens ({self.mean_tokens})",
                              option="context_tokens")


@dataclass(frozen=True)
class ExpansionConfig:
    """How the build weighs a concept's tokens (``index/semantic.py``): a logistic regression on the
    features ``semantic.FEATURES`` (and ``LM_FEATURES`` when a language model scores membership),
    fitted by ``benchmarks/fit_expansion.py`` on the tuning half of
    ``benchmarks/concepts/general.json`` (the test half and the other concept files were not used).
    Its coefficients are fitted, not set by hand; changing them redoes only the concept expansions."""

    coefficients: tuple[float, ...] = (-0.59, 0.52, 0.74, 0.55, 1.26, 0.24, -0.15, 2.40, 2.15, 2.99)
    """One per feature of ``semantic.FEATURES``, in that order: the model without a language model."""
    intercept: float = -7.74
    lm_coefficients: tuple[float, ...] = (-0.98, 0.26, -0.02, 0.64, 1.16, 0.15, 0.67, 2.03, 1.82, 1.50, 0.78, 0.34, -1.73, 0.12)
    """One per feature of ``FEATURES + LM_FEATURES``: the model when a language model scores membership."""
    lm_intercept: float = 2.63
    language_model: str = "none"
    """Which language model scores membership (``lm/membership.py``; ``build --lm``): ``none``,
    ``local`` (the default Gemma 3 270M of the ``lm`` extra), ``auto`` (``local`` when the extra is
    installed, else none), or a spec for ``LMSpec.parse`` (a model directory, a ``.gguf`` file,
    ``http://host:port/v1#model``). Every concept key is scored once at build time (about 0.07 s a
    key for Gemma 3 270M on one CPU core: docs/language-model.md)."""
    lm_pool: int = 30
    """The kept tokens the language model scores highest that join a concept's candidates."""
    tokens_per_key: int = 64
    """The heaviest tokens stored per concept key (why 64: docs/decisions.md)."""
    min_weight: float = 0.01
    """Tokens less likely than this to be members are not stored."""

    def __post_init__(self) -> None:
        from neurosearch.index.semantic_names import FEATURES, LM_FEATURES

        for name, values, intercept, features in (("coefficients", self.coefficients, self.intercept, FEATURES),
                                                  ("lm_coefficients", self.lm_coefficients, self.lm_intercept,
                                                   FEATURES + LM_FEATURES)):
            if (isinstance(values, (str, bytes)) or len(values) != len(features)
                    or not all(map(_is_number, (*values, intercept)))):
                raise ConfigError(f"ExpansionConfig needs {len(features)} numbers as {name} ({', '.join(features)}) "
                                  f"and a number as its intercept, got {values!r}, {intercept!r}", option=name)
        if not isinstance(self.language_model, str) or not self.language_model.strip():
            raise ConfigError(f"language_model must be 'auto', 'none' or a model spec, got {self.language_model!r}",
                              option="language_model")
        check_int("lm_pool", self.lm_pool, 0)
        check_int("tokens_per_key", self.tokens_per_key, 1)
        check_float("min_weight", self.min_weight, 0.0, inclusive=True, maximum=1.0)

    def weights(self, n_features: int) -> tuple[tuple[float, ...], float]:
        """(coefficients, intercept) for feature rows of ``n_features`` columns: with or without the
        language model's features."""
        if n_features == len(self.lm_coefficients):
            return self.lm_coefficients, self.lm_intercept
        return self.coefficients, self.intercept


@dataclass(frozen=True)
class SearchConfig:
    """How a query is answered (the expansion itself is baked by the build: ``ExpansionConfig``)."""

    embed_phrases: bool = True
    """A phrase the index has no stored expansion of ("european capitals") is embedded with the
    model, loaded for the query (the slow path: torch and the model, seconds; ``find`` says so).
    False: use the expansion of its head word instead, and say so."""
    min_score: float = 0.1
    """Hits scoring below this are not listed (``find --all`` lists them). Scores are expected
    precision: the expected share of a hit's first 10 top tokens that belong to the concept, so
    0.1 is one expected member among them."""
    weak_score: float = 0.2
    """Below this best score ``find`` notes that nothing matches the query well."""
    hnsw_min_rows: int | None = None
    """From this many neurons (or clusters) on, ``find`` reranks HNSW candidates instead of ranking
    the exact scores; None (default): never unless told (``--ann``). The HNSW path scores the
    query's postings exactly anyway, so it can only save the ranking, and ranking only the scored
    rows is cheap, while the graph must be loaded first: exact is faster end to end
    (``benchmarks/find_scale.py``; the figures: docs/decisions.md, "Cold start of find")."""
    hnsw_ef: int = 200
    """HNSW search breadth (higher: better recall, slower)."""
    candidates: int = 1000
    """HNSW candidates reranked exactly (the ANN ranks by embedding-space cosine, the rerank by
    the exact score; 1000 candidates keep recall@10 against exact search high)."""

    def __post_init__(self) -> None:
        for name in ("hnsw_ef", "candidates"):
            check_int(name, getattr(self, name), 1)
        check_int("hnsw_min_rows", self.hnsw_min_rows, 0, optional=True)
        for name in ("min_score", "weak_score"):
            check_float(name, getattr(self, name), 0.0, inclusive=True, maximum=1.0)


def default_search_method(methods: Sequence[str]) -> str:
    """The method that backs ``find`` when none is chosen: the shipped recipe's when it is among
    ``methods``, else the most processed of them (``ProfileConfig`` checks the choice)."""
    known = [m for m in methods if m in METHODS]
    if ProfileConfig.search_method in methods or not known:
        return ProfileConfig.search_method
    return max(known, key=METHODS.index)


PAPER = {"site": "hidden", "embeddings": "fasttext", "refine": True}
"""The paper's settings where the defaults differ: neurons are the layer outputs, Eq. 2 neighbours
come from fastText skip-gram trained on the corpus, and clusters are refined (< 0.6)."""


def build_recipe(paper: bool = False, **chosen: Any) -> dict[str, Any]:
    """``site``, ``embeddings`` and ``refine`` of a build: each as chosen (not None), else the
    paper's when ``paper``, else the default (the shipped recipe)."""
    defaults = {"site": ModelConfig.site, "embeddings": ProfileConfig.embeddings, "refine": ClusterConfig.refine}
    unknown = set(chosen) - set(defaults)
    if unknown:
        raise TypeError(f"unknown build setting(s): {', '.join(sorted(unknown))}")
    return {name: chosen[name] if chosen.get(name) is not None else PAPER[name] if paper else default
            for name, default in defaults.items()}


@dataclass(frozen=True)
class SAEConfig:
    """How a TopK SAE is trained (``neurosearch.sae.train``)."""

    k: int = 32
    """Features active per row."""
    expansion: int = 8
    """Features per input dimension (d_sae = expansion x d_in) unless ``d_sae`` is given."""
    d_sae: int | None = None
    """Number of features (overrides ``expansion``)."""
    lr: float = 4e-4
    """Adam's learning rate."""
    batch_size: int = 4096
    """Rows per step."""
    epochs: int = 3
    """Passes over the training rows."""
    seed: int = 0
    """Seed of the initial weights and of every epoch's row order."""
    aux_k: int = 512
    """Dead features in the AuxK loss (0: no AuxK loss)."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK loss."""
    dead_window_tokens: int = 1_000_000
    """A feature is dead when it fired on none of this many last rows (capped at one epoch)."""
    checkpoint_seconds: float = 300.0
    """Seconds between checkpoints (does not change the result)."""
    log_seconds: float = 60.0
    """Seconds between progress lines (does not change the result)."""
    eval_batch: int = 4096
    """Rows per batch of the final measurements (does not change the weights)."""

    def __post_init__(self) -> None:
        for name in ("k", "expansion", "batch_size", "epochs", "dead_window_tokens", "eval_batch"):
            check_int(name, getattr(self, name), 1)
        check_int("d_sae", self.d_sae, 1, optional=True)
        check_int("seed", self.seed, 0)
        check_int("aux_k", self.aux_k, 0)
        check_float("lr", self.lr, 0.0)
        check_float("aux_coefficient", self.aux_coefficient, 0.0, inclusive=True)
        check_float("checkpoint_seconds", self.checkpoint_seconds, 0.0, inclusive=True)
        check_float("log_seconds", self.log_seconds, 0.0, inclusive=True)

    def features(self, d_in: int) -> int:
        return self.d_sae if self.d_sae is not None else self.expansion * d_in

    def identity(self) -> dict[str, Any]:
        """The fields that change the trained weights (a checkpoint resumes only under the same)."""
        data = asdict(self)
        for name in ("checkpoint_seconds", "log_seconds", "eval_batch"):
            data.pop(name)
        return data


UnitKind = Literal["neurons", "sae"]


@dataclass(frozen=True)
class UnitsConfig:
    """What an index's units are: the site's neurons, or the features of a TopK sparse autoencoder
    that the build trains on one layer of the site over its own corpus (``build --units sae``; a
    trained one is named by ``ModelConfig.sae`` instead). docs/sae.md."""

    kind: UnitKind = "neurons"
    layer: int | None = None
    """The layer of the site the SAE is trained on (None: a third of the way up, ``n_layers // 3``:
    layer 2 of MiniLM's six, where its features beat every layer's neurons, docs/sae.md)."""
    training: SAEConfig = field(default_factory=SAEConfig)

    def __post_init__(self) -> None:
        check_choices(self)
        check_int("layer", self.layer, 0, optional=True)
        if self.layer is not None and self.kind != "sae":
            raise ConfigError("an SAE layer is for units of kind sae (build --units sae --sae-layer N)", option="layer")

    def chosen_layer(self, n_layers: int) -> int:
        """The layer to train on, checked against the site's ``n_layers``."""
        layer = n_layers // 3 if self.layer is None else self.layer
        if layer >= n_layers:
            raise ConfigError(f"SAE layer {layer} is outside the site's {n_layers} layers (0-{n_layers - 1})",
                              option="layer")
        return layer


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``neurosearch build`` needs, one field per stage."""

    model: ModelConfig = field(default_factory=ModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    profiles: ProfileConfig = field(default_factory=ProfileConfig)
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    contexts: ContextConfig = field(default_factory=ContextConfig)
    concepts: bool = True
    """Bake WordNet's concept members into the index (search stage) when WordNet data is found."""
    expansion: ExpansionConfig = field(default_factory=ExpansionConfig)
    units: UnitsConfig = field(default_factory=UnitsConfig)
