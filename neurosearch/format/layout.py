"""Every path of an index directory and every format version, written once: the build writes them,
``Index`` reads them.

Paths are relative to the index directory with ``/`` separators, as the manifest lists them.
``docs/index-format.md`` says what each file holds; ``tests/format/test_layout.py`` checks that its
file table lists exactly :func:`files`. The search stage's files carry :data:`SEARCH_FORMAT`: an index
whose search files are older is refused by ``Index.load`` and redone by ``neurosearch build``.
Standard library only (``find`` imports it).
"""

from __future__ import annotations

MANIFEST_FORMAT = 1
"""Version of ``manifest.json`` (its ``format_version``): an index of another is refused."""
SEARCH_FORMAT = 6
"""Version of the search stage's files (their history: docs/decisions.md)."""
HEAD_FORMAT = 1
"""Version of a fitted head's files (``head.json`` records it; ``model/head.py`` writes them)."""
ABLATIONS_FORMAT = 2
"""``ablations.json`` format: results keyed by ``AblationResult.store_key`` (``format/results.py``)."""
LEGACY_ABLATIONS_VERSION = 1
"""Stores written before format 2 (``{"version": 1}``, keyed ``kind:id``): read as legacy results."""
RESULT_FORMAT = 2
"""Version of one ablation result's JSON (``format/results.py``); older records load as legacy results."""
LABELS_FORMAT = 1
"""Version of ``labels.json`` (its ``version``; ``index/labels.py``)."""
TRACE_JSON_VERSION = 1
"""Version of the ``trace --json`` contract (``experiments/trace.py``)."""
FIND_TOP_TOKENS = 30
"""Top tokens stored and reported per hit of ``find`` (the JSON contract asks for at least 20)."""
DEEP_TOKENS = 30
"""A tie in expected precision over a hit's first 10 top tokens is broken by it over its first 30
(the ``_deep`` postings)."""
TREE = "tree"
"""The row-key and cluster-id prefix of the search method's tree nodes: ``tree/412``."""

KINDS = ("neurons", "clusters")
"""The two kinds of scored rows; each has its own postings and HNSW graph."""
POSTINGS_PARTS = ("offsets", "rows", "weights")
"""The three arrays of one kind's inverted lists (``index/postings.py``)."""
CONCEPT_ARRAYS = ("offsets", "members", "depths", "shares", "heads", "sense_shares", "evidence")
"""The arrays of the WordNet concept table (``index/concepts.py``), in ``ConceptTable``'s order."""

MANIFEST = "manifest.json"
STAGES = ("stats", "profiles", "clusters", "search", "contexts")
"""The build's stages in order: the keys of the manifest's ``stages`` (and ``build --until``'s choices)."""

# -- stats: raw Eq. 1 statistics (build intermediates, not shipped) -------------------------------
STATS_DIR = "stats"
STATS_ARRAYS = ("token_ids", "token_counts", "token_sums", "neuron_sums", "neuron_sumsq", "top_values", "top_refs",
                "totals")
"""The arrays of a statistics directory; ``totals`` is written last and marks it complete."""
STATS_LAYOUT = "stats.json"
"""How a statistics directory stores ``token_sums`` (plain ``.npy`` or zstd blocks)."""
STATS_COMPRESSED_SUMS = "token_sums.zst"
STATS_COMPRESSED_BLOCKS = "token_sums_blocks.npy"
"""With ``StatsConfig.compress="zstd"``: the sums as zstd frames of row blocks, and their byte offsets."""
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_PREFIX = "stats-"
CHECKPOINT_PROGRESS = "progress.json"
"""Written last into a checkpoint: shards and documents done, and the build's identity."""


STATS_PARTS_DIR = "stats-parts"
"""A build within a memory budget (``pipeline/stats_plan.py``) passes over the corpus once per group
of layers; each finished pass's statistics wait here until all are put together into ``stats/``."""
STATS_PART_IDENTITY = "part.json"
"""Written last into a finished part: its layers and the build's identity."""


def stats_part_dir(start: int | str, stop: int | str) -> str:
    """The statistics of layers ``start`` .. ``stop - 1`` (one pass of a budgeted build)."""
    return f"{STATS_PARTS_DIR}/layers-{start}-{stop}"


