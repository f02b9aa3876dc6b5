"""The console command: help shows defaults, doctor reports and fails clearly on missing weights."""

from typer.testing import CliRunner

from pipeline import app

runner = CliRunner()


def test_help_lists_commands():
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    for cmd in ("doctor", "data", "detect", "classify"):
        assert cmd in out.output
    assert "not a diagnosis" in out.output


def test_subcommand_help_shows_defaults():
    out = runner.invoke(app, ["detect", "train", "--help"])
    assert out.exit_code == 0 and "default" in out.output


def test_doctor_reports_missing_weights(tmp_path):
    out = runner.invoke(app, ["doctor", "--weights-dir", str(tmp_path)])
    assert out.exit_code == 1
    assert "torch" in out.output and "ultralytics" in out.output
    assert "detector.pt" in out.output and "not found" in out.output


def test_doctor_ok_with_weights(tmp_path):
    for name in ("detector.pt", "classifier.pt", "subtype.pt"):
        (tmp_path / name).write_bytes(b"x")
    out = runner.invoke(app, ["doctor", "--weights-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "sha" in out.output or "MB" in out.output
