"""`leukoscan run`: output contract, bad inputs, resume, exit codes, inputs untouched, report in Chromium."""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from browser import chromium, needs_chromium
from PIL import Image
from synth import smear, write_slide
from typer.testing import CliRunner

from leukoscan.cells import CELL_TYPES, SUBTYPE_LABELS, SUBTYPES, TYPE_LABELS
from leukoscan.images import MAX_PIXELS, list_images
from leukoscan.pipeline import DEMO_SLIDE, app
from leukoscan.records import CELL_COLUMNS, IMAGE_COLUMNS, SUBTYPE_COLUMNS, SUMMARY_COLUMNS, TYPE_COLUMNS

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, ["run", *map(str, args)])
    return result


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    before = digest(DEMO_SLIDE)
    result = run("--out", out)  # no slide given: the bundled demo slide (README's second command)
    assert result.exit_code == 0, result.output
    assert digest(DEMO_SLIDE) == before  # inputs are never modified
    return out


def test_demo_run_output_contract(demo_out):
    # the bundled photographs come from different labs: each is its own slide, never one verdict over all
    photos = list_images(DEMO_SLIDE)
    summary = pd.read_csv(demo_out / "summary.csv", keep_default_na=False)
    assert list(summary.columns) == SUMMARY_COLUMNS and summary.slide.tolist() == [p.stem for p in photos]
    slides = [demo_out / p.stem for p in photos]
    cells = pd.concat([pd.read_csv(s / "cells.csv") for s in slides], ignore_index=True)
    images = pd.concat([pd.read_csv(s / "images.csv", keep_default_na=False) for s in slides], ignore_index=True)
    assert list(cells.columns) == CELL_COLUMNS and list(images.columns) == IMAGE_COLUMNS
    assert len(images) == 7 and (images.status == "ok").all()
    assert len(cells) > 0 and set(cells.cell_type) <= set(CELL_TYPES)
    assert np.allclose(cells[TYPE_COLUMNS].to_numpy().sum(axis=1), 1, atol=2e-3)
    # the subtype is asked of blasts only: filled (summing to 1) for them, empty for every other cell
    blast = cells.cell_type == "blast"
    assert blast.any() and (~blast).any()
    assert cells.loc[~blast, ["subtype", *SUBTYPE_COLUMNS]].isna().all().all()
    assert np.allclose(cells.loc[blast, SUBTYPE_COLUMNS].to_numpy().sum(axis=1), 1, atol=2e-3)
    assert set(cells.subtype[blast]) <= set(SUBTYPES)
    labels = [TYPE_LABELS[CELL_TYPES.index(t)] for t in cells.cell_type]
    expected = [
        f"{lab} ({SUBTYPE_LABELS[SUBTYPES.index(s)]})" if t == "blast" else lab
        for lab, t, s in zip(labels, cells.cell_type, cells.subtype)
    ]
    assert cells.label.tolist() == expected
    # images.csv: blast counts per field add up to the cells table
    assert images.n_blasts.sum() == blast.sum() and images.n_cells.sum() == len(cells)
    white = ~cells.cell_type.isin(["erythroblast", "other"])  # the blast fraction's denominator
    assert images.n_white_cells.sum() == white.sum() == summary.n_white_cells.sum()
    shown = images[images.n_white_cells > 0]
    assert np.allclose(shown.blast_fraction, shown.n_blasts / shown.n_white_cells, atol=1e-4)  # (4 decimals)
    assert images.blast_fraction[images.n_white_cells == 0].isna().all()
    fraction = pd.to_numeric(summary.blast_fraction, errors="coerce")  # empty where insufficient
    judged = fraction.notna()
    assert judged.any() and np.allclose(fraction[judged], (summary.n_blasts / summary.n_white_cells)[judged], atol=1e-4)
    assert ((cells.x2 > cells.x1) & (cells.y2 > cells.y1)).all()
    assert summary.n_blast.sum() == blast.sum() and summary.n_cells.sum() == len(cells)
    for slide, image, overlay in zip(slides, images.image, images.overlay):
        verdict = json.loads((slide / "verdict.json").read_text())
        assert verdict["verdict"] in {"suspected", "negative", "insufficient", "indeterminate"} and verdict["reason"]
        assert sum(verdict[f"n_{t}"] for t in CELL_TYPES) == verdict["n_cells"]
        assert verdict["n_cells"] - verdict["n_other"] - verdict["n_erythroblast"] == verdict["n_white_cells"]
        assert set(verdict["models"]) == {"detector", "classifier", "subtype"}
        for key in ("thresholds", "models", "version", "device", "seconds"):
            assert key in verdict
        assert len(verdict["models"]["detector"]["sha256"]) == 64
        assert overlay == f"overlays/{Path(image).stem}.jpg" and (slide / overlay).is_file()


