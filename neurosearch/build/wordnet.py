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
from typing import Iterable

from neurosearch.index.concepts import ConceptTable, lemma_candidates, plural  # noqa: F401 (re-exported)

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

    senses: int = 3
    """Most frequent noun senses of the query taken (WordNet lists senses by frequency)."""
    depth: int | None = None
    """Levels of hyponyms (kinds of kinds) followed below each sense; None: all of them. Biology
    puts common members deep (animal > chordate > vertebrate > mammal > placental > carnivore >
    feline > cat: depth 7), and the query's depth decay already weighs near kinds above far ones;
    the whole subtree raised top-1 neuron P@10 on the dev concepts over depth 3 (README)."""
    parts: bool = False
    """Also take part and member meronyms of each sense and of its direct hyponyms. Off: a
    category's parts are not its members (tools -> handle, clothing -> sleeve, pocket), and with
    them a neuron for the parts outranked one for the kinds on the held-out concepts; "body parts"
    gets its members as hyponyms of "body part" anyway (README)."""


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

    def members(self, phrase: str, config: WordNetConfig = WordNetConfig()) -> dict[str, int]:
        """Words under a concept -> their depth (0: the concept's own lemmas, 1: direct kinds, ...)."""
        return {word: membership.depth for word, membership in self.memberships(phrase, config).items()}

    def memberships(self, phrase: str, config: WordNetConfig = WordNetConfig()) -> dict[str, Membership]:
        """Words under a concept -> how they belong to it (where a word is reached more than once:
        the shallowest, then as its synset's name, then in its most usual sense; ``better_than``)."""
        found: dict[str, Membership] = {}

        def add(offset: int, depth: int) -> None:
            for position, word in enumerate(self.lemmas.get(offset, [])):
                candidate = Membership(depth, self.sense_share(word, offset), head=position == 0)
                if candidate.better_than(found.get(word)):
                    found[word] = candidate

        for lemma in self.base_forms(phrase):
            for offset in self.senses[lemma][: config.senses]:
                frontier, seen = [offset], {offset}
                add(offset, 0)
                depth = 0
                while frontier and (config.depth is None or depth < config.depth):
                    depth += 1
                    following = []
                    for node in frontier:
                        for symbol, target in self.pointers.get(node, []):
                            wanted = symbol in HYPONYM_POINTERS or (
                                config.parts and depth <= 2 and symbol in PART_POINTERS)
                            if wanted and target not in seen:
                                seen.add(target)
                                following.append(target)
                                add(target, depth)
                    frontier = following
        return found


def concept_table(wordnet: WordNet, kept_tokens: list[str], config: WordNetConfig = WordNetConfig(),
                  min_members: int = 2) -> ConceptTable:
    """Members (and their plurals) of every noun lemma, restricted to the kept tokens."""
    import numpy as np

    kept = {token: index for index, token in enumerate(kept_tokens)}
    irregular: dict[str, list[str]] = {}
    for inflected, base in wordnet.exceptions.items():
        irregular.setdefault(base, []).append(inflected)
    entries: dict[str, list[tuple[int, Membership]]] = {}
    for lemma in wordnet.senses:
        found: dict[int, Membership] = {}
        for word, membership in wordnet.memberships(lemma, config).items():
            if len(word) < 3 and word.isalpha():  # abbreviations ("th": Thursday) match unrelated pieces
                continue
            for form in (word, plural(word), *irregular.get(word, ())):
                index = kept.get(form)
                if index is not None and membership.better_than(found.get(index)):
                    found[index] = membership
        if len(found) >= min_members:
            entries[lemma] = sorted(found.items(), key=lambda item: (item[1].depth, item[0]))
    for inflected, base in wordnet.exceptions.items():  # "feet" finds "foot", "children" "child"
        if base in entries and inflected not in entries:
            entries[inflected] = entries[base]
    keys = sorted(entries)
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(entries[key]) for key in keys])
    members = np.fromiter((m for key in keys for m, _ in entries[key]), dtype=np.int32, count=int(offsets[-1]))
    depths = np.fromiter((m.depth for key in keys for _, m in entries[key]), dtype=np.uint8, count=int(offsets[-1]))
    shares = np.fromiter((m.share for key in keys for _, m in entries[key]), dtype=np.float16, count=int(offsets[-1]))
    heads = np.fromiter((m.head for key in keys for _, m in entries[key]), dtype=np.uint8, count=int(offsets[-1]))
    return ConceptTable(keys, offsets, members, depths, shares, heads)
