"""WordNet, read straight from its database files: a concept's member words.

A category query ("months", "body parts") names a concept whose *members* (january, arm) are what
a specialised neuron fires for; embedding neighbours of the category word are mostly its
morphological variants and siblings (month, weeks, years). WordNet's noun hierarchy knows the
members: the hyponyms of the concept's synsets (kinds of kinds, all the way down), and optionally
the parts of wholes.
Many member words are polysemous ("date" is a fruit, "jack" a tool, "hip" a rose's fruit), and a
neuron fires for a word's usual sense, so each member also carries its *sense share*: how often the
word is used in the concept's sense, from WordNet's sense-tagged counts (``cntlist.rev``; 1 when the
file is absent), and whether it names its synset or is one of the synonyms listed after the name.

No NLTK needed: the reader parses the plain WordNet 3.x database (``index.noun``, ``data.noun``,
``noun.exc``, optionally ``cntlist.rev``), found in this order: ``$NEUROSEARCH_WORDNET``,
``$WNSEARCHDIR``, NLTK's data directories (``corpora/wordnet``, unzipped or as ``wordnet.zip``), ``/usr/share/wordnet``
(Debian/Ubuntu ``wordnet-base``), ``/usr/local/share/wordnet``, ``/opt/homebrew/share/wordnet``.
The build bakes the members of every concept into the index (``search/concepts.*``), so queries
need no WordNet at run time.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from neurosearch.index.concepts import ConceptTable, lemma_candidates, plural  # noqa: F401 (re-exported)

HYPERNYM_POINTERS = frozenset({"@", "@i"})
"""Hypernym and instance hypernym: what a synset is a kind (or a named instance) of."""
ANCESTOR_SENSES = 3
"""Noun senses of a token whose ancestors give the ``ancestor_similarity`` feature, most frequent
first: a token's rare senses bring ancestors it is seldom a kind of (the measurement:
docs/decisions.md, "Figures behind settings")."""
HYPONYM_POINTERS = frozenset({"~", "~i"})
"""Hyponym and instance hyponym: the kinds (and named instances) of a concept."""
PART_POINTERS = frozenset({"%p", "%m"})
"""Part and member meronyms: the parts of a whole (body -> arm), the members of a group."""

_SYSTEM_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/opt/homebrew/share/wordnet")


@dataclass(frozen=True)
class Membership:
    """How a word belongs to a concept: its depth below it, the share of its uses in that sense,
    and whether it is the name of its synset or one of the synonyms listed after the name."""

    depth: int
    """0: the concept's own lemmas, 1: direct kinds or parts, ..."""
    share: float
    """Sense share in [0, 1]: (tagged uses in this sense + 1/2) / (all tagged noun uses + n_senses/2)."""
    head: bool = True
    """The word is its synset's first lemma, the name WordNet gives the sense. The lemmas after it
    are synonyms, often rarer spellings or words whose usual sense is another one: the synset of
    five is "five, 5, V, cinque, quint, quintet, fivesome, quintuplet, pentad, fin, Phoebe"."""

    def better_than(self, other: "Membership | None") -> bool:
        """Shallower wins; at equal depth, a synset's name over a synonym, then the more usual sense."""
        return other is None or (self.depth, not self.head, -self.share) < (other.depth, not other.head, -other.share)


@dataclass(frozen=True)
class WordNetConfig:
    """How far a concept reaches into WordNet (defaults measured on the dev concepts)."""

    senses: int | None = None
    """Noun senses of the query taken, most frequent first (WordNet's order); None: all of them.
    Which sense a query means is decided at query time by evidence from the model (the sense whose
    members the model puts closest to the query, ``index/semantic.py``), not by WordNet's order:
    the first sense of "language" is the faculty (java, basic, fox are its kinds) and of "speech"
    the act (talk, conversation); only the corpus says which one a researcher's "languages" means."""
    depth: int | None = None
    """Levels of hyponyms (kinds of kinds) followed below each sense; None: all of them. Biology
    puts common members deep (animal > chordate > vertebrate > mammal > placental > carnivore >
    feline > cat: depth 7), and the query's depth decay already weighs near kinds above far ones
    (the whole subtree against depth 3: docs/decisions.md)."""
    parts: bool = False
    """Also take part and member meronyms of each sense and of its direct hyponyms. Off: a
    category's parts are not its members (tools -> handle, clothing -> sleeve, pocket), so a neuron
    for the parts would outrank one for the kinds (docs/decisions.md); "body parts" gets its members
    as hyponyms of "body part" anyway."""


