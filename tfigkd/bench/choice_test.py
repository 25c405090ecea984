import pytest

from tfigkd.bench.choice import choose_design, judge
from tfigkd.errors import UserError


def row(name, macs, ms, size=10_000, fits=True, why=None):
    return {"name": name, "macs": macs, "int8_ms": ms, "int8_bytes": size, "fits": fits,
            "why": why}


def table():
    # teacher first; designs deliberately not sorted by MACs or speed.
    return [row("teacher", 9_000_000, 0.50, 2_000_000, fits=False, why="flash"),
            row("mid", 900_000, 0.020, 30_000),
            row("big_misfit", 4_000_000, 0.050, 90_000, fits=False, why="ops not supported"),
            row("small", 200_000, 0.007, 12_000),
            row("large", 2_300_000, 0.030, 35_000),
            row("huge", 44_000_000, 0.300, 700_000)]   # more MACs than the teacher


def test_rule_picks_the_most_macs_that_fit_the_target_and_the_teacher():
    rows = table()
    assert choose_design(rows)["name"] == "large"
    status = {r["name"]: r["excluded"] for r in rows[1:]}
    assert status["large"] is None and status["mid"] is None
    assert "does not fit the target: ops not supported" == status["big_misfit"]
    assert "not cheaper than the teacher" in status["huge"]


@pytest.mark.parametrize("latency,size_kb,want", [
    (0.025, None, "mid"),        # large is 0.030 ms
    (0.020, None, "mid"),        # the budget is inclusive
    (0.019, None, "small"),
    (None, 30, "mid"),           # 30,000 B <= 30 KB (30,720 B) < 35,000 B
    (None, 29, "small"),
    (0.1, 12, "small"),          # both budgets at once
])
def test_budgets(latency, size_kb, want):
    assert choose_design(table(), latency, size_kb)["name"] == want


def test_ties_go_to_the_faster_design():
    rows = [row("teacher", 10, 1.0), row("a", 5, 0.3), row("b", 5, 0.2), row("c", 4, 0.1)]
    assert choose_design(rows)["name"] == "b"


def test_a_budget_no_design_meets_names_the_fastest():
    with pytest.raises(UserError) as e:
        choose_design(table(), max_latency_ms=0.005, target="mcu")
    msg = str(e.value)
    assert "\n" not in msg
    assert "the fastest, small, takes 0.0070 ms" in msg and "on mcu" in msg
    assert "--max-latency-ms" in msg and "--design" in msg


def test_judge_without_budget_marks_every_design():
    rows = judge(table())
    assert [r["eligible"] for r in rows[1:]] == [True, False, True, True, False]
