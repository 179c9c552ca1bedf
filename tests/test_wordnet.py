"""WordNet concept members: the database reader, the baked concept table, and query expansion."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from neurosearch.pipeline.wordnet import (
    Membership, WordNet, WordNetConfig, concept_table, find_wordnet, lemma_candidates, plural,
)

# A hand-made WordNet database in the real file format (offsets are only identifiers here).
SYNSETS = {
    # offset: (words, [(pointer symbol, target offset)])
    1: (["weekday"], [("~", 2), ("~", 3), ("~", 4)]),
    2: (["Monday", "Mon"], [("@", 1)]),
    3: (["Tuesday"], [("@", 1)]),
    4: (["Friday"], [("@", 1)]),
    10: (["colour", "color"], [("~", 11)]),
    11: (["chromatic_colour"], [("@", 10), ("~", 12), ("~", 13), ("~i", 14)]),
    12: (["red"], [("@", 11)]),
    13: (["green"], [("@", 11)]),
    14: (["blue"], [("@i", 11)]),
    20: (["animal"], [("~", 21), ("~", 22)]),
    21: (["dog"], [("@", 20), ("%p", 23)]),
    22: (["cat"], [("@", 20)]),
    23: (["tail"], [("#p", 21)]),
    30: (["child", "kid"], []),
    40: (["date"], [("@", 41)]),  # the fruit: a rare sense of "date"
    41: (["fruit"], [("~", 40), ("~", 42)]),
    42: (["apple"], [("@", 41)]),
    50: (["date"], []),  # the calendar date: its usual sense
    60: (["language"], [("~", 61), ("~", 62)]),  # the sense a researcher means ...
    61: (["English"], [("@", 60)]),
    62: (["French"], [("@", 60)]),
    63: (["speech", "language"], [("~", 64), ("~", 65)]),  # ... and the one WordNet lists first
    64: (["talk"], [("@", 63)]),
    65: (["conversation"], [("@", 63)]),
}
LEMMAS = {"weekday": [1], "monday": [2], "mon": [2], "tuesday": [3], "friday": [4], "colour": [10],
          "color": [10], "chromatic_colour": [11], "red": [12], "green": [13], "blue": [14],
          "animal": [20], "dog": [21], "cat": [22], "tail": [23], "child": [30], "kid": [30],
          "date": [50, 40], "fruit": [41], "apple": [42],
          "language": [63, 60], "english": [61], "french": [62], "speech": [63], "talk": [64], "conversation": [65]}
SENSE_COUNTS = ("date%1:28:00:: 1 30\ndate%1:13:00:: 2 2\nfruit%1:13:00:: 1 5\nmonday%1:28:00:: 1 4\n"
                "language%1:10:00:: 1 10\nlanguage%1:10:01:: 2 3\n")
HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.\n"


def write_wordnet(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for offset, (words, pointers) in SYNSETS.items():
        head = f"{offset:08d} 03 n {len(words):02x} " + " ".join(f"{w} 0" for w in words)
        links = " ".join(f"{symbol} {target:08d} n 0000" for symbol, target in pointers)
        lines.append(f"{head} {len(pointers):03d} {links} | a gloss".replace("  ", " "))
    (directory / "data.noun").write_text(HEADER + "\n".join(lines) + "\n")
    index = [f"{lemma} n {len(offsets)} 0 {len(offsets)} 0 " + " ".join(f"{o:08d}" for o in offsets)
             for lemma, offsets in sorted(LEMMAS.items())]
    (directory / "index.noun").write_text(HEADER + "\n".join(index) + "\n")
    (directory / "noun.exc").write_text("children child\n")
    (directory / "cntlist.rev").write_text(SENSE_COUNTS)
    return directory


@pytest.fixture()
def wordnet_dir(tmp_path: Path) -> Path:
    return write_wordnet(tmp_path / "wordnet")


def test_reader_follows_hyponyms_parts_and_depth(wordnet_dir: Path):
    wordnet = WordNet(str(wordnet_dir))
    assert wordnet.version == "WordNet 3.0"
    assert wordnet.members("weekdays") == {"weekday": 0, "monday": 1, "mon": 1, "tuesday": 1, "friday": 1}
    # instance hyponyms count; depth 2 reaches the colours themselves
    assert wordnet.members("colors") == {"colour": 0, "color": 0, "chromatic colour": 1, "red": 2, "green": 2, "blue": 2}
    assert "red" not in wordnet.members("colour", WordNetConfig(depth=1))
    # part meronyms (a dog's tail) only when asked for: parts are not kinds
    assert wordnet.members("animals", WordNetConfig(parts=True))["tail"] == 2
    assert "tail" not in wordnet.members("animals")
    assert wordnet.base_forms("children") == ["child"]
    assert wordnet.members("nothing here") == {}


def test_members_carry_the_share_of_their_uses_in_the_concepts_sense(wordnet_dir: Path):
    wordnet = WordNet(str(wordnet_dir))
    fruit = wordnet.memberships("fruits")
    # "date" is tagged 30 times as a calendar date and twice as a fruit: (2 + 1/2) / (32 + 2/2)
    assert fruit["date"] == Membership(1, pytest.approx(2.5 / 33))
    assert fruit["apple"] == Membership(1, 1.0)  # one sense, never tagged: all its uses are this one
    assert wordnet.memberships("weekday")["monday"].share == 1.0
    assert WordNet(str(wordnet_dir)).members("fruit") == {"fruit": 0, "date": 1, "apple": 1}
    (wordnet_dir / "cntlist.rev").unlink()  # without sense counts every share is 1
    assert WordNet(str(wordnet_dir)).memberships("fruits")["date"].share == 1.0


def test_members_say_whether_they_name_their_synset(wordnet_dir: Path):
    wordnet = WordNet(str(wordnet_dir))
    weekday = wordnet.memberships("weekday")
    assert weekday["monday"].head and not weekday["mon"].head  # "Monday, Mon": Mon is a synonym
    colour = wordnet.memberships("colour")
    assert colour["colour"].head and not colour["color"].head and colour["red"].head
    # at equal depth a synset's name beats a synonym, whatever the shares
    assert Membership(1, 0.1, head=True).better_than(Membership(1, 1.0, head=False))
    assert Membership(1, 1.0, head=False).better_than(Membership(2, 1.0, head=True))


def test_each_member_comes_through_the_sense_the_evidence_supports(wordnet_dir: Path):
    wordnet = WordNet(str(wordnet_dir))
    senses = wordnet.senses_of("language")
    assert [sorted(sense.members) for sense in senses] == [["conversation", "language", "speech", "talk"],
                                                          ["english", "french", "language"]]
    kept = ["english", "french", "talk", "conversation", "language"]
    by_index = {i: t for i, t in enumerate(kept)}
    # evidence for the sense holding English and French (the model puts them close to "language")
    evidence = lambda lemma, members: 0.9 if 0 in members else 0.2  # noqa: E731
    table = concept_table(wordnet, kept, evidence=evidence)
    found = {by_index[m.index]: m for m in table.entries("language")}
    assert found["english"].evidence == pytest.approx(0.9, abs=1e-3) and found["talk"].evidence == pytest.approx(0.2, abs=1e-3)
    assert found["language"].depth == 0  # its own lemma, not a member
    assert found["english"].sense_share < found["talk"].sense_share  # WordNet's order says otherwise
    plain = {by_index[m.index]: m for m in concept_table(wordnet, kept).entries("language")}
    assert plain["english"].evidence == plain["talk"].evidence == 0.0 and set(plain) == set(found)


def test_the_shipped_expansion_model_prefers_synset_names_and_close_members():
    from neurosearch.config import ExpansionConfig
    from neurosearch.index.semantic import FEATURES

    fitted = dict(zip(FEATURES, ExpansionConfig().coefficients))
    # a synset's name over a synonym (five, not "fin"); members the model puts close to the concept,
    # and members through the concept word's usual senses, over the others
    assert fitted["member_head"] > 0 and fitted["member_similarity"] > 0 and fitted["member_sense_share"] > 0
    assert fitted["ancestor_similarity"] > 0  # what WordNet says a token is a kind of, close to the concept
    with pytest.raises(ValueError, match="coefficients"):
        ExpansionConfig(coefficients=(1.0, 2.0))


def test_morphology_helpers():
    from neurosearch.index.concepts import same_family as _same_family

    assert _same_family("colored", ["colors"]) and _same_family("colour", ["color"]) and _same_family("tools", ["tool"])
    assert not _same_family("weekend", ["weekday"]) and not _same_family("red", ["color"])
    assert lemma_candidates("body parts") == ["body parts", "body part"]
    assert lemma_candidates("Boxes") == ["boxes", "box", "boxe"]
    assert plural("box") == "boxes" and plural("city") == "cities" and plural("day") == "days" and plural("dog") == "dogs"


def test_concept_table_keeps_index_tokens_with_plurals_and_irregular_keys(wordnet_dir: Path):
    kept = ["monday", "tuesday", "friday", "red", "green", "blue", "dog", "dogs", "cat", "kid", "kids"]
    table = concept_table(WordNet(str(wordnet_dir)), kept)
    assert table.keys == sorted(table.keys)
    found = {i: depth for i, depth, _, _ in table.lookup("Weekdays")}
    assert {kept[i] for i in found} == {"monday", "tuesday", "friday"} and set(found.values()) == {1}
    assert {kept[i] for i, _, _, _ in table.lookup("animals")} == {"dog", "dogs", "cat"}
    assert {kept[i] for i, _, _, _ in table.lookup("colours")} == {"red", "green", "blue"}
    assert {kept[i] for i, _, _, _ in table.lookup("children")} == {"kid", "kids"}  # noun.exc alias
    assert table.lookup("furniture") == []
    assert table.offsets[-1] == table.members.size == table.depths.size == table.shares.size == table.heads.size
    assert table.members.dtype == np.int32
    heads = {kept[i]: head for i, _, _, head in table.lookup("weekdays")}
    assert heads == {"monday": True, "tuesday": True, "friday": True}


def test_wordnet_is_found_from_the_environment_and_in_nltk_zips(tmp_path: Path, wordnet_dir: Path, monkeypatch):
    monkeypatch.setenv("NEUROSEARCH_WORDNET", str(wordnet_dir))
    assert find_wordnet() == str(wordnet_dir)
    archive = tmp_path / "wordnet.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name in ("index.noun", "data.noun", "noun.exc"):
            handle.write(wordnet_dir / name, f"wordnet/{name}")
    monkeypatch.setenv("NEUROSEARCH_WORDNET", str(archive))
    assert find_wordnet() == str(archive)
    assert WordNet(str(archive)).members("weekday")["friday"] == 1


def test_build_bakes_concepts_and_find_uses_them(tmp_path: Path, tiny_model: Path, tiny_corpus: Path, monkeypatch):
    from neurosearch import Index
    from neurosearch.pipeline import SEARCH_FORMAT, build_index
    from neurosearch.config import BuildConfig, ClusterConfig, CorpusConfig, ModelConfig, ProfileConfig, StatsConfig
    from neurosearch.index.query import NO_WORDNET_NOTE

    out = tmp_path / "index"
    config = BuildConfig(
        model=ModelConfig(model=str(tiny_model), dtype="float32"),
        corpus=CorpusConfig(source=str(tiny_corpus), window=16),
        stats=StatsConfig(batch_tokens=256, shard_docs=100),
        profiles=ProfileConfig(min_count=2, methods=("filter",), search_method="filter"),
        clusters=ClusterConfig(ks=(3,)),
        concepts=False,
    )
    build_index(config, out)
    from neurosearch.model.phrases import PhraseEmbedder

    plain = Index.load(out, embedder=PhraseEmbedder()).find("weekdays", all_hits=True)
    assert NO_WORDNET_NOTE in plain.notes
    stats_time = (out / "stats").stat().st_mtime_ns
    monkeypatch.setenv("NEUROSEARCH_WORDNET", str(write_wordnet(tmp_path / "wn")))
    from dataclasses import replace

    manifest = build_index(replace(config, concepts=True), out)  # only the search stage is redone
    assert manifest.stages["search"]["concepts"] == "WordNet 3.0"
    assert manifest.stages["search"]["format"] == SEARCH_FORMAT
    assert (out / "stats").stat().st_mtime_ns == stats_time
    index = Index.load(out)
    found = index.find("weekdays", all_hits=True)
    assert "matched the concept 'weekday'" in found.notes and found.query.key == "weekday"
    weights = {t["token"]: t["weight"] for t in found.query.to_json()}
    assert {"monday", "tuesday", "friday"} <= set(weights)  # WordNet's members are in the expansion
    members = [i for i, m in enumerate(index.vocabulary.concepts.entries("weekday")) if m.depth > 0]
    assert len(members) == 3 and all(m.evidence != 0 for m in index.vocabulary.concepts.entries("weekday") if m.depth > 0)
    assert index.info() is not None


def test_ancestors_are_what_a_word_is_a_kind_of_all_the_way_up(wordnet_dir: Path):
    wordnet = WordNet(str(wordnet_dir))
    assert wordnet.ancestors("red") == ["chromatic colour", "colour"]  # two levels up
    assert wordnet.ancestors("blue") == ["chromatic colour", "colour"]  # through an instance hypernym
    assert wordnet.ancestors("dogs") == ["animal"] and wordnet.ancestors("animal") == []
    assert wordnet.ancestors("date", senses=1) == [] and wordnet.ancestors("date") == ["fruit"]  # its rare sense
    assert wordnet.ancestors("xyzzy") == []


def test_ancestor_similarity_is_the_closest_ancestor_or_zero():
    from neurosearch.index.semantic import Ancestors

    vectors = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    ancestors = Ancestors(vectors, np.array([[0, 1], [1, -1], [-1, -1]], dtype=np.int32))
    query = np.array([0.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(ancestors.similarity(query, np.array([0, 1, 2])), [0.8, 0.8, 0.0], rtol=1e-6)
    assert Ancestors(np.zeros((0, 2), np.float32), np.zeros((3, 0), np.int32)).similarity(query, np.array([1])).tolist() == [0.0]


def test_a_words_family_is_its_inflections_not_its_prefix():
    from neurosearch.index.concepts import FamilyIndex, same_family

    assert same_family("coloured", ["colors"]) and same_family("centre", ["center"]) and same_family("cities", ["city"])
    for token, word in (("currently", "currency"), ("thin", "thing"), ("numerous", "numerals"), ("animation", "animals"),
                        ("party", "parts"), ("monthly", "months")):
        assert not same_family(token, [word]), (token, word)
    kept = ["part", "parts", "party", "particular", "body", "bodies"]
    assert [kept[i] for i in FamilyIndex(kept).family(["body", "parts"])] == ["part", "parts", "body", "bodies"]
