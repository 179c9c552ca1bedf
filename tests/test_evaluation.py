"""Table 3 aggregation on hand-made ablation results with hand-computed expectations."""

from __future__ import annotations

import csv
import math

import pytest

from neurosearch.format.results import AblationResult
from neurosearch.experiments.table3 import (
    Table3Row,
    beats_all_baselines,
    group_key,
    table3,
    table3_rich,
    write_table3,
)


def _b(mean: float, p: float) -> dict:
    return {"mean_pct": mean, "std_pct": 0.5, "z": 3.0, "p": p, "seeds": 5, "losses": [3.0] * 5}


def _result(method, k, i, change, control, random, layer, position) -> AblationResult:
    return AblationResult.from_json(_raw(method, k, i, change, control, random, layer, position))


def _raw(method, k, i, change, control, random, layer, position) -> dict:
    """A result as ``evaluate`` wrote them before result format 2 (the shipped results.jsonl)."""
    return {
        "target": {"kind": "cluster", "id": f"{method}/k{k}/{i}", "neurons": ["0:1", "1:2"]},
        "method": method, "k": k, "ablation": "mean", "head": "fitted", "sentences": 8,
        "masked_tokens": 40, "loss": 3.0, "loss_ablated": 3.0 * (1 + change / 100),
        "change_pct": change, "control_change_pct": control,
        "baselines": {"random": random, "random_layer": layer, "random_position": position},
    }


@pytest.fixture
def results() -> list[AblationResult]:
    return [
        # filter+tfidf K=200 first in the input: the output must still start with filter.
        _result("filter+tfidf", 200, 0, 5.0, 0.5, _b(1, 0.0), _b(1, 0.04), _b(1, 0.049)),
        _result("filter+tfidf", 200, 1, 4.0, None, _b(1, 0.0), _b(1, 0.0), _b(1, 0.0)),
        _result("filter", 50, 0, 10.0, 1.0, _b(1, 0.01), _b(2, 0.01), _b(3, 0.001)),  # beats all
        _result("filter", 50, 1, 6.0, 2.0, _b(2, 0.01), _b(4, 0.2), _b(3, 0.01)),  # p=0.2
        _result("filter", 50, 2, 2.0, 3.0, _b(3, 0.01), _b(2, 0.01), _b(3, 0.01)),  # 2 < 3
    ]


def test_table3_means_and_share(results):
    rows = table3(results)
    assert [(r.method, r.k) for r in rows] == [("filter", 50), ("filter+tfidf", 200)]
    a, b = rows
    assert a.readout == "mlm" and a.clusters == 3
    assert a.mean == pytest.approx(6.0)
    assert a.median == pytest.approx(6.0)
    assert a.random == pytest.approx(2.0)
    assert a.random_layer == pytest.approx(8 / 3)
    assert a.random_position == pytest.approx(3.0)
    assert a.beats_all_share == pytest.approx(1 / 3)
    assert math.isnan(a.passed_share)  # 5 draws: no verdict can pass the rank test
    assert a.control == pytest.approx(2.0)
    assert b.clusters == 2
    assert b.mean == pytest.approx(4.5)
    assert (b.random, b.random_layer, b.random_position) == (1.0, 1.0, 1.0)
    assert b.beats_all_share == 1.0
    assert b.control == pytest.approx(0.5)  # the missing control value is skipped


def test_beats_all_needs_every_baseline_significant_and_smaller():
    r = _result("filter", 50, 0, 3.0, 0.0, _b(1, 0.01), _b(1, 0.01), _b(1, 0.05)).primary
    assert not beats_all_baselines(r)  # p must be strictly below 0.05
    r.baselines["random_position"].p = 0.049
    assert beats_all_baselines(r)
    r.baselines = {}
    assert not beats_all_baselines(r)


def test_median_beside_the_skewed_mean():
    changes = [0.1, 0.2, 0.3, 10.0]
    rows = table3([_result("filter", 50, i, c, 0.0, _b(0, 0.5), _b(0, 0.5), _b(0, 0.5)) for i, c in enumerate(changes)])
    assert rows[0].mean == pytest.approx(2.65) and rows[0].median == pytest.approx(0.25)


def test_rows_sorted_by_method_order_then_k():
    keys = [("filter+smooth+tfidf", 50), ("filter", 200), ("other", 10), ("filter+smooth", 50),
            ("filter", 50), ("filter+tfidf", 50)]
    rows = table3([_result(m, k, 0, 1.0, 0.0, _b(0, 0), _b(0, 0), _b(0, 0)) for m, k in keys])
    assert [(r.method, r.k) for r in rows] == [
        ("filter", 50), ("filter", 200), ("filter+tfidf", 50), ("filter+smooth", 50),
        ("filter+smooth+tfidf", 50), ("other", 10)]


def test_group_falls_back_to_target_id():
    r = _result("filter+smooth", 200, 17, 1.0, 0.0, _b(0, 0), _b(0, 0), _b(0, 0))
    r.method = r.k = None
    assert group_key(r) == ("filter+smooth", 200)
    r.target.id, r.method = "x", "filter"
    assert group_key(r) == ("filter", None)


def test_missing_baseline_is_nan():
    raw = _raw("filter", 50, 0, 3.0, 0.0, _b(1, 0.01), _b(1, 0.01), _b(1, 0.01))
    del raw["baselines"]["random_position"]
    (row,) = table3([AblationResult.from_json(raw)])
    assert math.isnan(row.random_position)
    assert row.beats_all_share == 1.0  # judged against the baselines that were run


def test_write_table3_parses(results, tmp_path):
    rows = table3(results)
    md, csv_path = write_table3(rows, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["table3.csv", "table3.md"]

    with csv_path.open() as fh:
        parsed = list(csv.DictReader(fh))
    assert [r["method"] for r in parsed] == ["filter", "filter+tfidf"]
    assert float(parsed[0]["random_layer"]) == pytest.approx(8 / 3)
    assert float(parsed[0]["beats_all_share"]) == pytest.approx(1 / 3)
    assert int(parsed[1]["k"]) == 200 and int(parsed[1]["clusters"]) == 2

    lines = md.read_text().strip().splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    assert len(lines) == 2 + len(rows)
    assert all(len(c) == len(Table3Row.__dataclass_fields__) for c in cells)
    assert cells[2][:4] == ["mlm", "filter", "50", "3"]
    assert cells[2][4] == "+6.00" and cells[2][9] == "33%" and cells[2][10] == "-"


def test_table3_rich_renders(results):
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(table3_rich(table3(results)))
    text = console.export_text()
    assert "filter+tfidf" in text and "+4.50" in text and "100%" in text