def test_boxes_sit_on_white_cells_of_a_synthetic_field(tmp_path):
    img, truth = smear((224, 224), n_wbc=3, seed=7)
    cv2.imwrite(str(tmp_path / "field.png"), img[..., ::-1])
    assert run(tmp_path / "field.png", "--out", tmp_path / "out").exit_code == 0
    cells = pd.read_csv(tmp_path / "out" / "field" / "cells.csv")
    import supervision as sv

    iou = sv.box_iou_batch(truth, cells[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float32))
    assert (iou.max(axis=1) > 0.5).all()


@pytest.fixture
def bad_slide(tmp_path):
    folder = tmp_path / "slide [2] ünï (copy)"
    folder.mkdir()
    img, _ = smear((224, 224), seed=3)
    Image.fromarray(img).save(folder / "good field.jpg")
    Image.fromarray(img[..., 0]).save(folder / "gray.png")
    other, _ = smear((224, 224), seed=4)  # (another field: the same one as PNG would be the same picture)
    Image.fromarray(np.dstack([other, np.full(other.shape[:2], 255, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(img[..., 1].astype(np.uint16) * 257).save(folder / "deep16.png")
    data = (folder / "good field.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "corrupt.jpg").write_bytes(data[:100] + b"\x00" * 500 + data[600:700])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.tif").write_text("not an image")
    side = int(MAX_PIXELS**0.5) + 10
    Image.new("1", (side, side)).save(folder / "bomb.png")
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    return folder


def test_bad_inputs_never_stop_the_run(bad_slide, tmp_path):
    before = digest(bad_slide)
    result = run(bad_slide, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert digest(bad_slide) == before
    images = pd.read_csv(tmp_path / "out" / bad_slide.name / "images.csv", keep_default_na=False).set_index("image")
    assert set(images.index) == {
        "good field.jpg",
        "gray.png",
        "rgba.png",
        "deep16.png",
        "truncated.jpg",
        "corrupt.jpg",
        "empty.png",
        "notes.tif",
        "bomb.png",
    }
    for ok in ("good field.jpg", "rgba.png"):
        assert images.loc[ok, "status"] == "ok", images.loc[ok, "error"]
    for gray in ("gray.png", "deep16.png"):  # decoded, but a stain's colour is what the cell types are read from
        assert images.loc[gray, "status"] == "unusable" and "grayscale" in images.loc[gray, "error"]
    bad_files = ("truncated.jpg", "corrupt.jpg", "empty.png", "notes.tif", "bomb.png")
    for bad in bad_files:
        assert images.loc[bad, "status"] == "error"
        assert images.loc[bad, "error"] and "\n" not in images.loc[bad, "error"]
        assert images.loc[bad, "overlay"] == ""  # no overlay for a file that could not be read
    assert "image over 80 megapixels" in images.loc["bomb.png", "error"] and "empty" in images.loc["empty.png", "error"]
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary.n_failed.tolist() == [5] and summary.n_images.tolist() == [9]
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]  # one line each, on stderr
    assert sorted(skipped) == sorted(f"skipped {bad_slide.name}/{bad}: {images.loc[bad, 'error']}" for bad in bad_files)


def test_resume_skips_finished_images_unless_forced(tmp_path):
    slide = tmp_path / "slide"
    write_slide(slide, 3, seed=20)
    out = tmp_path / "out"
    assert run(slide, "--out", out).exit_code == 0
    journal = out / "slide" / ".state" / "fields.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3

    def overlays():
        return {p.name: p.stat().st_mtime_ns for p in (out / "slide" / "overlays").glob("*.jpg")}

    first = overlays()
    # as if the run had been interrupted while recording its last field: that line is cut short
    journal.write_bytes(b"".join(lines[:2]) + lines[2][:25])
    resumed = run(slide, "--out", out)
    assert resumed.exit_code == 0 and f"slide: 2 of 3 fields already screened in {out}, kept" in resumed.output
    again = overlays()
    assert set(again) == set(first)
    assert sum(again[n] != first[n] for n in first) == 1  # only the unfinished image was redone
    assert len(pd.read_csv(out / "slide" / "images.csv")) == 3
    assert len(journal.read_bytes().splitlines()) == 4  # the cut line, then the redone field on a line of its own
    uncertain = out / "slide" / "uncertain"
    uncertain.mkdir(exist_ok=True)
    stems = sorted(Path(n).stem for n in first)
    for stem in stems:  # as if an earlier run had found cell 99 of each field uncertain
        (uncertain / f"{stem}_099.jpg").write_bytes(b"stale")
    assert run(slide, "--out", out).exit_code == 0  # nothing left to do: the finished fields' crops stay
    assert overlays() == again and all((uncertain / f"{stem}_099.jpg").exists() for stem in stems)
    verdict = json.loads((out / "slide" / "verdict.json").read_text())
    (out / "slide" / "verdict.json").unlink()  # as if the run had stopped after its last field, before the verdict
    assert run(slide, "--out", out).exit_code == 0
    again_verdict = json.loads((out / "slide" / "verdict.json").read_text())
    assert again_verdict["scale"] == verdict["scale"] and again_verdict["scale"]  # found again, not left empty
    assert overlays() == again  # and no field screened again
    assert run(slide, "--out", out, "--export", "coco").exit_code == 0
    coco = (out / "slide" / "cells.coco.json").stat().st_mtime_ns
    assert run(slide, "--out", out, "--force").exit_code == 0
    forced = overlays()
    # an earlier run's export is kept current by a run without --export (its cells were screened again)
    assert (out / "slide" / "cells.coco.json").stat().st_mtime_ns != coco
    assert all(forced[n] != again[n] for n in again)
    assert len(journal.read_bytes().splitlines()) == 3  # --force starts the journal afresh
    assert not any(uncertain.glob("*_099.jpg"))  # screened again: the earlier run's crops are gone


def test_a_resume_screens_again_what_other_models_or_another_scale_screened(tmp_path):
    """The journal keeps how each field was screened: a rerun with another --cell-size or a re-calibrated
    classifier card redoes the fields (the tables never mix two models' calls); the same weights at another
    path, or the same options again, redo nothing."""
    import shutil

    from leukoscan.config import CLASSIFIER_WEIGHTS

    slide, out = write_slide(tmp_path / "slide", 2, seed=30), tmp_path / "out"

    def overlays():
        return {p.name: p.stat().st_mtime_ns for p in (out / "slide" / "overlays").glob("*.jpg")}

    def screen(*args):
        result = run(slide, "--out", out, *args)
        assert result.exit_code == 0, result.output
        return overlays()

    first = screen()
    resized = screen("--cell-size", "40")
    assert all(resized[n] != first[n] for n in first)
    assert json.loads((out / "slide" / "verdict.json").read_text())["scale"]["source"] == "--cell-size"
    assert screen("--cell-size", "40") == resized  # the same way again: nothing to redo
    moved = tmp_path / "weights" / CLASSIFIER_WEIGHTS.name
    moved.parent.mkdir()
    for f in (CLASSIFIER_WEIGHTS, CLASSIFIER_WEIGHTS.with_suffix(".json")):
        shutil.copy(f, moved.parent / f.name)
    assert screen("--cell-size", "40", "--classifier-weights", moved) == resized  # same model elsewhere
    card = json.loads(moved.with_suffix(".json").read_text())
    card["temperature"] *= 1.5  # as `leukoscan classify calibrate` would change it
    moved.with_suffix(".json").write_text(json.dumps(card))
    recalibrated = screen("--cell-size", "40", "--classifier-weights", moved)
    assert all(recalibrated[n] != resized[n] for n in resized)
    verdict = json.loads((out / "slide" / "verdict.json").read_text())
    assert verdict["models"]["classifier"]["temperature"] == card["temperature"]


def test_exit_codes(tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "x.jpg").write_bytes(b"")
    (empty / "y.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = run(empty, "--out", tmp_path / "o1")
    assert result.exit_code == 1 and "no image could be processed" in result.output
    # a slide whose every file failed is insufficient: no blast fraction, no interval, and a person looks
    verdict = json.loads((tmp_path / "o1" / "nothing" / "verdict.json").read_text())
    assert verdict["verdict"] == "insufficient" and verdict["needs_review"] and verdict["n_failed"] == 2
    assert verdict["blast_fraction"] is None and verdict["ci_low"] is None and verdict["ci_high"] is None
    assert "0 usable fields" in verdict["review_reasons"][0] and "insufficient (0 usable fields < 1)" in result.output
    result = run(tmp_path / "missing-folder", "--out", tmp_path / "o2")
    assert result.exit_code == 2 and "no such slide" in result.output
    no_images = tmp_path / "no-images"
    no_images.mkdir()
    (no_images / "notes.txt").write_text("not a field")
    result = run(no_images, "--out", tmp_path / "o3")  # refused up front, before any slide is screened
    assert result.exit_code == 2 and "no images in slide folder" in result.output
    write_slide(tmp_path / "slides" / "a", 1)  # a folder of slide folders: the line says how to name them
    result = run(tmp_path / "slides", "--out", tmp_path / "o4")
    assert result.exit_code == 2 and "holds 1 folder(s) that do: name each as a slide" in result.output
    result = run(empty, "--out", tmp_path / "o3", "--detector-weights", tmp_path / "none.pt")
    assert result.exit_code == 2 and "weights not found" in result.output


@needs_chromium
def test_report_loads_in_chromium(demo_out, tmp_path):
    report = demo_out / "report.html"
    page = report.read_text()
    assert "screening aid" in page.lower() and "not a diagnosis" in page
    for link in re.findall(r'(?:src|href)="([^"#][^"]*)"', page):  # relative links resolve inside the folder
        from urllib.parse import unquote

        assert (demo_out / unquote(link)).is_file(), link
    proc = chromium(report, tmp_path, "--dump-dom", budget_ms=3000, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    verdict = json.loads((demo_out / "new" / "verdict.json").read_text())["verdict"]
    assert 'id="verdicts"' in proc.stdout and verdict in proc.stdout


def test_parallel_workers_match_serial(tmp_path):
    slides = []
    for k in range(2):
        folder = tmp_path / f"slide{k}"
        write_slide(folder, 2, seed=60 + 10 * k)
        slides.append(folder)
    assert run(*slides, "--out", tmp_path / "serial").exit_code == 0
    assert run(*slides, "--out", tmp_path / "parallel", "--workers", "2").exit_code == 0
    for k in range(2):
        a = pd.read_csv(tmp_path / "serial" / f"slide{k}" / "cells.csv")
        b = pd.read_csv(tmp_path / "parallel" / f"slide{k}" / "cells.csv")
        pd.testing.assert_frame_equal(a, b, atol=1e-3)
    s, p = (pd.read_csv(tmp_path / d / "summary.csv") for d in ("serial", "parallel"))
    pd.testing.assert_frame_equal(s, p)


def test_journal_records_a_field_whose_file_has_gone(tmp_path):
    """A field deleted while its slide is screened is recorded as an error, and never counts as finished."""
    from leukoscan.journal import Journal
    from leukoscan.records import FieldResult

    gone = tmp_path / "gone.jpg"
    with Journal(tmp_path / "out") as journal:
        state = journal.record(gone, FieldResult("error", "file not found"))
    assert state.fingerprint["size"] is None
    with Journal(tmp_path / "out") as journal:
        assert journal.finished(gone) is None


def test_a_slide_whose_outputs_cannot_be_written_gets_one_line_and_the_others_go_on(tmp_path):
    slides = []
    for k in range(2):
        folder = tmp_path / f"slide{k}"
        folder.mkdir()
        cv2.imwrite(str(folder / "f0.png"), smear(seed=80 + k)[0][..., ::-1])
        slides.append(folder)
    out = tmp_path / "out"
    (out / "slide0").mkdir(parents=True)
    (out / "slide0" / "overlays").write_text("a file where the overlay folder goes")
    result = run(*slides, "--out", out)
    assert result.exit_code == 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert (
        len(errors) == 1
        and "slide slide0: could not write its outputs" in errors[0]
        and "Traceback" not in result.output
    )
    assert list(pd.read_csv(out / "summary.csv").slide) == ["slide1"]
    assert (out / "slide1" / "verdict.json").exists() and (out / "report.html").exists()
    # nothing could be written: one line each and exit 1
    result = run(slides[0], "--out", out)
    assert result.exit_code == 1 and "no slide could be screened or written" in result.output
    # the run's own files cannot be written (a folder in the way): one line, exit 1, the slide's outputs kept
    (out / "summary.csv").unlink()
    (out / "summary.csv").mkdir()
    result = run(slides[1], "--out", out)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and errors == [
        f"error: could not write summary.csv and report.html in {out} (Is a directory: {out / 'summary.csv'}); "
        "each slide's folder has its own"
    ]
    assert (out / "slide1" / "verdict.json").exists() and "Traceback" not in result.output


def test_an_interrupted_run_says_how_to_resume(tmp_path, monkeypatch):
    import leukoscan.slide

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(leukoscan.slide, "screen_slide", interrupted)
    result = run(DEMO_SLIDE, "--out", tmp_path)
    assert result.exit_code == 130
    assert "interrupted:" in result.output and "run the same command again to resume" in result.output
    assert "the 0 field(s) finished so far are kept" in " ".join(result.output.split())


def test_an_interrupted_run_keeps_the_fields_it_finished_and_resumes_from_them(tmp_path, monkeypatch):
    """Ctrl-C after two of three fields are journalled: the line counts them, and the same command again screens
    the third alone (the first two kept, not screened again)."""
    from leukoscan.journal import Journal

    slide, out = tmp_path / "slide", tmp_path / "out"
    write_slide(slide, 3, seed=21)
    record, recorded = Journal.record, []

    def interrupted_after_two(journal, image, result):
        recorded.append(record(journal, image, result))
        if len(recorded) == 2:
            raise KeyboardInterrupt
        return recorded[-1]

    monkeypatch.setattr(Journal, "record", interrupted_after_two)
    result = run(slide, "--out", out, "--batch", "1")
    assert result.exit_code == 130
    assert f"the 2 field(s) finished so far are kept in {out}" in " ".join(result.output.split())
    monkeypatch.setattr(Journal, "record", record)
    resumed = run(slide, "--out", out)
    assert resumed.exit_code == 0 and f"slide: 2 of 3 fields already screened in {out}, kept" in resumed.output
    assert len(pd.read_csv(out / "slide" / "images.csv")) == 3


def test_ctrl_c_with_workers_stops_the_run_at_once(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) during a ``--workers`` run: no queued slide is started and
    the workers stop; the run exits 130 within seconds, the finished slides kept."""
    import signal
    import subprocess
    import sys
    import time

    slides = [write_slide(tmp_path / "in" / f"s{k:02d}", 8, seed=k) for k in range(10)]
    out = tmp_path / "out"
    args = [sys.executable, "-m", "leukoscan.pipeline", "run", *map(str, slides), "--out", str(out), "--workers", "2"]
    default = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731 (a shell's & would ignore it)
    run_ = subprocess.Popen(args, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=default)
    while not list(out.glob("*/verdict.json")) and run_.poll() is None:
        time.sleep(0.1)
    interrupted = time.monotonic()
    os.killpg(run_.pid, signal.SIGINT)
    err = run_.communicate(timeout=60)[1].decode()
    assert run_.returncode == 130 and "run the same command again to resume" in err, err
    assert time.monotonic() - interrupted < 10 and len(list(out.glob("*/verdict.json"))) <= 4


def test_a_worker_killed_mid_slide_leaves_no_slide_unscreened(tmp_path):
    """A worker process killed while screening (as the kernel's out-of-memory killer would) breaks its pool: the
    slides left unfinished are screened again in a fresh worker, resuming from their journals, and the run
    ends with every slide's verdict."""
    import subprocess
    import sys
    import time

    import psutil

    slides = [write_slide(tmp_path / "in" / f"s{k}", 6, seed=40 + k) for k in range(3)]
    out = tmp_path / "out"
    args = [sys.executable, "-m", "leukoscan.pipeline", "run", *map(str, slides), "--out", str(out), "--workers", "2"]
    run_ = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journals = lambda: list(out.glob("*/.state/fields.jsonl"))  # noqa: E731
    while not journals() and run_.poll() is None:  # a worker is part-way through a slide
        time.sleep(0.05)
    workers = [p for p in psutil.Process(run_.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    assert workers, "no worker process found"
    workers[0].kill()
    output = run_.communicate(timeout=300)[0]
    assert run_.returncode == 0, output
    assert "screened again one at a time" in " ".join(output.split()), output
    assert all((out / s.name / "verdict.json").is_file() for s in slides)
    summary = pd.read_csv(out / "summary.csv")
    assert summary.slide.tolist() == ["s0", "s1", "s2"] and (summary.n_images == 6).all()


def test_fields_sharing_a_stem_keep_their_own_overlays(tmp_path):
    slide = tmp_path / "slide"
    slide.mkdir()
    a, b = smear(seed=91)[0], smear(seed=92)[0]
    cv2.imwrite(str(slide / "f0.png"), a[..., ::-1])
    cv2.imwrite(str(slide / "f0.jpg"), b[..., ::-1])
    cv2.imwrite(str(slide / "f1.png"), a[..., ::-1])
    assert run(slide, "--out", tmp_path / "out").exit_code == 0
    overlays = tmp_path / "out" / "slide" / "overlays"
    assert sorted(p.name for p in overlays.iterdir()) == ["f0_jpg.jpg", "f0_png.jpg", "f1.jpg"]
    images = pd.read_csv(tmp_path / "out" / "slide" / "images.csv").set_index("image")
    assert images.overlay.to_dict() == {
        "f0.jpg": "overlays/f0_jpg.jpg",
        "f0.png": "overlays/f0_png.jpg",
        "f1.png": "overlays/f1.jpg",
    }
    report = (tmp_path / "out" / "report.html").read_text()
    assert all(f'src="slide/{o}"' in report for o in images.overlay)
    # a field removed from the slide: its old outputs go (the folder holds what images.csv lists), others stay
    (slide / "f1.png").rename(tmp_path / "f1.png")  # moved aside (its time stamp kept), then back below
    done = tmp_path / "out" / "slide"
    (done / "uncertain").mkdir(exist_ok=True)
    (done / "uncertain" / "f1_099.jpg").write_bytes(b"old")
    (done / "uncertain" / "f0_png_099.jpg").write_bytes(b"kept")
    (done / "notes.txt").write_text("a user's")
    assert run(slide, "--out", tmp_path / "out").exit_code == 0
    report = (tmp_path / "out" / "report.html").read_text()
    assert "overlays/f1.jpg" not in report and "f1_099" not in report
    assert sorted(p.name for p in overlays.iterdir()) == ["f0_jpg.jpg", "f0_png.jpg"]
    assert not (done / "gallery" / "f1.jpg").exists() and (done / "gallery" / "f0_png.jpg").exists()
    assert not (done / "uncertain" / "f1_099.jpg").exists() and (done / "uncertain" / "f0_png_099.jpg").exists()
    assert (done / "notes.txt").exists()
    # put back unchanged: its journal line says finished, but its outputs went: screened again, nothing missing
    (tmp_path / "f1.png").rename(slide / "f1.png")
    result = run(slide, "--out", tmp_path / "out")
    assert result.exit_code == 0 and "2 of 3 fields already screened" in result.output, result.output
    assert (overlays / "f1.jpg").is_file() and (done / "gallery" / "f1.jpg").is_file()
    # each overlay is its own field's (the two f0 fields differ)
    assert not np.array_equal(cv2.imread(str(overlays / "f0_jpg.jpg")), cv2.imread(str(overlays / "f0_png.jpg")))


def test_batches_stop_at_the_field_count_or_the_pixel_budget():
    from leukoscan.slide import batches

    paths = [Path(f"f{i}.jpg") for i in range(7)]
    sizes = {p: (1000, 1000) for p in paths} | {paths[3]: (5000, 5000), paths[5]: None}
    assert [len(b) for b in batches(paths, sizes, n=16, max_pixels=2.5e6)] == [
        2,
        1,
        1,
        3,
    ]  # 25 MP alone; unreadable = 0
    assert [len(b) for b in batches(paths, sizes, n=2, max_pixels=1e9)] == [2, 2, 2, 1]
    assert list(batches([], sizes, n=16, max_pixels=1e6)) == []


def test_a_pixel_budget_splits_batches_without_changing_results(tmp_path, monkeypatch):
    import leukoscan.slide

    slide = tmp_path / "slide"
    write_slide(slide, 3, seed=95)
    assert run(slide, "--out", tmp_path / "a").exit_code == 0
    seen, batches = [], leukoscan.slide.batches  # the fields of each batch, as the run makes them
    monkeypatch.setattr(leukoscan.slide, "batches", lambda *a: [seen.append(len(c)) or c for c in batches(*a)])
    w, h = Image.open(slide / "f0.png").size
    assert run(slide, "--out", tmp_path / "b", "--batch-megapixels", 1.5 * w * h / 1e6).exit_code == 0
    assert seen == [1, 1, 1]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "a" / "slide" / "cells.csv"), pd.read_csv(tmp_path / "b" / "slide" / "cells.csv")
    )


def test_fields_that_are_not_smears_are_unusable_and_their_cells_do_not_count(tmp_path):
    from test_quality import bad_fields

    slide = tmp_path / "bad"
    slide.mkdir()
    for name, (rgb, _) in bad_fields().items():
        cv2.imwrite(str(slide / f"{name}.png"), rgb[..., ::-1])
    result = run(slide, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    images = pd.read_csv(tmp_path / "out" / "bad" / "images.csv", keep_default_na=False).set_index("image")
    for name, (_, reason) in bad_fields().items():
        row = images.loc[f"{name}.png"]
        assert row.status == "unusable" and reason in row.error and row.n_cells == 0 and row.n_blasts == 0
        assert (tmp_path / "out" / "bad" / row.overlay).is_file()  # still shown for review
    assert len(pd.read_csv(tmp_path / "out" / "bad" / "cells.csv")) == 0
    verdict = json.loads((tmp_path / "out" / "bad" / "verdict.json").read_text())
    assert verdict["verdict"] == "insufficient" and verdict["n_blasts"] == 0 and verdict["needs_review"]
    assert verdict["n_unusable"] == len(bad_fields()) and any("not usable" in r for r in verdict["review_reasons"])
    # the review page says why beside the verdict and under each field's overlay
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'class="badge review"' in page and "<td>yes: " in page and "not usable smears of" in page
    assert page.count('<span class="unusable">not counted: ') == len(bad_fields())


def test_fields_added_to_a_screened_slide_are_screened_at_its_scale(tmp_path):
    """The fields screened before were cut at the slide's cell-size estimate: fields added later are screened at
    the same one (estimating again on the new first fields would mix two scales in one verdict)."""
    slide = tmp_path / "slide"
    slide.mkdir()
    for seed in (1, 2):
        cv2.imwrite(str(slide / f"f{seed}.png"), smear((300, 300), seed=seed)[0][..., ::-1])
    assert run(slide, "--out", tmp_path / "out").exit_code == 0
    before = json.loads((tmp_path / "out" / "slide" / "verdict.json").read_text())
    big = smear((300, 300), rbc_px=30, wbc_px=54, n_rbc=20, seed=3)[0]  # first in order: a sample field now
    cv2.imwrite(str(slide / "a0.png"), big[..., ::-1])
    result = run(slide, "--out", tmp_path / "out")
    assert result.exit_code == 0 and "2 of 3 fields already screened" in result.output, result.output
    after = json.loads((tmp_path / "out" / "slide" / "verdict.json").read_text())
    assert after["scale"] == before["scale"] and after["source"] == str(slide.resolve())


def test_a_run_names_the_earlier_runs_slides_its_summary_leaves_out(tmp_path):
    """Slides another run screened into the same --out are not in this run's summary.csv and review page; the run
    says so, naming the first five and counting the rest."""
    out = tmp_path / "out"
    names = ["[x]", "a", "b", "c", "d", "e"]
    for name in names:
        (out / name).mkdir(parents=True)
        (out / name / "verdict.json").write_text("{}")
    slide = tmp_path / "new"
    write_slide(slide, 1, seed=5)
    result = run(slide, "--out", out)
    assert result.exit_code == 0, result.output
    note = [line for line in result.stderr.splitlines() if "this run did not screen" in line]
    assert note == [
        f"note: {out} also holds 6 slide folder(s) this run did not screen ([x], a, b, c, d and 1 more): "
        "summary.csv and report.html are this run's slides only"
    ]
    assert pd.read_csv(out / "summary.csv").slide.tolist() == ["new"]


def test_cells_seen_again_in_a_field_that_overlaps_an_earlier_one_are_counted_once(tmp_path):
    """Two fields of one smear that share 57 % of a field (the stage moved by less than a field), the second
    captured a little brighter: the cells in both are counted once, in the first field; the second keeps its own.
    images.csv says how many and with which field, verdict.json counts them, the run and the review page say so;
    the same two fields apart (no part shared) count every cell."""
    centres = [(40, 60), (160, 112), (150, 180), (280, 70)]  # the middle two in both fields
    rgb = smear((224, 320), n_rbc=80, n_wbc=4, seed=5, wbc_centres=centres)[0][..., ::-1]
    slide = tmp_path / "slide"
    slide.mkdir()
    cv2.imwrite(str(slide / "a.png"), rgb[:, :224])
    cv2.imwrite(str(slide / "b.png"), np.clip(rgb[:, 96:].astype(int) + 5, 0, 255).astype(np.uint8))
    result = run(slide, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    images = pd.read_csv(tmp_path / "out" / "slide" / "images.csv", keep_default_na=False).set_index("image")
    assert images.n_cells.to_dict() == {"a.png": 3, "b.png": 1}
    assert images.n_shared.to_dict() == {"a.png": 0, "b.png": 2}
    assert images.overlaps.to_dict() == {"a.png": "", "b.png": "a.png (2)"}
    assert (images.status == "ok").all()
    cells = pd.read_csv(tmp_path / "out" / "slide" / "cells.csv")
    assert len(cells) == 4 and sorted(cells.image) == ["a.png"] * 3 + ["b.png"]
    verdict = json.loads((tmp_path / "out" / "slide" / "verdict.json").read_text())
    assert verdict["n_shared_cells"] == 2 and verdict["n_cells"] == 4
    assert "slide: 2 cell(s) seen in two overlapping fields, counted once" in result.stderr
    assert "2 cell(s) seen in two overlapping fields, counted once" in (tmp_path / "out" / "report.html").read_text()
    apart = tmp_path / "apart"
    apart.mkdir()
    shutil.copyfile(slide / "a.png", apart / "a.png")
    cv2.imwrite(str(apart / "c.png"), smear((224, 224), n_rbc=50, n_wbc=3, seed=6)[0][..., ::-1])
    result = run(apart, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    images = pd.read_csv(tmp_path / "out" / "apart" / "images.csv", keep_default_na=False)
    assert images.n_shared.tolist() == [0, 0] and images.n_cells.tolist() == [3, 3]


def test_a_field_given_twice_is_counted_once(tmp_path):
    """A field copied under another name, saved again in another format (JPEG included) or at half size, or
    captured twice (the sensor's noise apart; the stage unmoved or drifted by 1 %) is the same picture: `duplicate`
    in images.csv (naming the one counted: the largest, then the first), its cells left out of cells.csv and the
    verdict, and the run says so; different fields are not; with the one counted removed later, its copy counts
    again on a resume."""
    slide = write_slide(tmp_path / "slide", 3, seed=80)
    once = run(slide, "--out", tmp_path / "once")
    assert once.exit_code == 0, once.output
    shutil.copyfile(slide / "f0.png", slide / "g0 copy.png")
    rgb = cv2.imread(str(slide / "f1.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(slide / "f1.bmp"), rgb)
    cv2.imwrite(str(slide / "f1.jpg"), rgb, [cv2.IMWRITE_JPEG_QUALITY, 75])
    noise = np.random.default_rng(0).normal(0, 4, rgb.shape)
    cv2.imwrite(str(slide / "f2b.png"), np.clip(cv2.imread(str(slide / "f2.png")) + noise, 0, 255).astype(np.uint8))
    f2 = cv2.imread(str(slide / "f2.png"))  # captured again after the stage drifted by 1 % of the field
    drift = np.float32([[1, 0, f2.shape[1] / 100], [0, 1, f2.shape[0] / 100]])
    cv2.imwrite(str(slide / "f2c.png"), cv2.warpAffine(f2, drift, f2.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101))
    f0 = cv2.imread(str(slide / "f0.png"))  # a smaller copy, listed first: the larger one counts
    cv2.imwrite(
        str(slide / "a0 preview.jpg"),
        cv2.resize(f0, (f0.shape[1] // 2, f0.shape[0] // 2), interpolation=cv2.INTER_AREA),
    )
    twice = run(slide, "--out", tmp_path / "twice")
    assert twice.exit_code == 0, twice.output
    images = pd.read_csv(tmp_path / "twice" / "slide" / "images.csv", keep_default_na=False).set_index("image")
    assert images.status.to_dict() == {
        "a0 preview.jpg": "duplicate",
        "f0.png": "ok",
        "f1.bmp": "ok",  # (listed first: the first in the slide's order is the one counted)
        "f1.jpg": "duplicate",
        "f1.png": "duplicate",
        "f2.png": "ok",
        "f2b.png": "duplicate",
        "f2c.png": "duplicate",
        "g0 copy.png": "duplicate",
    }
    assert images.error["g0 copy.png"] == "the same picture as f0.png" and images.n_cells["g0 copy.png"] == 0
    assert images.error["f1.png"] == images.error["f1.jpg"] == "the same picture as f1.bmp"
    assert images.error["a0 preview.jpg"] == "the same picture as f0.png"
    cells = {d: pd.read_csv(tmp_path / d / "slide" / "cells.csv") for d in ("once", "twice")}
    assert len(cells["twice"]) == len(cells["once"])  # every cell once
    verdict = json.loads((tmp_path / "twice" / "slide" / "verdict.json").read_text())
    assert verdict["n_duplicates"] == 6 and verdict["n_cells"] == len(cells["twice"])
    assert "skipped slide/g0 copy.png: the same picture as f0.png" in twice.stderr
    assert "6 the same picture as another" in (tmp_path / "twice" / "report.html").read_text()
    (slide / "f0.png").unlink()
    again = run(slide, "--out", tmp_path / "twice")
    assert again.exit_code == 0, again.output
    images = pd.read_csv(tmp_path / "twice" / "slide" / "images.csv", keep_default_na=False).set_index("image")
    assert images.status["g0 copy.png"] == "ok" and images.n_cells["g0 copy.png"] > 0
