import json

import pytest

from tfigkd.bench.students import filter_rows, student_table
from tfigkd.cli import main


@pytest.fixture(scope="module")
def table():
    return student_table((16, 16, 1), 4, designs=["ds_cnn_s", "resnet8_w05", "truncated_k11"],
                         runs=30, warmup=3)


def test_rows_are_measured_side_by_side(table):
    assert [r["name"] for r in table] == ["teacher", "ds_cnn_s", "resnet8_w05", "truncated_k11"]
    teacher = table[0]
    assert teacher["speedup_fp32"] == pytest.approx(1.0)
    for r in table:
        assert r["params"] > 0 and r["macs"] > 0 and r["int8_bytes"] > 0
        assert 0 < r["int8_ms"] <= r["int8_p90_ms"]
        assert r["speedup_int8"] == pytest.approx(teacher["int8_ms"] / r["int8_ms"])
        assert r["speedup_int8_vs_teacher_fp32"] == pytest.approx(teacher["fp32_ms"] / r["int8_ms"])
        assert r["arena_bytes"] and r["arena_bytes"] % 1024 == 0
    ds = table[1]
    # A 200x cheaper network is measurably faster than the teacher.
    assert teacher["macs"] / ds["macs"] > 100 and ds["speedup_int8"] > 2
    assert ds["kwargs"] == {"filters": 16, "blocks": 3, "downsample": [1]}


def test_filters_keep_only_what_fits(table, tmp_path):
    from tfigkd.export.targets import load_profile

    names = lambda rows: [r["name"] for r in rows]  # noqa: E731
    macs = {r["name"]: r["macs"] for r in table}
    assert macs["ds_cnn_s"] < 2e5 < macs["resnet8_w05"] < macs["truncated_k11"]
    assert names(filter_rows(table, max_macs=2e5)) == ["teacher", "ds_cnn_s"]
    slowest = max(r["int8_ms"] for r in table[1:])
    assert names(filter_rows(table, max_latency_ms=slowest)) == names(table)
    assert names(filter_rows(table, max_latency_ms=1e-6)) == ["teacher"]
    assert names(filter_rows(table, target="mcu")) == names(table)
    assert all(r["fits"] for r in table[1:]) and not table[0]["fits"]  # 2.7 MB > 1.5 MB flash
    # A board with 16 KB of flash keeps only the designs whose int8 file is that small.
    tight = tmp_path / "tiny_mcu.yaml"
    text = open(load_profile("mcu").source).read()
    tight.write_text(text.replace("flash_bytes: 1572864", "flash_bytes: 16384"))
    small = [r["name"] for r in table[1:] if r["int8_bytes"] <= 16384]
    assert small and len(small) < 3
    assert names(filter_rows(table, target=str(tight))) == ["teacher"] + small
    assert "flash" in next(r["why"] for r in table if r["name"] not in small)


@pytest.mark.large  # ~25 s; the table itself is tested above through the same function
def test_cli_writes_the_table(tmp_path, capsys):
    rc = main(["students", "--input-shape", "16", "16", "1", "--classes", "4", "--designs",
               "ds_cnn_s", "--runs", "10", "--no-micro", "--out", str(tmp_path)])
    assert rc == 0
    assert "| ds_cnn_s |" in capsys.readouterr().out
    saved = json.load(open(tmp_path / "students.json"))
    assert [r["name"] for r in saved["rows"]] == ["teacher", "ds_cnn_s"]


def test_cli_refuses_an_unknown_design(capsys):
    assert main(["students", "--designs", "nope"]) == 2
    assert "Unknown design 'nope'" in capsys.readouterr().err
