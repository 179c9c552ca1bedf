"""Names of neurons and clusters, parsed and formatted here only; standard library only.

A neuron is ``L:I``: layer ``L``, index ``I`` within the layer (flat index ``L * neurons_per_layer + I``).
A feature of a sparse autoencoder is ``LL:fI``: the model layer ``L`` the SAE encodes, feature ``I``
(an index of one SAE's features: the flat index is ``I``). :class:`UnitNames` names the units of one
index, whichever they are.
A cluster is ``METHOD/kK/ID`` (profile method, the K of the tree cut, its number at that K); users
may shorten it to ``kK/ID`` or ``ID``, which an index completes with its search method and largest K.
A node of the search method's cluster tree is ``METHOD/tree/ID`` or ``tree/ID`` (K is 0 for it).
The search stage's rows of clusters are keyed ``kK/ID`` or ``tree/ID`` (:attr:`ClusterId.row_key`).
"""

from __future__ import annotations

from operator import itemgetter

from neurosearch.errors import NeurosearchError
from neurosearch.format.layout import TREE


class BadNeuronName(NeurosearchError, ValueError):
    """A neuron name that is not ``LAYER:INDEX`` or lies outside the model."""


class BadFeatureName(BadNeuronName):
    """A feature name that is not ``LLAYER:fINDEX``, or names another layer or a feature outside the SAE."""


class BadClusterId(NeurosearchError):
    """A cluster id that is not ``ID``, ``kK/ID``, ``METHOD/kK/ID`` or ``[METHOD/]tree/ID``."""


class _UnitId(tuple):
    """A unit's ``layer`` and ``index`` (a tuple: a plain class, not a ``NamedTuple``, which would
    cost a cold ``find`` its class creation)."""

    __slots__ = ()
    layer: int = property(itemgetter(0))  # type: ignore[assignment]
    index: int = property(itemgetter(1))  # type: ignore[assignment]

    def __new__(cls, layer: int, index: int):  # type: ignore[no-untyped-def]
        return tuple.__new__(cls, (layer, index))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer}, index={self.index})"


class NeuronId(_UnitId):
    """One neuron: ``layer`` and ``index`` within the layer."""

    __slots__ = ()

    @classmethod
    def parse(cls, name: str) -> "NeuronId":
        """``"L:I"`` -> NeuronId (any integers; :meth:`flat` checks the range)."""
        try:
            layer_text, index_text = str(name).strip().split(":")
            return cls(int(layer_text), int(index_text))
        except ValueError:
            raise BadNeuronName(f"bad neuron name '{name}': expected LAYER:INDEX, e.g. 3:1021") from None

    @classmethod
    def of_flat(cls, flat_index: int, neurons_per_layer: int) -> "NeuronId":
        return cls(*divmod(int(flat_index), neurons_per_layer))

    def flat(self, n_layers: int, neurons_per_layer: int, *, shown: str | None = None) -> int:
        """The flat index; raises with a clear message (naming it ``shown``, as the user wrote it)
        when the neuron is outside the model."""
        if not (0 <= self.layer < n_layers and 0 <= self.index < neurons_per_layer):
            raise BadNeuronName(
                f"neuron {shown if shown is not None else self} is out of range: "
                f"layers 0..{n_layers - 1}, indices 0..{neurons_per_layer - 1}"
            )
        return self.layer * neurons_per_layer + self.index

    def __str__(self) -> str:
        return _neuron_text(self[0], self[1])


FEATURE_MARK = "f"
"""What marks a feature's index: ``L2:f1234``."""


class FeatureId(_UnitId):
    """One SAE feature: the model ``layer`` its SAE encodes and its ``index`` among the SAE's features."""

    __slots__ = ()

    @classmethod
    def parse(cls, name: str) -> "FeatureId":
        """``"L2:f1234"`` -> FeatureId(2, 1234) (any whole numbers; :class:`UnitNames` checks the range)."""
        text = str(name).strip()
        layer_text, _, index_text = text.partition(":")
        if (layer_text[:1] in ("L", "l") and layer_text[1:].isdigit() and index_text[:1] == FEATURE_MARK
                and index_text[1:].isdigit()):
            return cls(int(layer_text[1:]), int(index_text[1:]))
        raise BadFeatureName(f"bad feature name '{name}': expected LLAYER:fINDEX, e.g. L2:f1234")

    def __str__(self) -> str:
        return feature_name(self[1], self[0])


def is_feature_name(name: str) -> bool:
    """Whether ``name`` is written as a feature (``L...:f...``), right or wrong, rather than a neuron."""
    return str(name).strip()[:1] in ("L", "l")


def is_unit_name(text: str) -> bool:
    """Whether ``text`` names a unit (a neuron ``L:I`` or a feature ``LL:fI``) rather than a cluster:
    unit names hold a colon, cluster ids never do."""
    return ":" in str(text)


def unit_noun(name: str) -> str:
    """``feature`` for a name written as an SAE feature, else ``neuron``."""
    return "feature" if is_feature_name(name) else "neuron"


def feature_name(index: int, layer: int) -> str:
    """``L{layer}:f{index}``."""
    return f"L{layer}:{FEATURE_MARK}{int(index)}"


