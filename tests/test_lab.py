"""A lab's own blast reference (leukoscan/lab.py, `leukoscan lab-reference`, `run --lab-reference`)."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leukoscan.cells import BLAST, CELL_TYPES, NOT_WHITE, blast_margin
from leukoscan.config import SETTINGS
from leukoscan.lab import LabReference, fit_offset, shift_blast
from leukoscan.pipeline import DEMO_SLIDE, app

runner = CliRunner()


def random_probs(n, seed=0):
    return np.random.default_rng(seed).dirichlet(np.ones(len(CELL_TYPES)) * 0.5, size=n)


def test_the_offset_leaves_the_asked_share_called_blast_and_moves_nothing_else():
    probs = random_probs(5000)
    for share in (0.01, 0.02, 0.05):
        offset = fit_offset(blast_margin(probs), share)
        shifted = shift_blast(probs, offset)
        assert np.mean(shifted.argmax(1) == BLAST) == pytest.approx(share, abs=0.002)
        assert np.allclose(shifted.sum(1), 1, atol=1e-5)
        # the blast margin moves by the offset exactly; the other types keep their order and ratios
        assert np.allclose(blast_margin(shifted), blast_margin(probs) + offset, atol=1e-3)
        others = np.delete(shifted, BLAST, 1) / np.delete(shifted, BLAST, 1).sum(1, keepdims=True)
        assert np.allclose(others, np.delete(probs, BLAST, 1) / np.delete(probs, BLAST, 1).sum(1, keepdims=True))


def screened(folder, n_cells, classifier=None, lab=None, call=None):
    """A fake `leukoscan run` slide folder: verdict.json and cells.csv with ``n_cells`` cells (``call``: the
    slide's verdict and blast share)."""
    folder.mkdir(parents=True)
    probs = random_probs(n_cells, seed=len(str(folder)))
    types = np.array(CELL_TYPES)[probs.argmax(1)]
    cells = pd.DataFrame({"cell_type": types, "blast_margin": blast_margin(probs).round(3)})
    cells.to_csv(folder / "cells.csv", index=False)
    described = classifier or {"sha256": "a" * 64, "temperature": 1.1, "test_time_views": 2, "prior_correction": 2.0}
    verdict = {"models": {"classifier": {"file": "c.pt", **described}}, "lab_reference": lab, **(call or {})}
    (folder / "verdict.json").write_text(json.dumps(verdict))
    return probs


def test_a_reference_is_made_from_screened_normal_slides_and_refuses_what_it_cannot_use(tmp_path):
    probs = np.concatenate([screened(tmp_path / "run" / f"s{i}", 500) for i in range(2)])
    probs = probs[~np.isin(probs.argmax(1), [CELL_TYPES.index(t) for t in NOT_WHITE])]  # white cells only
    reference = LabReference.from_runs([tmp_path / "run"])
    assert reference.n_cells == len(probs) and len(reference.slides) == 2
    # a slide named twice (another path to it) counts once; paths are stored whole
    twice = LabReference.from_runs([tmp_path / "run", tmp_path / "run" / ".." / "run" / "s0"])
    assert twice.n_cells == reference.n_cells and twice.slides == [
        str((tmp_path / "run" / f"s{i}").resolve()) for i in range(2)
    ]
    assert reference.flagged_slides() == []
    screened(tmp_path / "flagged" / "s0", 400, call={"verdict": "negative", "blast_fraction": 0.01})
    screened(tmp_path / "flagged" / "s1", 400, call={"verdict": "suspected", "blast_fraction": 0.486})
    flagged = LabReference.from_runs([tmp_path / "flagged"]).flagged_slides()
    assert flagged == [(str((tmp_path / "flagged" / "s1").resolve()), "suspected (48.6% blasts)")]  # said, not refused
    assert reference.offset == pytest.approx(fit_offset(blast_margin(probs), 0.02), abs=1e-3)
    reference.save(tmp_path / "lab.json")
    loaded = LabReference.load(tmp_path / "lab.json", reference.classifier)
    assert loaded.offset == reference.offset and loaded.file == str(tmp_path / "lab.json")
    with pytest.raises(ValueError, match="another cell-type classifier"):
        LabReference.load(tmp_path / "lab.json", {**reference.classifier, "temperature": 0.9})
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not a lab reference"):
        LabReference.load(tmp_path / "junk.json")
    with pytest.raises(ValueError, match="fewer than 500"):
        LabReference.from_runs([tmp_path / "run" / "s0"])
    with pytest.raises(ValueError, match="nothing: no such folder"):
        LabReference.from_runs([tmp_path / "run", tmp_path / "nothing"])
    screened(tmp_path / "run" / "other", 400, {"sha256": "b" * 64})
    with pytest.raises(ValueError, match="different classifiers"):
        LabReference.from_runs([tmp_path / "run"])
    screened(tmp_path / "again" / "s", 600, lab={"offset": 1.0})
    with pytest.raises(ValueError, match="screened with a lab reference"):
        LabReference.from_runs([tmp_path / "again"])
    assert abs(reference.offset) <= SETTINGS.lab.max_offset
    old = tmp_path / "old" / "s"  # screened by an earlier version: no blast_margin column
    screened(old, 600)
    pd.DataFrame({"p_blast": [0.1]}).to_csv(old / "cells.csv", index=False)
    with pytest.raises(ValueError, match="has no blast_margin"):
        LabReference.from_runs([old])
    (old / "verdict.json").write_text("{broken")
    with pytest.raises(ValueError, match="not a slide `leukoscan run` screened"):
        LabReference.from_runs([old])


def test_a_slide_screened_into_two_runs_counts_once(tmp_path):
    """The same files screened into two runs (their journals' fingerprints): their cells count once, and that is
    said; a slide folder reused for another slide (same paths, other files) counts again."""

    def journal(folder, mtime):
        (folder / ".state").mkdir()
        field = {"fingerprint": {"path": "/slides/current/f1.jpg", "size": 100, "mtime": mtime}}
        (folder / ".state" / "fields.jsonl").write_text(json.dumps(field) + "\n")

    for run, mtime in (("monday", 1.0), ("tuesday", 1.0), ("wednesday", 2.0)):
        screened(tmp_path / run / "s", 500)
        journal(tmp_path / run / "s", mtime)
    screened(tmp_path / "tuesday" / "t", 500)  # (no journal: never taken for a repeat)
    runs = [tmp_path / "monday", tmp_path / "tuesday", tmp_path / "wednesday"]
    reference = LabReference.from_runs(runs, replace(SETTINGS.lab, min_cells=100))
    first = str((tmp_path / "monday" / "s").resolve())
    assert reference.slides == [first, *(str((tmp_path / r).resolve()) for r in ("tuesday/t", "wednesday/s"))]
    assert reference.repeats == ((str((tmp_path / "tuesday" / "s").resolve()), first),)
    result = runner.invoke(
        app, ["lab-reference", *map(str, runs), "--min-cells", "100", "-o", str(tmp_path / "l.json")]
    )
    assert result.exit_code == 0 and "slide screened again: its cells counted once" in " ".join(result.output.split())
    assert "repeats" not in json.loads((tmp_path / "l.json").read_text())


def test_what_a_reference_is_made_from_and_read_from_is_checked(tmp_path):
    screened(tmp_path / "run" / "s0", 800)
    (tmp_path / "unscreened").mkdir()  # a slide's own folder, a run stopped before its verdict: said, not skipped
    with pytest.raises(ValueError, match="unscreened: no screened slide"):
        LabReference.from_runs([tmp_path / "run", tmp_path / "unscreened"])
    stopped = tmp_path / "run" / "s1" / ".state"  # a slide of the run stopped before its verdict: said, not skipped
    stopped.mkdir(parents=True)
    (stopped / "fields.jsonl").write_text("")
    with pytest.raises(ValueError, match="s1: its screening was not finished"):
        LabReference.from_runs([tmp_path / "run"])
    shutil.rmtree(stopped.parent)
    onnx = tmp_path / "onnx" / "s"  # screened with an export by a version that did not record the .pt's hash
    screened(onnx, 600)
    verdict = json.loads((onnx / "verdict.json").read_text())
    (onnx / "verdict.json").write_text(json.dumps({**verdict, "backend": "onnx"}))
    with pytest.raises(ValueError, match="earlier version with --backend onnx"):
        LabReference.from_runs([onnx])
    edited = tmp_path / "edited" / "s"  # a cell's margin blanked (a spreadsheet): refused, never a NaN offset
    screened(edited, 600)
    cells = pd.read_csv(edited / "cells.csv")
    cells.loc[3, "blast_margin"] = np.nan
    cells.to_csv(edited / "cells.csv", index=False)
    with pytest.raises(ValueError, match="without a blast_margin number"):
        LabReference.from_runs([edited])
    # a reference file is checked: an offset that is not a finite number within the limit would move every call
    LabReference.from_runs([tmp_path / "run"]).save(tmp_path / "lab.json")
    good = json.loads((tmp_path / "lab.json").read_text())
    for bad in (float("nan"), float("inf"), -400.0, "-1.5", None, True):
        (tmp_path / "bad.json").write_text(json.dumps({**good, "offset": bad}))
        with pytest.raises(ValueError, match="is not a usable lab reference: offset"):
            LabReference.load(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({**good, "classifier": "c.pt"}))
    with pytest.raises(ValueError, match="is not a usable lab reference"):
        LabReference.load(tmp_path / "bad.json")
    # screened with an export of the same .pt (its answers): the same classifier; another .pt: not
    reference = LabReference.load(tmp_path / "lab.json")
    onnx = {**reference.classifier, "sha256": "c" * 64, "weights_sha256": "a" * 64}
    reference.check(onnx)
    with pytest.raises(ValueError, match="another cell-type classifier"):
        reference.check({**onnx, "weights_sha256": "d" * 64})


def test_a_reference_given_by_a_relative_path_is_recorded_in_full(tmp_path, monkeypatch):
    """verdict.json and the review page name the file wherever the run was started."""
    screened(tmp_path / "run" / "s0", 800)
    LabReference.from_runs([tmp_path / "run"]).save(tmp_path / "lab.json")
    monkeypatch.chdir(tmp_path / "run")
    reference = LabReference.load("../lab.json")
    assert reference.file == str((tmp_path / "lab.json").resolve())
    # measured (as here) before the other types were shared out on their own: refused now (the margins moved)
    with pytest.raises(ValueError, match="another cell-type classifier"):
        reference.check({**reference.classifier, "others_prior_correction": 0.0})


def test_a_lab_reference_places_the_runs_blast_calls_and_is_recorded(tmp_path):
    slide = tmp_path / "slide"  # a real photograph: synthetic cells are no white cells the model knows
    slide.mkdir()
    shutil.copyfile(DEMO_SLIDE / "EarlyPreb.jpeg", slide / "EarlyPreb.jpeg")
    result = runner.invoke(app, ["run", str(slide), "--out", str(tmp_path / "normal")])
    assert result.exit_code == 0, result.output
    made = runner.invoke(app, ["lab-reference", str(tmp_path / "normal"), "-o", str(tmp_path / "lab.json")])
    assert made.exit_code == 2 and "fewer than 500" in made.output  # one photograph is not a reference
    args = ["lab-reference", str(tmp_path / "normal"), "-o", str(tmp_path / "lab.json"), "--min-cells", "5"]
    made = runner.invoke(app, [*args, "--normal-called-blast", "0.2"])
    assert made.exit_code == 0, made.output
    assert "blast offset" in made.stdout and "replaces" not in made.stdout
    again = runner.invoke(app, [*args, "--normal-called-blast", "0.2"])
    assert again.exit_code == 0 and "it replaces the reference that was there" in " ".join(again.stdout.split())
    lab = json.loads((tmp_path / "lab.json").read_text())
    before = pd.read_csv(tmp_path / "normal" / "slide" / "cells.csv")
    # screened again with it into the same folder: every field is redone (the journal's key holds the offset)
    result = runner.invoke(
        app, ["run", str(slide), "--out", str(tmp_path / "normal"), "--lab-reference", str(tmp_path / "lab.json")]
    )
    assert result.exit_code == 0, result.output
    after = pd.read_csv(tmp_path / "normal" / "slide" / "cells.csv")
    assert np.allclose(after.blast_margin, before.blast_margin + lab["offset"], atol=2e-3)
    white = after[~after.cell_type.isin(NOT_WHITE)]  # the share asked is of the white cells
    assert np.mean(white.cell_type == "blast") == pytest.approx(0.2, abs=1 / len(white) + 0.01)
    verdict = json.loads((tmp_path / "normal" / "slide" / "verdict.json").read_text())
    assert verdict["lab_reference"]["offset"] == lab["offset"] and verdict["lab_reference"]["n_slides"] == 1
    report = (tmp_path / "normal" / "report.html").read_text()
    assert "lab.json: blast log-odds offset" in report
    # a reference made from runs with a lab reference is refused; so is one for another classifier
    made = runner.invoke(app, args)
    assert made.exit_code == 2 and "screened with a lab reference" in made.output
    lab["classifier"]["temperature"] = 9.0
    (tmp_path / "lab.json").write_text(json.dumps(lab))
    result = runner.invoke(
        app, ["run", str(slide), "--out", str(tmp_path / "o2"), "--lab-reference", str(tmp_path / "lab.json")]
    )
    assert result.exit_code == 2 and "another cell-type classifier" in result.output


def test_a_negative_without_a_lab_reference_says_it_is_weak_evidence_and_with_one_does_not(tmp_path):
    """Leaving each training lab out, blasts of a lab the models never saw are ranked above its normal cells but
    seldom called: a negative made with the models' own calls says little on a lab's own slides, and the run says
    so (a note line, the review page and verdict.json's notes); with the lab's reference it does not."""
    slide = tmp_path / "dense"  # the demo's densest photograph of blasts, called negative with the models' own calls
    slide.mkdir()
    shutil.copyfile(DEMO_SLIDE / "38e21132-cb80-4a2c-a71b-b6f04ff15017.jpg", slide / "field.jpg")
    result = runner.invoke(app, ["run", str(slide), "--out", str(tmp_path / "own")])
    assert result.exit_code == 0, result.output
    verdict = json.loads((tmp_path / "own" / "dense" / "verdict.json").read_text())
    assert verdict["verdict"] == "negative" and not any("weak" in r for r in verdict["review_reasons"])  # (a note)
    assert len(verdict["notes"]) == 1 and verdict["notes"][0].startswith("negative made without a lab reference")
    note = [line for line in result.stderr.splitlines() if line.startswith("note: 1 slide(s) negative (dense)")]
    assert len(note) == 1 and "weak evidence" in note[0] and "leukoscan lab-reference" in note[0]
    assert "<b>1 negative slide(s)</b> made without a lab reference" in (tmp_path / "own" / "report.html").read_text()
    args = ["lab-reference", str(tmp_path / "own"), "-o", str(tmp_path / "lab.json"), "--min-cells", "5"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(
        app, ["run", str(slide), "--out", str(tmp_path / "placed"), "--lab-reference", str(tmp_path / "lab.json")]
    )
    assert result.exit_code == 0, result.output
    assert "weak evidence" not in result.stderr + result.stdout
    assert json.loads((tmp_path / "placed" / "dense" / "verdict.json").read_text())["notes"] == []
    assert "negative slide(s)" not in (tmp_path / "placed" / "report.html").read_text()
