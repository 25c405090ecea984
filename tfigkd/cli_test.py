import subprocess
import sys

from tfigkd.cli import build_parser, main


def test_help_lists_subcommands():
    text = build_parser().format_help()
    for cmd in ("train-teacher", "precompute-ig", "run", "summary", "check-config"):
        assert cmd in text


def test_console_entry_runs_help():
    out = subprocess.run([sys.executable, "-m", "tfigkd", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "train-teacher" in out


def test_bad_config_exits_2_with_message(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("teacher: {train: {epoch: 3}}\n")
    assert main(["check-config", "--config", str(p)]) == 2
    assert "teacher.train.epoch: unknown key" in capsys.readouterr().err


def test_summary_prints_table(capsys):
    assert main(["summary", "--blocks-removed", "5"]) == 0
    out = capsys.readouterr().out
    assert "2,236,682" in out and "543,498" in out and "4.12" in out


def test_help_lists_deployment_subcommands():
    text = build_parser().format_help()
    for cmd in ("export", "bench", "compress"):
        assert cmd in text


def test_user_errors_are_one_line_but_bugs_keep_their_traceback(monkeypatch, capsys):
    import pytest

    from tfigkd import cli
    from tfigkd.errors import UserError

    def user_problem(args):
        raise UserError("the data folder is empty; point data.path at it")

    def bug(args):
        raise ValueError("internal shape mismatch")  # not a UserError: a bug

    monkeypatch.setattr(cli, "cmd_check_config", user_problem)
    assert cli.main(["check-config", "--config", "x.yaml"]) == 2
    assert "error: the data folder is empty" in capsys.readouterr().err
    monkeypatch.setattr(cli, "cmd_check_config", bug)
    with pytest.raises(ValueError, match="internal shape mismatch"):
        cli.main(["check-config", "--config", "x.yaml"])