class UnitNames:
    """How one index names its units: neurons ``L:I`` (``feature_layer`` None), or the features of
    one SAE at model layer ``feature_layer`` as ``LL:fI`` (then ``n_layers`` is 1 and
    ``per_layer`` the SAE's number of features)."""

    __slots__ = ("n_layers", "per_layer", "feature_layer")

    def __init__(self, n_layers: int, per_layer: int, feature_layer: int | None = None):
        self.n_layers, self.per_layer, self.feature_layer = n_layers, per_layer, feature_layer

    @property
    def features(self) -> bool:
        return self.feature_layer is not None

    @property
    def noun(self) -> str:
        """``neuron`` or ``feature``."""
        return "feature" if self.features else "neuron"

    def name(self, flat: int) -> str:
        """The name of the unit at flat index ``flat``."""
        if self.feature_layer is not None:
            return feature_name(flat, self.feature_layer)
        return neuron_name(flat, self.per_layer)

    def flat(self, name: str) -> int:
        """The flat index of the unit ``name``; one-line errors for a name of the other kind, of
        another layer, or outside the index's units."""
        if self.feature_layer is None:
            if is_feature_name(name):
                raise BadNeuronName(f"'{str(name).strip()}' names an SAE feature; this index's units are neurons (LAYER:INDEX, e.g. 3:1021)")
            return NeuronId.parse(name).flat(self.n_layers, self.per_layer, shown=name)
        if not is_feature_name(name):
            raise BadFeatureName(f"'{str(name).strip()}' names a neuron; this index's units are the features of an SAE at "
                                 f"layer {self.feature_layer} (e.g. {feature_name(0, self.feature_layer)})")
        feature = FeatureId.parse(name)
        if feature.layer != self.feature_layer or not 0 <= feature.index < self.per_layer:
            raise BadFeatureName(f"feature {str(name).strip()} is out of range: this index holds features "
                                 f"{feature_name(0, self.feature_layer)} .. {feature_name(self.per_layer - 1, self.feature_layer)}")
        return feature.index


class ClusterId(tuple):
    """One cluster; ``method`` and ``k`` are None in a shortened id until :meth:`complete` fills them.
    ``k`` is 0 for a node of the cluster tree (``tree/ID``)."""

    __slots__ = ()
    method: str | None = property(itemgetter(0))  # type: ignore[assignment]
    k: int | None = property(itemgetter(1))  # type: ignore[assignment]
    number: int = property(itemgetter(2))  # type: ignore[assignment]

    def __new__(cls, method: str | None, k: int | None, number: int) -> "ClusterId":
        return tuple.__new__(cls, (method, k, number))

    def __repr__(self) -> str:
        return f"ClusterId(method={self.method!r}, k={self.k}, number={self.number})"

    @classmethod
    def parse(cls, text: str) -> "ClusterId":
        """``17``, ``k50/17``, ``filter+tfidf/k200/17``, ``tree/412`` or ``filter+tfidf/tree/412``."""
        parts = str(text).strip().split("/")
        try:
            if len(parts) == 1:
                return cls(None, None, _number(parts[0]))
            if len(parts) in (2, 3):
                method = parts[0] if len(parts) == 3 else None
                cut, number = parts[-2], _number(parts[-1])
                if cut == TREE:
                    return cls(method, 0, number)
                if cut.startswith("k") and int(cut[1:]) > 0:
                    return cls(method, int(cut[1:]), number)
        except ValueError:
            pass
        raise BadClusterId(f"bad cluster id '{text}': use ID, kK/ID, METHOD/kK/ID or tree/ID (e.g. 17, k200/17, tree/412)")

    @classmethod
    def of_row(cls, method: str, row_key: str) -> "ClusterId":
        """The cluster of ``method`` whose search-stage row key is ``kK/ID`` (or ``tree/ID``)."""
        parsed = cls.parse(row_key)
        if parsed.method is not None or parsed.k is None:
            raise BadClusterId(f"bad cluster row key '{row_key}': expected kK/ID")
        return cls(method, parsed.k, parsed.number)

    def complete(self, method: str, k: int) -> "ClusterId":
        """This id with a missing method or K filled in."""
        return ClusterId(self.method if self.method is not None else method, self.k if self.k is not None else k,
                         self.number)

    @property
    def row_key(self) -> str:
        """``kK/ID`` (``tree/ID``): the cluster's key among its method's search rows."""
        return f"{row_key_prefix(self.k)}{self.number}"

    def __str__(self) -> str:
        if self.method is None:
            return self.row_key if self.k is not None else str(self.number)
        return f"{self.method}/{self.row_key}"


def row_key_prefix(k: int) -> str:
    """``kK/``: how the row keys of the clusters at K start (``tree/`` for K = 0, the tree's nodes)."""
    return f"{TREE}/" if k == 0 else f"k{k}/"


def _number(text: str) -> int:
    """A cluster number: digits only (int() would also take "+3", " 3" or "3_0")."""
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def store_key(kind: str, item_id: str) -> str:
    """Key of an item in ``labels.json`` and ``ablations.json``: ``cluster:METHOD/kK/ID``, ``neuron:L:I``."""
    return f"{kind}:{item_id}"


def _neuron_text(layer: int, index: int) -> str:
    return f"{layer}:{index}"


def neuron_name(flat_index: int, neurons_per_layer: int) -> str:
    """``L:I`` of a flat index (what ``str(NeuronId.of_flat(...))`` gives, without the object:
    ``find`` names hundreds of neurons)."""
    return _neuron_text(*divmod(int(flat_index), neurons_per_layer))


def split_neuron(name: str) -> tuple[int, int]:
    """``"L:I"`` -> (layer, index); a feature ``"LL:fI"`` -> (its model layer, its index)."""
    if is_feature_name(name):
        return tuple(FeatureId.parse(name))  # type: ignore[return-value]
    return tuple(NeuronId.parse(name))  # type: ignore[return-value]


def parse_neuron(name: str, n_layers: int, neurons_per_layer: int) -> int:
    """Flat index of a neuron named ``L:I``; raises with a clear message when out of range."""
    return NeuronId.parse(name).flat(n_layers, neurons_per_layer, shown=name)


def cluster_id(method: str, k: int, number: int) -> str:
    """``METHOD/kK/ID``."""
    return str(ClusterId(method, k, number))