def _nltk_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    dirs += [Path.home() / "nltk_data", Path("/usr/share/nltk_data"), Path("/usr/local/share/nltk_data"),
             Path("/usr/lib/nltk_data"), Path("/usr/local/lib/nltk_data")]
    return [d / "corpora" for d in dirs]


def find_wordnet() -> str | None:
    """Where the WordNet database is (a directory, or NLTK's ``wordnet.zip``), or None."""
    candidates: list[Path] = []
    for variable in ("NEUROSEARCH_WORDNET", "WNSEARCHDIR"):
        if os.environ.get(variable):
            candidates.append(Path(os.environ[variable]))
    for corpora in _nltk_dirs():
        candidates += [corpora / "wordnet", corpora / "wordnet.zip"]
    candidates += [Path(d) for d in _SYSTEM_DIRS]
    for candidate in candidates:
        if candidate.is_dir() and (candidate / "data.noun").is_file() and (candidate / "index.noun").is_file():
            return str(candidate)
        if candidate.suffix == ".zip" and candidate.is_file():
            return str(candidate)
    return None


def _open_text(source: str, name: str) -> Iterable[str]:
    if source.endswith(".zip"):
        with zipfile.ZipFile(source) as archive:
            member = next((n for n in archive.namelist() if n.rstrip("/").endswith("/" + name) or n == name), None)
            if member is None:
                raise FileNotFoundError(f"{name} not in {source}")
            return io.TextIOWrapper(io.BytesIO(archive.read(member)), encoding="utf-8").readlines()
    with open(Path(source) / name, encoding="utf-8") as handle:
        return handle.readlines()


