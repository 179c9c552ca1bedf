"""``find --llm``: a concept's members as an LLM lists them (a fake OpenAI-compatible server), searched
for on the shipped index instead of the offline expansion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_llm import FakeLLM, Reply
from typer.testing import CliRunner

from neurosearch.cli.app import app
from neurosearch.labeling.config import LabelConfig
from neurosearch.labeling.members import find_members, llm_members, member_messages, parse_members
from neurosearch.labeling.prompt import Junk
from neurosearch.index.labels import LabelError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "index" / "default"
COMPANIES = ["google", "microsoft", "amazon", "samsung", "intel", "hp", "apple", "General Motors", "\x1b[31mevil\x1b[0m co",
             "zzqxnotaword", "the"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROSEARCH_STATE", str(tmp_path / "state"))  # kept member lists: this test's own
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def shipped():
    from neurosearch import Index

    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("needs the shipped index (index/default)")
    return Index.load(SHIPPED)


def listing(members: list) -> Reply:
    return Reply(content=json.dumps({"members": members}))


def config(llm: FakeLLM) -> LabelConfig:
    return LabelConfig(base_url=llm.base_url, timeout=5.0, backoff_seconds=0.01)


def test_parse_members_keeps_single_words_and_names_the_rest():
    words, others = parse_members(json.dumps({"members": ["Monday", "tuesday", "monday", "New Year's Day", 7, "",
                                                          "\x1b[2Jwipe now"]}))
    assert words == ["monday", "tuesday"]
    assert others == ["new year's day", "[2jwipe now"]  # control characters are gone
    assert all("\x1b" not in o for o in others)
    with pytest.raises(Junk):
        parse_members('{"members": "monday"}')
    with pytest.raises(Junk):
        parse_members('{"members": ["two words"]}')
    assert parse_members('```json\n{"members": ["red"]}\n```') == (["red"], [])


def test_prompt_names_the_concept_and_asks_for_json():
    messages = member_messages("tech companies")
    assert '"tech companies"' in messages[1]["content"] and '{"members"' in messages[1]["content"]


def test_llm_members_of_a_category(llm):
    llm.respond = lambda seen, n: listing(COMPANIES)
    listed = llm_members("tech companies", config(llm))
    assert listed.members[:3] == ["google", "microsoft", "amazon"] and listed.model == LabelConfig.llm_model
    assert "general motors" in listed.not_words
    assert "tech companies" in llm.seen[0].prompt


def test_find_members_searches_the_listed_words(llm):
    index = shipped()
    llm.respond = lambda seen, n: listing(COMPANIES)
    result = find_members(index, "tech companies", config(llm), top=5)
    tokens = result.query.tokens
    assert result.query.text == "tech companies" and result.query.weights == [1.0] * len(tokens)
    assert "google" in tokens and "microsoft" in tokens and "zzqxnotaword" not in tokens
    assert result.notes[0].startswith(f"searched for the members {LabelConfig.llm_model} listed for 'tech companies'")
    assert any("zzqxnotaword" in note for note in result.notes)  # not kept: named, the search goes on
    assert "the" not in tokens and "left out: general motors" in result.notes[0] and "the" in result.notes[0].split("left out: ")[1]
    best = result.results[0]
    assert {"google", "microsoft"} & set(best.top_tokens[:10]), best.top_tokens[:10]
    offline = index.find("tech companies", top=5, all_hits=True)
    assert not {"google", "microsoft"} & set(offline.results[0].top_tokens[:10])  # what --llm is for


def test_junk_twice_is_one_clear_error(llm):
    index = shipped()
    llm.respond = lambda seen, n: Reply(content="Sure! Here are some companies: Google, Microsoft.")
    with pytest.raises(LabelError, match="gave no member list .junk"):
        find_members(index, "tech companies", config(llm))
    assert len(llm.seen) == 2  # asked, re-asked once


def test_no_kept_member_is_an_error(llm):
    index = shipped()
    llm.respond = lambda seen, n: listing(["zzqxnotaword", "qqqzzzx"])
    with pytest.raises(LabelError, match="none of the 2 members"):
        find_members(index, "nonsense things", config(llm))


def test_cli_find_llm_json_and_errors(llm):
    shipped()
    llm.respond = lambda seen, n: listing(COMPANIES)
    runner = CliRunner()
    result = runner.invoke(app, ["find", "tech", "companies", "--llm", "--base-url", llm.base_url, "--top", "3",
                                 "--json", "--index", str(SHIPPED)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["notes"][0].startswith("searched for the members")
    assert "\x1b" not in result.stdout
    table = runner.invoke(app, ["find", "tech companies", "--llm", "--base-url", llm.base_url, "--index", str(SHIPPED)])
    assert table.exit_code == 0 and "\x1b[31m" not in table.stdout
    for args, fragment in ((["find", "--tokens", "a,b", "--llm"], "give a query, not --tokens"),
                           (["find", "tech companies", "--llm"], "OPENAI_API_KEY is not set")):
        bad = runner.invoke(app, [*args, "--index", str(SHIPPED)])
        assert bad.exit_code == 1 and bad.stderr.startswith("neurosearch: error:") and fragment in bad.stderr
        assert "Traceback" not in bad.output


def test_hostile_server_error_reaches_the_terminal_clean(llm):
    shipped()
    llm.respond = lambda seen, n: Reply(status=404, content='{"error": {"message": "no such model \x1b[2J\x1b]0;pwned\x07"}}')
    result = CliRunner().invoke(app, ["find", "tech companies", "--llm", "--base-url", llm.base_url, "--index", str(SHIPPED)])
    assert result.exit_code == 1 and "gave no member list (http 404" in result.stderr, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_label_query_labels_the_hits_find_lists():
    shipped()
    runner = CliRunner()
    hits = json.loads(runner.invoke(app, ["find", "weekdays", "--top", "2", "--json", "--index", str(SHIPPED)]).stdout)
    server = ["--base-url", "http://127.0.0.1:9"]  # a server's model: the shipped themes (Gemma's) are not its
    result = runner.invoke(app, ["label", "--query", "weekdays", "--top", "2", "--dry-run", "--json", "--contexts", "0",
                                 "--index", str(SHIPPED), *server])
    assert result.exit_code == 0, result.output
    wanted = [f"{hit['kind']}:{hit['id']}" for hit in hits["results"]]
    assert sorted(r["key"] for r in json.loads(result.stdout)["would_send"]) == sorted(wanted) and len(wanted) == 4
    local = runner.invoke(app, ["label", "--query", "weekdays", "--top", "2", "--dry-run", "--json", "--index", str(SHIPPED)])
    data = json.loads(local.stdout)  # the default local model: the shipped index has its themes for these hits
    assert (data["requests"], data["cached"], data["would_send"]) == (4, 4, []), local.output
    for args, fragment in ((["--query", "weekdays", "--ids", "1:1"], "not both"),
                           (["--query", "weekdays", "--k", "50"], "leave out --k"),
                           (["--query", "xyzzy qqqz", "--dry-run"], "no hit above the relevance floor")):
        bad = runner.invoke(app, ["label", *args, "--index", str(SHIPPED)])
        assert bad.exit_code == 1 and fragment in bad.stderr and "Traceback" not in bad.output, bad.output


def test_a_member_list_is_kept_until_refreshed(llm, tmp_path):
    shipped()
    llm.respond = lambda seen, n: listing(COMPANIES)
    runner = CliRunner()
    args = ["find", "tech companies", "--llm", "--base-url", llm.base_url, "--json", "--index", str(SHIPPED)]
    first = json.loads(runner.invoke(app, args).stdout)
    llm.respond = lambda seen, n: listing(["iphone", "ipad", "itunes"])  # another answer, were it asked
    kept = json.loads(runner.invoke(app, args).stdout)
    assert len(llm.seen) == 1 and kept["results"] == first["results"]
    assert "on an earlier run (--llm-refresh asks again)" in kept["notes"][0]
    fresh = json.loads(runner.invoke(app, [*args, "--llm-refresh"]).stdout)
    assert len(llm.seen) == 2 and [t["token"] for t in fresh["expanded_tokens"]] == ["iphone", "ipad", "itunes"]
    again = json.loads(runner.invoke(app, args).stdout)  # the refreshed list is the one kept now
    assert len(llm.seen) == 2 and again["expanded_tokens"] == fresh["expanded_tokens"]
    (cache,) = (tmp_path / "state" / "cache").glob("llm-members.json")
    cache.write_text("{broken")
    runner.invoke(app, args)
    assert len(llm.seen) == 3  # a damaged cache is not trusted: asked again
    bad = runner.invoke(app, ["find", "tech companies", "--llm-refresh", "--index", str(SHIPPED)])
    assert bad.exit_code == 1 and "--llm-refresh goes with --llm" in bad.stderr