def stats_array(name: str) -> str:
    """An array's file name inside a statistics directory (``stats/`` or a checkpoint)."""
    return f"{name}.npy"


def checkpoint_dir(shards: int | str) -> str:
    """The checkpoint after ``shards`` shards of the statistics pass."""
    return f"{CHECKPOINT_DIR}/{CHECKPOINT_PREFIX}{shards}"


def checkpoint_shards(name: str) -> int | None:
    """Shards done by a checkpoint folder named ``name`` (None when it is not one)."""
    count = name[len(CHECKPOINT_PREFIX):]
    return int(count) if name.startswith(CHECKPOINT_PREFIX) and count.isdigit() else None


# -- stats: what the index keeps of them -----------------------------------------------------------
NEURON_MEAN = "neurons/mean.npy"
NEURON_STD = "neurons/std.npy"
NEURON_TOP_VALUES = "neurons/top_values.npy"
NEURON_TOP_REFS = "neurons/top_refs.npy"

# -- profiles ----------------------------------------------------------------------------------------
TOKENS = "tokens.json"
TOKENIZER = "tokenizer.json"
TOKEN_SPACE = "token_space.npy"
TOKEN_SPACE_SCALE = "token_space_scale.npy"
NEIGHBOURS = "neighbours.npy"
NEIGHBOUR_SIMILARITY = "neighbour_similarity.npy"
PROFILES_DIR = "profiles"
METHODS_DIR = "methods"


def profiles_file(method: str) -> str:
    """A method's full [N, Vk] profiles (a build intermediate, not shipped)."""
    return f"{PROFILES_DIR}/{method}.npy"


def method_dir(method: str) -> str:
    return f"{METHODS_DIR}/{method}"


def neuron_top_tokens(method: str) -> str:
    return f"{method_dir(method)}/neuron_top_tokens.npy"


def neuron_top_values(method: str) -> str:
    return f"{method_dir(method)}/neuron_top_values.npy"


def linkage_file(method: str) -> str:
    """The linkage tree [N-1, 4] the clusters stage cut, for the search stage (a build intermediate, not shipped)."""
    return f"{PROFILES_DIR}/{method}_linkage.npy"


# -- clusters --------------------------------------------------------------------------------------
def clusters_file(method: str, k: int | str) -> str:
    return f"{method_dir(method)}/clusters_k{k}.json"


def distance_curve_file(method: str) -> str:
    return f"{method_dir(method)}/distance_curve.json"


# -- search ----------------------------------------------------------------------------------------
SEARCH_DIR = "search"
KEPT_SPACE = f"{SEARCH_DIR}/kept_space.npy"
KEPT_SENTENCES = f"{SEARCH_DIR}/kept_sentences.npy"
"""The kept tokens' unit vectors in the model's sentence space (float16; the slow path's)."""
EXPANSION_KEYS = f"{SEARCH_DIR}/expansion_keys.json"
"""The sorted concept keys, irregular inflections -> key, and the ``ExpansionConfig`` they were built with."""
ANCESTOR_ROWS = f"{SEARCH_DIR}/ancestor_rows.npy"
"""int32 [Vk, W]: what WordNet says each kept token is a kind of (rows of ``ANCESTOR_SENTENCES``, -1 padding)."""
ANCESTOR_SENTENCES = f"{SEARCH_DIR}/ancestor_sentences.npy"
"""float16 [A, H]: the sentence vectors of those ancestors' names."""
EXPANSION_ARRAYS = ("offsets", "tokens", "weights")
"""Each key's stored expansion: kept-token indices and membership probabilities, by offsets."""
WORDPIECE = f"{SEARCH_DIR}/wordpiece.json"
WORDPIECE_VOCAB = f"{SEARCH_DIR}/wordpiece_vocab.txt"
CONCEPTS = f"{SEARCH_DIR}/concepts.json"


def concept_array(name: str) -> str:
    """One of :data:`CONCEPT_ARRAYS` of the WordNet concept table."""
    return f"{SEARCH_DIR}/concept_{name}.npy"


def expansion_array(name: str) -> str:
    """One of :data:`EXPANSION_ARRAYS`."""
    return f"{SEARCH_DIR}/expansion_{name}.npy"


def search_dir(method: str) -> str:
    return f"{SEARCH_DIR}/{method}"


