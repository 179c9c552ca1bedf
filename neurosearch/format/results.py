"""The ablation result: one typed contract for ``ablate``, ``show``, ``evaluate`` and the plots.

JSON (``AblationResult.to_json``, ``"format": 2``)::

    {"format": 2,
     "verdict": {"passed": true, "readout": "embedding", "beats": ["random", ...], "p": 0.0004,
                 "p_empirical": 0.048, "level": 0.05, "baselines": [...], "notes": []},
     "target": {"kind": "cluster", "id": "filter+smooth+tfidf/k200/84", "neurons": ["0:12", ...],
                "neurons_sha256": "...", "tokens": ["monday", ...], "token_source": "query"},
     "ablation": "mean", "seed": 0, "draws": 20, "level": 0.05,
     "sentences": 64, "sentences_asked": 64, "sentences_per_token": {"monday": 11, ...},
     "readouts": {"embedding": {"statistic": "displacement ratio", "value": 4.1,
                                "measures": {...},
                                "baselines": {"random": {"mean": 0.95, "std": 0.1, "z": 31.0, "p": 1e-9,
                                                         "p_empirical": 0.048, "draws": [...]}, ...},
                                "verdict": {...}}},
     "notes": [], "method": null, "k": null, "seconds": 41.2, "created": "2025-01-01T00:00:00Z"}

The top-level verdict is the first readout's. Results written before this contract (``ablations.json``
version 1, the shipped ``evaluation/results.jsonl``: masked-LM readout, 5 draws, ``change_pct`` and
``draws_pct``) load as ``legacy`` results: their numbers are kept, their verdict is recomputed with
today's rule (5 draws cannot pass the rank test) and a note says what they are.

A stored result is about exactly its neuron set (``neurons_sha256``, recomputed from the neuron
list on load); ``stored.lookup`` finds the stored result of a cluster or neuron only when its
neurons are the ones it has now. Standard library only (``show`` reads these without torch).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

from neurosearch.format.layout import RESULT_FORMAT
from neurosearch.verdicts import Verdict, rank_p, verdict
from neurosearch.verdicts import finite as _finite
from neurosearch.verdicts import number as _num

STATISTICS = {"mlm": "% change of the masked-LM loss on masked target tokens",
              "mlm-context": "% change of the masked-LM loss on masked tokens next to visible targets",
              "embedding": "sentence-embedding displacement, target sentences / control sentences"}


def _neuron_order(name: str) -> tuple[int, int, str]:
    layer, _, index = str(name).partition(":")
    try:
        return int(layer), int(index), ""
    except ValueError:  # not L:I (a damaged record): ordered after every real name
        return 1 << 62, 0, str(name)


def neuron_hash(names: Sequence[str]) -> str:
    """sha256 of a neuron set (names ``L:I``, order-free): the identity a stored result is about."""
    ordered = sorted({str(n) for n in names}, key=_neuron_order)
    return hashlib.sha256(",".join(ordered).encode("utf-8")).hexdigest()


def _int(value: Any) -> int:
    number = _num(value)
    return int(number) if math.isfinite(number) else 0


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class BaselineResult:
    """The target's statistic against one baseline's random draws."""

    kind: str
    mean: float
    std: float
    z: float
    p: float
    """One-sided t prediction p."""
    p_empirical: float
    """One-sided rank p, (1 + draws >= value) / (1 + draws)."""
    draws: list[float]
    """The statistic of every draw."""

    def to_json(self) -> dict[str, Any]:
        return {"mean": _finite(self.mean), "std": _finite(self.std), "z": _finite(self.z), "p": _finite(self.p),
                "p_empirical": _finite(self.p_empirical), "draws": [_finite(d) for d in self.draws]}

    @classmethod
    def from_json(cls, kind: str, data: dict[str, Any]) -> "BaselineResult":
        draws = _list(data.get("draws", data.get("draws_pct", data.get("losses"))))  # v1 wrote draws_pct
        return cls(kind=kind, mean=_num(data.get("mean", data.get("mean_pct"))),
                   std=_num(data.get("std", data.get("std_pct"))), z=_num(data.get("z")), p=_num(data.get("p")),
                   p_empirical=_num(data.get("p_empirical")), draws=[_num(d) for d in draws])


@dataclass
class MaskedLMMeasures:
    """What the masked-LM readouts measured (``mlm``: masked targets; ``mlm-context``: their neighbours)."""

    head: str
    """``model`` (the model's own MLM head) or ``fitted`` (the index's fitted head)."""
    loss: float
    """Mean clean loss over the scored positions (nats)."""
    loss_ablated: float
    scored_tokens: int
    """Masked positions scored: target occurrences (``mlm``) or context tokens beside them."""
    control_tokens: int
    control_change_pct: float
    """% loss change on the control positions (other masked tokens of the same sentences)."""

    def to_json(self) -> dict[str, Any]:
        return {"head": self.head, "loss": _finite(self.loss), "loss_ablated": _finite(self.loss_ablated),
                "scored_tokens": self.scored_tokens, "control_tokens": self.control_tokens,
                "control_change_pct": _finite(self.control_change_pct)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "MaskedLMMeasures":
        return cls(head=str(data.get("head", "?")), loss=_num(data.get("loss")),
                   loss_ablated=_num(data.get("loss_ablated")),
                   scored_tokens=_int(data.get("scored_tokens", data.get("masked_tokens", 0))),
                   control_tokens=_int(data.get("control_tokens", 0)),
                   control_change_pct=_num(data.get("control_change_pct")))


@dataclass
class EmbeddingMeasures:
    """What the embedding readout measured: mean displacement of the model's sentence embedding."""

    pooling: str
    displacement_target: float
    """Mean L2 distance between clean and ablated embeddings of the target sentences."""
    displacement_control: float
    """The same on the length-matched control sentences (no target token)."""
    control_sentences: int

    def to_json(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "displacement_target": _finite(self.displacement_target),
                "displacement_control": _finite(self.displacement_control),
                "control_sentences": self.control_sentences}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "EmbeddingMeasures":
        return cls(pooling=str(data.get("pooling", "?")), displacement_target=_num(data.get("displacement_target")),
                   displacement_control=_num(data.get("displacement_control")),
                   control_sentences=_int(data.get("control_sentences", 0)))


