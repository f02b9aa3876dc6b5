"""The console command: help shows defaults, doctor reports and fails clearly on missing or broken weights."""

import json
import shutil

from typer.testing import CliRunner

from leukoscan.config import WEIGHTS_DIR
from leukoscan.pipeline import app

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


def test_doctor_loads_and_runs_each_model(tmp_path):
    out = runner.invoke(app, ["doctor", "--weights-dir", str(WEIGHTS_DIR)])
    assert out.exit_code == 0, out.output
    assert out.output.count("yes (one pass on the CPU)") == 3 and "ok" in out.output
    # a garbage weight file (it hashes fine) and a model of another task: one line each, what is wrong
    for name in ("detector.pt", "classifier.pt", "subtype.pt"):
        shutil.copyfile(WEIGHTS_DIR / name, tmp_path / name)
        shutil.copyfile(WEIGHTS_DIR / name.replace(".pt", ".json"), tmp_path / name.replace(".pt", ".json"))
    (tmp_path / "classifier.pt").write_bytes(b"x")
    shutil.copyfile(WEIGHTS_DIR / "detector.pt", tmp_path / "subtype.pt")
    out = runner.invoke(app, ["doctor", "--weights-dir", str(tmp_path)])
    assert out.exit_code == 1, out.output
    problems = [line for line in out.stdout.splitlines() if line.startswith("problem:")]  # the report: stdout
    assert len(problems) == 2 and [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert "classifier.pt: cannot load" in problems[0] and "not a loadable checkpoint" in problems[0]
    assert "subtype.pt" in problems[1] and "is a detect model, not a classify model" in problems[1]
    # a classifier without its card, or with another model's: `run` refuses them, so does doctor
    shutil.copyfile(WEIGHTS_DIR / "classifier.pt", tmp_path / "classifier.pt")
    (tmp_path / "classifier.json").unlink()
    shutil.copyfile(WEIGHTS_DIR / "subtype.pt", tmp_path / "subtype.pt")
    shutil.copyfile(WEIGHTS_DIR / "classifier.json", tmp_path / "subtype.json")
    out = runner.invoke(app, ["doctor", "--weights-dir", str(tmp_path)])
    problems = [line for line in out.stdout.splitlines() if line.startswith("problem:")]
    assert out.exit_code == 1 and len(problems) == 2, out.output
    assert "classifier.pt has no card" in problems[0] and "subtype.json is the card of other weights" in problems[1]


def test_doctor_names_exports_made_from_other_weights(tmp_path):
    """An export beside a .pt that `leukoscan export` did not make from it (`--backend` refuses it) is shown
    as such, not as usable."""
    for name in ("detector.pt", "classifier.pt", "subtype.pt"):
        shutil.copyfile(WEIGHTS_DIR / name, tmp_path / name)
        shutil.copyfile(WEIGHTS_DIR / name.replace(".pt", ".json"), tmp_path / name.replace(".pt", ".json"))
    (tmp_path / "classifier.onnx").write_bytes(b"an old export")
    out = runner.invoke(app, ["doctor", "--weights-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.replace("│", " ").split())  # the table's cells, wrapped lines joined
    assert "made from other weights, export again: onnx" in text
    # an export recorded as made from these weights but damaged since (a disk error, a copy cut short): a
    # problem, not "exported" (exports are not in the repository: the record is written here)
    from leukoscan.cards import record_export

    record_export(tmp_path / "classifier.pt", "onnx")
    ov = tmp_path / "subtype_openvino_model"  # an OpenVINO export damaged (Ultralytics reads it on first use only)
    ov.mkdir()
    (ov / "subtype.xml").write_text("<net name='x' version='11'><layers><layer")
    (ov / "subtype.bin").write_bytes(b"")
    record_export(tmp_path / "subtype.pt", "openvino")
    out = runner.invoke(app, ["doctor", "--weights-dir", str(tmp_path)])
    problems = [line for line in out.stdout.splitlines() if line.startswith("problem:")]
    assert out.exit_code == 1 and len(problems) == 2, out.output
    assert "classifier.pt: its onnx export" in problems[0] and "subtype.pt: its openvino export" in problems[1]


def test_interrupt_anywhere_is_one_line(monkeypatch, tmp_path):
    """Ctrl-C before a command says what it keeps (here while the reference slides are read): one line, exit 130
    (typer's own exits 130 without a word)."""
    from leukoscan.lab import LabReference

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(LabReference, "from_runs", stop)
    out = runner.invoke(app, ["lab-reference", str(tmp_path)])
    assert out.exit_code == 130
    assert out.output.strip() == "interrupted: stopped before it finished"


def test_module_entry_point():
    """``python -m leukoscan`` is the console script (``leukoscan.__main__:main``, which also answers a Ctrl-C during
    its imports with one line)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "leukoscan", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("leukoscan "), done.stderr


def test_doctor_says_a_model_was_fine_tuned_and_promoted(tmp_path):
    for name in ("detector.pt", "classifier.pt", "subtype.pt"):
        shutil.copyfile(WEIGHTS_DIR / name, tmp_path / name)
        shutil.copyfile(WEIGHTS_DIR / name.replace(".pt", ".json"), tmp_path / name.replace(".pt", ".json"))
    card = json.loads((tmp_path / "classifier.json").read_text())
    card["finetune"] = {"from_sha256": "ab" * 32, "lab_cells": {"blast": 3, "neutrophil": 4}}
    card["promotion"] = {"date": "2026-12-06T16:00:00+00:00", "reason": "lab accuracy +0.1", "scores": {}}
    (tmp_path / "classifier.json").write_text(json.dumps(card))
    out = runner.invoke(app, ["doctor", "--weights-dir", str(tmp_path)], env={"COLUMNS": "400"})  # rows unwrapped
    assert out.exit_code == 0, out.output
    text = out.stdout
    assert "fine-tuned from abababababab on 7 reviewed lab cells" in text and "promoted 2026-12-06" in text
    assert text.count("fine-tuned from") == 1  # the shipped detector and subtype model say nothing of it


def test_doctor_says_which_precision_openvino_runs_in_on_this_cpu(monkeypatch):
    """bfloat16 where the CPU has it (its answers move a little), the PyTorch answers otherwise, and a line
    rather than a problem when OpenVINO cannot be asked."""
    import openvino

    from leukoscan.doctor import openvino_precision

    class Core:
        hint = "bf16"

        def get_property(self, device, name):
            assert (device, name) == ("CPU", "INFERENCE_PRECISION_HINT")
            return openvino.Type.bf16 if self.hint == "bf16" else openvino.Type.f32

    monkeypatch.setattr(openvino, "Core", Core)
    assert openvino_precision().startswith("bfloat16 (this CPU has it")
    Core.hint = "f32"
    assert openvino_precision() == "f32 (--backend openvino gives the PyTorch answers)"
    monkeypatch.setattr(openvino, "Core", lambda: (_ for _ in ()).throw(RuntimeError("no CPU plugin")))
    assert openvino_precision() == "not known (no CPU plugin)"