def postings_file(method: str, kind: str, part: str, deep: bool = False) -> str:
    """One of :data:`POSTINGS_PARTS` of the inverted lists that score ``kind`` (one of :data:`KINDS`)
    by its first 10 top tokens (``deep``: its first :data:`DEEP_TOKENS`, the tie-break)."""
    return f"{search_dir(method)}/{kind}{'_deep' if deep else ''}_postings_{part}.npy"


TREE_ARRAYS = ("children", "top_weights", "distances")
"""The search method's cluster tree (``pipeline/tree.py``): each node's two children, its mean
profile's top values, and the mean and max cosine distance of its neurons."""


def tree_file(method: str, name: str) -> str:
    """One of :data:`TREE_ARRAYS` (built for the search method only)."""
    return f"{search_dir(method)}/tree_{name}.npy"


def hnsw_file(method: str, kind: str) -> str:
    """The HNSW graph over ``kind``'s dense vectors (built for the search method only)."""
    return f"{search_dir(method)}/{kind}.hnsw"


def cluster_keys_file(method: str) -> str:
    """``{"method", "keys"}``: the ``kK/ID`` of every scored cluster row, in row order."""
    return f"{search_dir(method)}/clusters.json"


def neuron_focus_file(method: str) -> str:
    return f"{search_dir(method)}/neuron_focus.npy"


def cluster_tokens_file(method: str) -> str:
    return f"{search_dir(method)}/cluster_tokens.npy"


def cluster_neurons_offsets_file(method: str) -> str:
    return f"{search_dir(method)}/cluster_neurons_offsets.npy"


def cluster_neurons_file(method: str) -> str:
    return f"{search_dir(method)}/cluster_neurons.npy"


def fallback_labels_file(method: str) -> str:
    """One offline label per line: every neuron in flat order, then every cluster row."""
    return f"{search_dir(method)}/fallback_labels.txt"


# -- contexts: top-token means and strongest occurrences (what ``show`` lists "on its top tokens") -----
CONTEXTS_DIR = "contexts"
CONTEXT_ARRAYS = (
    "neuron_token_means", "neuron_token_values", "neuron_token_refs",
    "cluster_token_means", "cluster_token_z", "cluster_token_values", "cluster_token_neurons", "cluster_token_refs",
)
"""The contexts stage's arrays (``pipeline/contexts.py``); cluster rows are :data:`CONTEXT_CLUSTERS`' keys."""
CONTEXT_CLUSTERS = f"{CONTEXTS_DIR}/clusters.json"


def context_array(name: str) -> str:
    """One of :data:`CONTEXT_ARRAYS`."""
    return f"{CONTEXTS_DIR}/{name}.npy"


# -- results about the index, written by other commands (into the index, or a state folder) ------------
LABELS = "labels.json"
SIMULATION_SCORES = "scores/simulation.json"
"""``neurosearch score``: every unit's simulation score and what it is about (``scores/run.py``)."""
SIMULATION_ROWS = "scores/simulation_rows.json"
"""The same run's ``simulation_score`` only, as one list per kind in row order (neurons by flat
index, then the search method's cluster rows): what ``find`` reads, a tenth of the size."""
DETECTION_SCORES = "scores/detection.json"
"""``neurosearch score --detection``: a sample of units' detection AUC with a language model (``scores/detection.py``)."""
SIMULATION_FORMAT = 1
ABLATIONS = "ablations.json"
HEAD_DIR = "head"
HEAD_WEIGHTS_NAME = "head.safetensors"
HEAD_META_NAME = "head.json"
HEAD_WEIGHTS = f"{HEAD_DIR}/{HEAD_WEIGHTS_NAME}"
HEAD_META = f"{HEAD_DIR}/{HEAD_META_NAME}"
HEAD_FILES = (HEAD_META, HEAD_WEIGHTS)
"""A fitted head's files in the index (``HEAD_META_NAME`` and ``HEAD_WEIGHTS_NAME`` inside any head folder)."""
EVALUATION_DIR = "evaluation"
EVALUATION_RESULTS_NAME = "results.jsonl"
EVALUATION_TABLE_NAME = "table3.csv"
"""File names inside an evaluation folder (the index's ``evaluation/``, the state folder's, or ``--out``)."""
EVALUATION_RESULTS = f"{EVALUATION_DIR}/{EVALUATION_RESULTS_NAME}"
EVALUATION_TABLE = f"{EVALUATION_DIR}/{EVALUATION_TABLE_NAME}"
FIGURES_DIR = "figures"