Measures = Union[MaskedLMMeasures, EmbeddingMeasures]


@dataclass
class ReadoutResult:
    """One readout's statistic for the target, its baselines and its verdict."""

    readout: str
    value: float
    """The target's statistic (see ``STATISTICS``): larger means a stronger, more specific effect."""
    baselines: dict[str, BaselineResult]
    verdict: Verdict
    measures: Measures

    @property
    def statistic(self) -> str:
        return STATISTICS.get(self.readout, self.readout)

    def to_json(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "value": _finite(self.value), "measures": self.measures.to_json(),
                "baselines": {k: b.to_json() for k, b in self.baselines.items()}, "verdict": self.verdict.to_json()}

    @classmethod
    def from_json(cls, readout: str, data: dict[str, Any]) -> "ReadoutResult":
        kind = EmbeddingMeasures if readout == "embedding" else MaskedLMMeasures
        return cls(readout=readout, value=_num(data.get("value")), measures=kind.from_json(data.get("measures", {})),
                   baselines={k: BaselineResult.from_json(k, b) for k, b in data.get("baselines", {}).items()},
                   verdict=Verdict.from_json(data["verdict"]))


@dataclass
class TargetRecord:
    """What was ablated and which tokens' sentences were read."""

    kind: str
    id: str
    neurons: list[str]
    neurons_sha256: str
    tokens: list[str]
    token_source: str = "given"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "neurons": list(self.neurons), "neurons_sha256": self.neurons_sha256,
                "tokens": list(self.tokens), "token_source": self.token_source}

    @classmethod
    def from_json(cls, data: dict[str, Any], tokens: list[str] | None = None) -> "TargetRecord":
        neurons = [str(n) for n in _list(data.get("neurons"))]  # the hash is recomputed: a record cannot claim others
        return cls(kind=str(data.get("kind", "?")), id=str(data.get("id", "?")), neurons=neurons,
                   neurons_sha256=neuron_hash(neurons),
                   tokens=[str(t) for t in _list(data.get("tokens", tokens or []))],
                   token_source=str(data.get("token_source", "given")))