class WordNet:
    """The noun hierarchy of a WordNet database: lemmas, senses, hyponyms, meronyms."""

    def __init__(self, source: str):
        self.source = source
        self.senses: dict[str, list[int]] = {}
        """lemma (spaces, lower case) -> synset offsets, most frequent sense first."""
        self.lemmas: dict[int, list[str]] = {}
        self.pointers: dict[int, list[tuple[str, int]]] = {}
        self.exceptions: dict[str, str] = {}
        self.sense_counts: dict[tuple[str, int], int] = {}
        """(lemma, sense number from 1) -> times the sense was tagged in WordNet's corpora."""
        self._shares: dict[tuple[str, int], float] = {}
        self.version = "WordNet"
        for line in _open_text(source, "index.noun"):
            if line.startswith(" "):  # licence header, which names the version
                found = re.search(r"WordNet (\d+\.\d+)", line)
                if found and self.version == "WordNet":
                    self.version = f"WordNet {found.group(1)}"
                continue
            fields = line.split()
            lemma, pointer_count = fields[0], int(fields[3])
            synset_count = int(fields[2])
            offsets = fields[6 + pointer_count : 6 + pointer_count + synset_count]
            self.senses[lemma.replace("_", " ").lower()] = [int(o) for o in offsets]
        for line in _open_text(source, "data.noun"):
            if line.startswith(" "):
                continue
            fields = line.split(" | ", 1)[0].split()
            offset, word_count = int(fields[0]), int(fields[3], 16)
            words = [fields[4 + 2 * i].replace("_", " ").lower() for i in range(word_count)]
            # strip adjective markers such as "(p)" that never occur in nouns, then the pointers
            position = 4 + 2 * word_count
            pointer_count = int(fields[position])
            links = []
            for i in range(pointer_count):
                symbol, target, pos = fields[position + 1 + 4 * i : position + 4 + 4 * i]
                if pos == "n":
                    links.append((symbol, int(target)))
            self.lemmas[offset] = words
            self.pointers[offset] = links
        try:
            for line in _open_text(source, "noun.exc"):
                parts = line.split()
                if len(parts) >= 2:
                    self.exceptions[parts[0].replace("_", " ")] = parts[1].replace("_", " ")
        except FileNotFoundError:
            pass
        try:
            for line in _open_text(source, "cntlist.rev"):  # "dog%1:05:00:: 1 42": noun sense 1, 42 uses
                parts = line.split()
                if len(parts) == 3 and "%1:" in parts[0]:
                    lemma = parts[0].split("%", 1)[0].replace("_", " ").lower()
                    self.sense_counts[(lemma, int(parts[1]))] = int(parts[2])
        except FileNotFoundError:
            pass

    @classmethod
    def find(cls) -> "WordNet | None":
        source = find_wordnet()
        return cls(source) if source else None

    def base_forms(self, phrase: str) -> list[str]:
        """Noun lemmas of a phrase (WordNet's morphy on its last word): 'body parts' -> ['body part']."""
        candidates = lemma_candidates(phrase)
        if not candidates[0]:
            return []
        head, _, last = candidates[0].rpartition(" ")
        if last in self.exceptions:  # irregular plurals: "children" -> "child"
            candidates.insert(1, f"{head} {self.exceptions[last]}" if head else self.exceptions[last])
        return [lemma for lemma in dict.fromkeys(candidates) if lemma in self.senses]

    def sense_share(self, word: str, offset: int) -> float:
        """Share of ``word``'s tagged noun uses that are in synset ``offset`` (add-1/2 smoothed).

        Remembered per (word, synset): the build asks again for every concept above the synset."""
        key = (word, offset)
        share = self._shares.get(key)
        if share is None:
            offsets = self.senses.get(word)
            if not self.sense_counts or not offsets or offset not in offsets:
                share = 1.0
            else:
                counts = [self.sense_counts.get((word, number), 0) for number in range(1, len(offsets) + 1)]
                share = (counts[offsets.index(offset)] + 0.5) / (sum(counts) + 0.5 * len(offsets))
            self._shares[key] = share
        return share

    def ancestors(self, word: str, senses: int = ANCESTOR_SENSES) -> list[str]:
        """The names (first lemmas) of every synset above ``word``'s first ``senses`` noun senses,
        all the way up ("valley": natural depression, geological formation, object, entity, ...):
        what WordNet says the word is a kind of."""
        forms = self.base_forms(word)
        if not forms:
            return []
        frontier = list(self.senses.get(forms[0], [])[:senses])
        seen, names = set(frontier), []
        while frontier:
            following = []
            for node in frontier:
                for symbol, target in self.pointers.get(node, []):
                    if symbol in HYPERNYM_POINTERS and target not in seen:
                        seen.add(target)
                        following.append(target)
                        names.append(self.lemmas[target][0])
            frontier = following
        return list(dict.fromkeys(names))

    def members(self, phrase: str, config: WordNetConfig = WordNetConfig()) -> dict[str, int]:
        """Words under a concept -> their depth (0: the concept's own lemmas, 1: direct kinds, ...)."""
        return {word: membership.depth for word, membership in self.memberships(phrase, config).items()}

    def memberships(self, phrase: str, config: WordNetConfig = WordNetConfig()) -> dict[str, Membership]:
        """Words under a concept -> how they belong to it (where a word is reached more than once:
        the shallowest, then as its synset's name, then in its most usual sense; ``better_than``)."""
        found: dict[str, Membership] = {}
        for lemma in self.base_forms(phrase):
            for sense in self.senses_of(lemma, config):
                for word, membership in sense.members.items():
                    if membership.better_than(found.get(word)):
                        found[word] = membership
        return found

    def senses_of(self, lemma: str, config: WordNetConfig = WordNetConfig()) -> list["Sense"]:
        """The noun senses of a lemma (``config.senses`` of them, WordNet's order), each with the
        lemma's share of uses in it and its members: the synset's own lemmas at depth 0, then its
        hyponyms and instance hyponyms (and with ``config.parts`` its parts) below it."""
        offsets = self.senses.get(lemma, [])
        return [Sense(offset, self.sense_share(lemma, offset), self._subtree(offset, config))
                for offset in offsets[: config.senses]]

    def _subtree(self, offset: int, config: WordNetConfig) -> dict[str, Membership]:
        found: dict[str, Membership] = {}

        def add(node: int, depth: int) -> None:
            for position, word in enumerate(self.lemmas.get(node, [])):
                candidate = Membership(depth, self.sense_share(word, node), head=position == 0)
                if candidate.better_than(found.get(word)):
                    found[word] = candidate

        frontier, seen = [offset], {offset}
        add(offset, 0)
        depth = 0
        while frontier and (config.depth is None or depth < config.depth):
            depth += 1
            following = []
            for node in frontier:
                for symbol, target in self.pointers.get(node, []):
                    wanted = symbol in HYPONYM_POINTERS or (config.parts and depth <= 2 and symbol in PART_POINTERS)
                    if wanted and target not in seen:
                        seen.add(target)
                        following.append(target)
                        add(target, depth)
            frontier = following
        return found


@dataclass(frozen=True)
class Sense:
    """One noun sense of a concept word: its synset, how often the word is used in it, its members."""

    offset: int
    share: float
    """The concept word's share of its tagged noun uses in this sense (``WordNet.sense_share``)."""
    members: dict[str, Membership]


@dataclass(frozen=True)
class KeptSense:
    """A sense restricted to an index's kept tokens: kept index -> membership (plurals included)."""

    share: float
    members: dict[int, Membership]