def figure_file(name: str) -> str:
    """Where ``neurosearch plot NAME`` draws without ``--out``."""
    return f"{FIGURES_DIR}/{name}.png"

LM_SCORES_DIR = "lm-scores"
"""The search stage's language-model membership scores of every concept key, block by block
(``pipeline/lm_scores.py``; a build intermediate, not shipped)."""
SAE_DIR = "sae"
"""The sparse autoencoder a ``build --units sae`` trained (SAELens layout, ``train.log`` beside it)."""
SAE_TRAINING_DIR = "sae-training"
"""Its work while it trains: the layer's activations and checkpoints (removed once ``sae/`` is in place)."""
BUILD_DIRS = (STATS_DIR, CHECKPOINT_DIR, STATS_PARTS_DIR, "neurons", PROFILES_DIR, METHODS_DIR, SEARCH_DIR, CONTEXTS_DIR,
              LM_SCORES_DIR)
"""What ``build --force`` removes before it starts again (with the manifest); a trained SAE
(``SAE_DIR``, ``SAE_TRAINING_DIR``) is removed before training starts again."""


def files() -> list[tuple[str, str]]:
    """(path pattern, the stage or command that writes it) of every file and folder of an index.

    Patterns name what varies as ``<method>``, ``<K>``, ``<n>`` and ``<name>``; a folder ends with ``/``.
    """
    method, k = "<method>", "<K>"
    search = [(neuron_focus_file(method), "search"), (cluster_keys_file(method), "search")]
    search += [(postings_file(method, kind, part, deep), "search") for kind in KINDS for part in POSTINGS_PARTS
               for deep in (False, True)]
    search += [(tree_file(method, name), "search") for name in TREE_ARRAYS]
    search += [(f(method), "search") for f in (cluster_tokens_file, cluster_neurons_offsets_file,
                                                 cluster_neurons_file, fallback_labels_file)]
    search += [(hnsw_file(method, kind), "search") for kind in KINDS]
    search += [(path, "search") for path in (KEPT_SPACE, KEPT_SENTENCES, EXPANSION_KEYS, WORDPIECE,
                                             WORDPIECE_VOCAB, CONCEPTS, ANCESTOR_ROWS, ANCESTOR_SENTENCES)]
    search += [(expansion_array(name), "search") for name in EXPANSION_ARRAYS]
    search += [(concept_array(name), "search") for name in CONCEPT_ARRAYS]
    return [
        (MANIFEST, "all"),
        *((f"{STATS_DIR}/{stats_array(name)}", "stats") for name in STATS_ARRAYS),
        *((f"{STATS_DIR}/{name}", "stats") for name in (STATS_LAYOUT, STATS_COMPRESSED_SUMS, STATS_COMPRESSED_BLOCKS)),
        (f"{checkpoint_dir('<n>')}/", "stats"),
        (f"{stats_part_dir('<a>', '<b>')}/", "stats"),
        (f"{LM_SCORES_DIR}/", "search"),
        *((path, "stats") for path in (NEURON_MEAN, NEURON_STD, NEURON_TOP_VALUES, NEURON_TOP_REFS)),
        *((path, "profiles") for path in (TOKENS, TOKENIZER, TOKEN_SPACE, TOKEN_SPACE_SCALE, NEIGHBOURS,
                                         NEIGHBOUR_SIMILARITY, profiles_file(method),
                                         neuron_top_tokens(method), neuron_top_values(method))),
        (clusters_file(method, k), "clusters"),
        (linkage_file(method), "clusters"),
        (distance_curve_file(method), "clusters"),
        *search,
        *((context_array(name), "contexts") for name in CONTEXT_ARRAYS),
        (CONTEXT_CLUSTERS, "contexts"),
        (LABELS, "label"),
        (SIMULATION_SCORES, "score"),
        (SIMULATION_ROWS, "score"),
        (DETECTION_SCORES, "score"),
        (ABLATIONS, "ablate"),
        (HEAD_WEIGHTS, "fit-head"),
        (HEAD_META, "fit-head"),
        (f"{EVALUATION_DIR}/", "evaluate"),
        (figure_file("<name>"), "plot"),
    ]