@dataclass
class AblationResult:
    """One ablation experiment on one target, in one or more readouts."""

    target: TargetRecord
    ablation: str
    seed: int
    draws: int
    """Draws of each baseline."""
    level: float
    sentences: int
    """Target sentences read (each readout reads these; ``embedding`` adds as many controls)."""
    sentences_asked: int
    sentences_per_token: dict[str, int]
    readouts: dict[str, ReadoutResult]
    """In the order asked; the first gives the verdict."""
    notes: list[str] = field(default_factory=list)
    method: str | None = None
    k: int | None = None
    seconds: float | None = None
    created: str | None = None
    legacy: bool = False
    """Written before format 2 (see module docstring): kept readable, never a verdict of today's rule."""

    @property
    def verdict(self) -> Verdict:
        return next(iter(self.readouts.values())).verdict

    @property
    def primary(self) -> ReadoutResult:
        return next(iter(self.readouts.values()))

    def target_key(self) -> str:
        """``cluster:METHOD/kK/ID``, ``neuron:L:I`` or ``neurons:L:I,L:I``: what ``show`` looks up."""
        return f"{self.target.kind}:{self.target.id}"

    def store_key(self) -> str:
        """One stored result per target, neuron set, target tokens, readouts, ablation, draws and seed
        (one cluster measured on two concepts' tokens keeps both)."""
        tokens = hashlib.sha256("\n".join(self.target.tokens).encode("utf-8")).hexdigest()[:8]
        return "#".join([self.target_key(), self.target.neurons_sha256[:16], f"tokens{tokens}", "+".join(self.readouts),
                         self.ablation, f"draws{self.draws}", f"seed{self.seed}"])

    def to_json(self) -> dict[str, Any]:
        return {"format": RESULT_FORMAT, "verdict": self.verdict.to_json(), "target": self.target.to_json(),
                "ablation": self.ablation, "seed": self.seed, "draws": self.draws, "level": self.level,
                "sentences": self.sentences, "sentences_asked": self.sentences_asked,
                "sentences_per_token": dict(self.sentences_per_token),
                "readouts": {name: r.to_json() for name, r in self.readouts.items()}, "notes": list(self.notes),
                "method": self.method, "k": self.k, "seconds": self.seconds, "created": self.created,
                **({"legacy": True} if self.legacy else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AblationResult":
        """A result from its JSON; records of before format 2 load as legacy results. A damaged
        format-2 record raises ValueError (readers skip it; ``neurosearch verify`` names it)."""
        if not isinstance(data, dict):
            raise ValueError("a stored result is not an object")
        if data.get("format") != RESULT_FORMAT:
            return _from_v1(data)
        try:
            readouts = {str(name): ReadoutResult.from_json(str(name), r) for name, r in data["readouts"].items()}
            if not readouts:
                raise ValueError("a stored result without any readout")
            return cls(target=TargetRecord.from_json(data["target"]), ablation=str(data["ablation"]),
                       seed=int(data["seed"]), draws=int(data["draws"]), level=float(data["level"]),
                       sentences=int(data["sentences"]), sentences_asked=_int(data.get("sentences_asked", 0)),
                       sentences_per_token={str(k): _int(v) for k, v in _dict(data.get("sentences_per_token")).items()},
                       readouts=readouts, notes=[str(n) for n in _list(data.get("notes"))],
                       method=data["method"] if isinstance(data.get("method"), str) else None,
                       k=data["k"] if isinstance(data.get("k"), int) else None,
                       seconds=_num(data["seconds"]) if data.get("seconds") is not None else None,
                       created=str(data["created"]) if data.get("created") is not None else None,
                       legacy=bool(data.get("legacy", False)))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"a damaged stored result ({type(exc).__name__}: {exc})") from None


LEGACY_NOTE = ("computed before result format 2 (masked-LM readout, unfiltered top-30 target tokens, "
               "baseline draws shared between targets); shown as recorded, not a verdict of today's rule")


def _from_v1(data: dict[str, Any]) -> AblationResult:
    change = _num(data.get("change_pct"))
    baselines = {str(k): BaselineResult.from_json(str(k), b) for k, b in _dict(data.get("baselines")).items()
                 if isinstance(b, dict)}
    for kind, b in baselines.items():
        if not math.isfinite(b.p_empirical) and b.draws:
            b.p_empirical = rank_p(change, b.draws)
    measures = MaskedLMMeasures.from_json(data)
    readout = ReadoutResult("mlm", change, baselines, verdict("mlm", change, list(baselines.values()), 0.05), measures)
    draws = max((len(b.draws) for b in baselines.values()), default=0)
    if not draws:
        draws = max((_int(b.get("seeds", 0)) for b in _dict(data.get("baselines")).values() if isinstance(b, dict)),
                    default=0)
    stored = _dict(data.get("target"))
    kind = str(stored.get("kind", "?"))
    if kind == "neurons" and "," not in str(stored.get("id", "")):
        kind = "neuron"
    target = TargetRecord.from_json({**stored, "kind": kind}, tokens=_list(data.get("tokens")))
    target.token_source = "top tokens (v1, unfiltered)"
    k = data.get("k")
    return AblationResult(target=target, ablation=str(data.get("ablation", "mean")), seed=0, draws=draws, level=0.05,
                          sentences=_int(data.get("sentences", 0)), sentences_asked=_int(data.get("sentences", 0)),
                          sentences_per_token={}, readouts={"mlm": readout}, notes=[LEGACY_NOTE],
                          method=data["method"] if isinstance(data.get("method"), str) else None,
                          k=k if isinstance(k, int) and not isinstance(k, bool) else None,
                          seconds=_num(data.get("seconds")) if data.get("seconds") is not None else None, legacy=True)