def kept_senses(wordnet: WordNet, lemma: str, kept: dict[str, int], irregular: dict[str, list[str]],
                config: WordNetConfig = WordNetConfig()) -> list[KeptSense]:
    """The senses of ``lemma`` with their members among the kept tokens (token -> index), each
    member word also as its plural and irregular inflections (``irregular``: base -> forms).
    Two-letter abbreviations ("th": Thursday) are left out: they match unrelated word pieces."""
    found = []
    for sense in wordnet.senses_of(lemma, config):
        members: dict[int, Membership] = {}
        for word, membership in sense.members.items():
            if len(word) < 3 and word.isalpha():
                continue
            for form in (word, plural(word), *irregular.get(word, ())):
                index = kept.get(form)
                if index is not None and membership.better_than(members.get(index)):
                    members[index] = membership
        found.append(KeptSense(sense.share, members))
    return found


def irregular_forms(wordnet: WordNet) -> dict[str, list[str]]:
    """Base form -> its irregular inflections (noun.exc: child -> children)."""
    irregular: dict[str, list[str]] = {}
    for inflected, base in wordnet.exceptions.items():
        irregular.setdefault(base, []).append(inflected)
    return irregular


SenseEvidence = Callable[[str, list[int]], float]
"""(concept lemma, a sense's member token indices) -> how strongly the model ties that sense to the
lemma (``index.semantic.sense_evidence``)."""


def kept_concepts(wordnet: WordNet, kept_tokens: list[str], config: WordNetConfig = WordNetConfig(),
                  min_members: int = 2) -> dict[str, list[KeptSense]]:
    """Every noun lemma with at least ``min_members`` distinct kept tokens among its senses' members
    (its own lemmas included), with those senses (``kept_senses``)."""
    kept = {token: index for index, token in enumerate(kept_tokens)}
    irregular = irregular_forms(wordnet)
    found = {}
    for lemma in wordnet.senses:
        senses = kept_senses(wordnet, lemma, kept, irregular, config)
        if len({index for sense in senses for index in sense.members}) >= min_members:
            found[lemma] = senses
    return found


def concept_table(wordnet: WordNet, kept_tokens: list[str], config: WordNetConfig = WordNetConfig(),
                  min_members: int = 2, evidence: SenseEvidence | None = None,
                  concepts: dict[str, list[KeptSense]] | None = None) -> ConceptTable:
    """Members (and their plurals) of every noun lemma with ``min_members`` of them among the kept
    tokens (``concepts``: ``kept_concepts``' result, computed when None), each through the sense
    that ``evidence`` supports best (without it: the shallowest, WordNet's first sense on ties). A
    token that is one of a sense's own lemmas (depth 0) and a member of another sense counts as a
    member."""
    import numpy as np

    if concepts is None:
        concepts = kept_concepts(wordnet, kept_tokens, config, min_members)
    entries: dict[str, list[tuple[int, Membership, float, float]]] = {}
    for lemma, senses in concepts.items():
        found: dict[int, tuple[Membership, float, float]] = {}  # index -> membership, sense share, evidence
        for sense in senses:
            if not sense.members:
                continue
            score = evidence(lemma, [i for i, m in sense.members.items() if m.depth > 0]) if evidence else 0.0
            for index, membership in sense.members.items():
                have = found.get(index)
                if have is None or _chosen(membership, score, have):
                    found[index] = (membership, sense.share, score)
        entries[lemma] = sorted(((i, *v) for i, v in found.items()), key=lambda item: (item[1].depth, item[0]))
    for inflected, base in wordnet.exceptions.items():  # "feet" finds "foot", "children" "child"
        if base in entries and inflected not in entries:
            entries[inflected] = entries[base]
    keys = sorted(entries)
    rows = [row for key in keys for row in entries[key]]
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(entries[key]) for key in keys])
    count = len(rows)
    return ConceptTable(
        keys, offsets,
        np.fromiter((r[0] for r in rows), dtype=np.int32, count=count),
        np.fromiter((r[1].depth for r in rows), dtype=np.uint8, count=count),
        np.fromiter((r[1].share for r in rows), dtype=np.float16, count=count),
        np.fromiter((r[1].head for r in rows), dtype=np.uint8, count=count),
        np.fromiter((r[2] for r in rows), dtype=np.float16, count=count),
        np.fromiter((r[3] for r in rows), dtype=np.float16, count=count),
    )


def _chosen(membership: Membership, evidence: float, have: tuple[Membership, float, float]) -> bool:
    """Whether a token's membership through a new sense replaces the one it has: a member (depth >= 1)
    beats one of the concept's own lemmas; among members the better-supported sense wins, and
    without evidence the better membership (``Membership.better_than``)."""
    old, _, old_evidence = have
    if (membership.depth > 0) != (old.depth > 0):
        return membership.depth > 0
    if evidence != old_evidence:
        return evidence > old_evidence
    return membership.better_than(old)
