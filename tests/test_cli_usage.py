"""Every command, used wrongly: one `error:` line on stderr, the documented exit code (1 nothing could be
processed, 2 usage or input error), never a traceback. Then the run's summary on stdout, a resume with
nothing left to do loading no model, the image size limit, `--version` and the groups' help."""

import json
import re
import shlex
import shutil
import warnings

import cv2
import pandas as pd
import pytest
from PIL import Image
from synth import smear
from typer.testing import CliRunner

from leukoscan.cli import first_names, shown_name
from leukoscan.config import DETECTOR_WEIGHTS, SUBTYPE_WEIGHTS
from leukoscan.pipeline import DEMO_SLIDE, app

runner = CliRunner()

NOTHING, USAGE = 1, 2
# the exit code, then the arguments (split as a shell would); {placeholders} name the workspace's paths (see `ws`)
TABLE = """
# run
2 run {missing}
2 run {empty}
2 run {bad} --batch 0
2 run {bad} --out {garbage}  # a file: said before any model loads
2 run {bad} --batch many
2 run {bad} --cell-size -5
2 run {bad} --um-per-px 0
2 run {bad} --cell-size nan
2 run {bad} --cell-size 2  # too few pixels to classify
2 run {bad} --um-per-px 100
2 run {bad} --max-megapixels nan  # would turn the guard off
2 run {bad} --cell-size 30 --um-per-px 0.1  # one scale or the other
2 run {bad} --um-per-px 0.1 --cell-size 30
2 run {bad} --workers 0
2 run {bad} --batch-megapixels 0
2 run {bad} --max-megapixels -1
2 run {bad} --backend tensorrt
2 run {bad} --device gpu
2 run {bad} --detector-weights {garbage}
2 run {bad} --classifier-weights {missing}.pt
2 run {bad} --subtype-weights {detector_pt}  # a model for another task
2 run {bad} --labset {labset}  # no such option
2 frobnicate
# export
2 export --format tensorrt
2 export --detector-weights {garbage}
2 export --format openvino-int8 --detect-data {missing}.yaml
# doctor (a problem found is exit 1)
1 doctor --weights-dir {empty}
2 doctor --verbose
# data
2 data split --data-root {missing}
2 data detect --data-root {missing}
2 data classify --data-root {missing}
2 data classify --size 0
2 data fields --data-root {missing}
2 data cells --data-root {missing}
# detect
2 detect train --data {missing}.yaml
2 detect train --data {no_val_yaml}
2 detect train --data {broken_yaml}
2 detect train --epochs 0
2 detect train --fraction 0
2 detect val --data {missing}.yaml
2 detect val --data {yaml} --weights {garbage}
2 detect val --data {yaml} --split test  # the yaml has no test split
2 detect val --data {no_images_yaml}
2 detect val --data {no_names_yaml}
2 detect val --split train
2 detect predict
2 detect predict {missing}
2 detect predict {empty}
2 detect predict {bad} --weights {garbage}
2 detect predict {bad} --conf 2
1 detect predict {bad} --out {out}
2 detect prelabel {missing} --out {out}
2 detect prelabel {empty} --out {out}
2 detect prelabel {bad}  # --out is required
2 detect prelabel {bad} --out {garbage}  # a file where the label set goes
2 detect prelabel {bad} --out {out} --weights {garbage}
1 detect prelabel {bad} --out {out}
2 detect import-labels {missing} {coco}
2 detect import-labels {empty} {coco}
2 detect import-labels {labset} {missing}.json
2 detect import-labels {labset} {coco}  # not valid JSON: a problem listed
2 detect finetune {missing}
2 detect finetune {labset} --from {garbage}
2 detect finetune {labset} --epochs 0
2 detect finetune {labset} --epochs 99999999999999999999
2 detect promote {missing} {garbage}
2 detect promote {labset} {missing}.pt --regression {test_yaml}
2 detect promote {labset} {garbage} --regression {test_yaml}
2 detect promote {labset} {garbage} --regression {yaml}  # no test split
2 detect promote {garbage} --labset {labset}  # the label set is an argument
2 detect rollback abc --current {empty}/detector.pt
# classify
2 classify train --data {missing}
2 classify train --data {empty}
2 classify train --epochs 0
2 classify train-cells --cells {empty}
2 classify train-cells --cells {empty} --exclude nowhere
2 classify train-cells --cleaned {missing}.csv
2 classify clean --out {out}/c.csv  # --weights is required
2 classify clean --cells {empty} --weights {garbage} --out {out}/c.csv
2 classify pseudo-label --out {out}/p.csv  # --weights is required
2 classify pseudo-label --cells {empty} --weights {garbage} --out {out}/p.csv
2 classify pseudo-label --cells {empty} --weights {garbage} --out {out}/p.csv --confident 2
2 classify train-cells --pseudo {missing}.csv
2 classify train-cells --stain-transfer 2
2 classify train-cells --zoom -1
2 classify calibrate --data {crops}  # --weights is required
2 classify calibrate --weights {garbage} --data {crops}  # no train/ in it
2 classify calibrate --weights {garbage} --data {calib}  # train/ and val/ without crops
2 classify calibrate --weights {garbage} --data {calib_full}  # not a model
2 classify calibrate --weights {garbage} --data {calib_full} --test-time-views 3
2 classify calibrate --weights {garbage} --data {calib_full} --prior-correction -1
2 classify calibrate --weights {garbage} --data {calib_full} --prior-correction inf
2 classify calibrate --weights {subtype_pt} --data {calib_full}  # not a cell-type model: its card is kept
2 classify train-cells --zoom nan
2 lab-reference {out} --normal-called-blast nan
2 lab-reference {missing}
2 lab-reference {empty}  # no screened slide in it
2 run {bad} --lab-reference {nan_lab}  # an offset that is not a number
2 detect predict {bad} --conf nan
2 classify val --data {missing}
2 classify val --data {crops} --weights {garbage}
2 classify val --data {crops}  # no crops in it
2 classify val --split train
2 classify predict {missing}
2 classify predict {empty}
2 classify predict {bad} --weights {garbage}
2 classify predict {bad} --device tpu
1 classify predict {bad} --out {out}/p.csv
"""
CASES = [
    (int(code), args) for code, *args in filter(None, (shlex.split(line, comments=True) for line in TABLE.splitlines()))
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Paths the wrong usages name: missing, empty, unreadable or malformed ones."""
    root = tmp_path_factory.mktemp("usage")
    paths = {name: root / name for name in ("missing", "empty", "bad", "labset", "crops", "out")}
    paths["empty"].mkdir()
    paths["bad"].mkdir()
    (paths["bad"] / "field.jpg").write_text("not an image")
    for sub in ("images", "labels"):
        (paths["labset"] / sub).mkdir(parents=True)
    for split in ("train.txt", "val.txt"):
        (paths["labset"] / split).write_text("")
    (paths["crops"] / "val").mkdir(parents=True)
    for split in ("train", "val"):  # a training folder: empty, and with one crop per split
        (root / "calib" / split / "blast").mkdir(parents=True)
        (root / "calib_full" / split / "blast").mkdir(parents=True)
        (root / "calib_full" / split / "blast" / "0.png").write_bytes(b"")
    paths["calib"], paths["calib_full"] = root / "calib", root / "calib_full"
    splits = f"path: {paths['labset']}\ntrain: train.txt\nval: val.txt\n"  # a data.yaml Ultralytics takes
    files = {
        "garbage": ("garbage.pt", "not a model"),
        "coco": ("reviewed.json", "{not json"),
        "yaml": ("data.yaml", splits + "names:\n  0: white_cell\n"),
        "test_yaml": ("regression.yaml", splits + "test: val.txt\nnames:\n  0: white_cell\n"),
        "no_names_yaml": ("no_names.yaml", splits),
        "no_val_yaml": ("no_val.yaml", "path: .\ntrain: train.txt\n"),
        "no_images_yaml": ("no_images.yaml", splits.replace("val.txt", "images/val") + "names:\n  0: white_cell\n"),
        "broken_yaml": ("broken.yaml", "train: [\n"),
        "nan_lab": (
            "lab.json",
            '{"offset": NaN, "normal_called_blast": 0.02, "n_cells": 600, "slides": [], "classifier": {}}',
        ),
    }
    for key, (name, text) in files.items():
        paths[key] = root / name
        paths[key].write_text(text)
    paths["detector_pt"] = DETECTOR_WEIGHTS
    paths["subtype_pt"] = shutil.copyfile(SUBTYPE_WEIGHTS, root / "subtype.pt")
    shutil.copyfile(SUBTYPE_WEIGHTS.with_suffix(".json"), root / "subtype.json")
    return paths


@pytest.mark.parametrize("code, args", CASES, ids=[" ".join(a) for _, a in CASES])
def test_wrong_usage_is_one_error_line_and_the_documented_code(ws, code, args):
    result = runner.invoke(app, [a.format(**ws) for a in args])
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output and "╭" not in result.stderr  # no traceback, no boxed panel


@pytest.mark.parametrize(
    "args, says",
    [
        (["detect", "predict", "{bad}", "--conf", "nan"], "Invalid value for '--conf': nan is not a number"),
        (["classify", "train-cells", "--zoom", "NaN"], "Invalid value for '--zoom': NaN is not a number"),
        (["run", "{bad}", "--batch", "0"], "Invalid value for '--batch': 0: should be greater than or equal to 1"),
        (["detect", "predict", "{bad}", "--conf", "2"], "'--conf': 2: should be less than or equal to 1"),
        (["run", "{bad}", "--engine", "x"], "Invalid value for '--engine': 'x' is not one of 'local', 'ray'."),
    ],
)
def test_a_value_out_of_range_is_named_in_its_error(ws, args, says):
    """typer checks ranges with pydantic, whose message ("Input should be less than or equal to 1") neither names
    the value given nor fits nan, which no range holds."""
    result = runner.invoke(app, [a.format(**ws) for a in args])
    assert result.exit_code == USAGE and says in result.stderr, result.stderr
    assert "Input should" not in result.stderr and "Value error" not in result.stderr


def test_import_labels_lists_its_problems_without_markup(ws):
    result = runner.invoke(app, ["detect", "import-labels", str(ws["labset"]), str(ws["coco"])])
    assert result.exit_code == USAGE
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem:")]
    assert problems and "not valid JSON" in problems[0] and "[red]" not in result.stderr


def test_version_and_group_help_list_what_is_there():
    import leukoscan
    from leukoscan.pipeline import classify_app, data_app, detect_app

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"leukoscan {leukoscan.__version__}"
    for group in (detect_app, classify_app, data_app):
        names = [c.name or c.callback.__name__ for c in group.registered_commands]
        assert len(names) >= 5 and all(re.search(rf"\b{name}\b", group.info.help) for name in names), group.info.help


def test_the_label_set_is_one_argument_everywhere():
    for command in ("import-labels", "finetune", "promote"):
        result = runner.invoke(app, ["detect", command, "--help"])
        assert "LABSET" in result.stdout.upper() and "--labset" not in result.stdout


def write_slide(folder, seeds):
    folder.mkdir(parents=True)
    for seed in seeds:
        cv2.imwrite(str(folder / f"f{seed}.png"), smear((300, 300), n_wbc=5, seed=seed)[0][..., ::-1])
    return folder


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    """One small slide screened: (slide folder, output folder, the run's result)."""
    root = tmp_path_factory.mktemp("screened")
    slide = write_slide(root / "slide", (301, 302))
    shutil.copyfile(DEMO_SLIDE / "EarlyPreb.jpeg", slide / "EarlyPreb.jpeg")  # enough white cells for a fraction
    result = runner.invoke(app, ["run", str(slide), "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    return slide, root / "out", result


def test_the_summary_is_on_stdout_in_full(screened):
    _, out, result = screened
    summary = pd.read_csv(out / "summary.csv")
    assert result.stdout.splitlines()[1].split() == [
        "slide",
        "images",
        "failed",
        "white",
        "cells",
        "blasts",
        "(95%",
        "CI)",
        "subtype",
        "verdict",
        "review",
    ]
    row = result.stdout.splitlines()[2]
    assert row.startswith("slide ") and summary.verdict[0] in row
    assert re.search(r"\d+\.\d% \(\d+\.\d%–\d+\.\d%\)", row), row  # the interval whole, not cut at 80 columns
    assert f"report: {out / 'report.html'}" in result.stdout
    assert "report:" not in result.stderr and "verdict" not in result.stderr  # only progress on stderr
    assert not any(set("│┃━─") & set(line) for line in result.stdout.splitlines())  # plain text when piped


def test_a_resume_with_nothing_left_loads_no_model(screened, tmp_path, monkeypatch):
    import leukoscan.classify.predict
    import leukoscan.detect.predict

    slide, first, _ = screened
    out = tmp_path / "out"
    shutil.copytree(first, out)

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(leukoscan.detect.predict.Detector, "__init__", refuse)
    monkeypatch.setattr(leukoscan.classify.predict.Classifier, "__init__", refuse)
    result = runner.invoke(app, ["run", str(slide), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    for name in ("summary.csv", "slide/cells.csv", "slide/images.csv"):
        assert (out / name).read_bytes() == (first / name).read_bytes(), name
    moment = ("seconds", "screened_at")
    before, after = (json.loads((folder / "slide" / "verdict.json").read_text()) for folder in (first, out))
    assert {k: v for k, v in after.items() if k not in moment} == {k: v for k, v in before.items() if k not in moment}
    # screening again needs the models
    result = runner.invoke(app, ["run", str(slide), "--out", str(out), "--force"])
    assert result.exit_code != 0 and "a model was loaded" in repr(result.exception)


def test_images_over_the_limit_get_the_projects_line_and_no_warning(tmp_path):
    slide = tmp_path / "scans"
    slide.mkdir()
    Image.new("1", (12000, 9000)).save(slide / "huge.png")  # 108 megapixels in a 13 kB file
    cv2.imwrite(str(slide / "field.png"), smear((1500, 2000), rbc_px=40, wbc_px=68, n_wbc=3, seed=5)[0][..., ::-1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["run", str(slide), "--out", str(tmp_path / "out"), "--max-megapixels", "2"])
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert result.exit_code == 1, result.output  # neither field is screened
    images = pd.read_csv(tmp_path / "out" / "scans" / "images.csv").set_index("image")
    assert images.error["huge.png"] == (
        "image over 2 megapixels: 12000x9000 (108.0 megapixels); use --max-megapixels to raise it"
    )
    assert images.error["field.png"].startswith("image over 2 megapixels: 2000x1500 (3.0 megapixels)")
    assert "bomb" not in result.output.lower() and "Warning" not in result.output
    from leukoscan.images import MAX_MEGAPIXELS, _limit

    assert _limit["megapixels"] == MAX_MEGAPIXELS  # the option holds for its run only


def test_every_help_text_reaches_the_screen_as_written():
    """Typer renders help with rich markup: a bracket such as ``leukoscan[ray]`` would vanish unless escaped."""
    import typer.main
    from rich.text import Text

    def commands(command, path=()):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, (*path, name))

    lost = []
    for path, command in commands(typer.main.get_command(app)):
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        lost += [(path, t) for t in texts if "[" in t and Text.from_markup(t).plain != t.replace("\\[", "[")]
    assert not lost, lost
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "300"})
    assert "leukoscan[ray]" in result.stdout


def test_classify_predict_gives_runs_probabilities_on_runs_crops_and_keeps_an_earlier_file(tmp_path):
    """Crops cut as `leukoscan run` cuts them (48 px at the slide's scale) get `run`'s probabilities; an --out
    that is a folder is refused before the model runs; a run where no crop can be read leaves the file as it was."""
    import numpy as np

    from leukoscan.classify.predict import CellClassifier
    from leukoscan.detect.predict import Detector
    from leukoscan.images import load_rgb

    rgb = load_rgb(DEMO_SLIDE / "EarlyPreb.jpeg")
    detector, clf = Detector(device="cpu"), CellClassifier(device="cpu")
    cell_px = detector.estimate_cell_px([rgb])
    crops = clf.crops(rgb, detector(rgb, cell_size=cell_px)[:12], cell_px)
    (tmp_path / "crops").mkdir()
    for i, c in enumerate(crops):
        cv2.imwrite(str(tmp_path / "crops" / f"{i:02d}.png"), c[..., ::-1])
    result = runner.invoke(app, ["classify", "predict", str(tmp_path / "crops"), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(tmp_path / "p.csv").filter(like="p_").to_numpy()
    assert np.allclose(predicted, clf.probs(crops), atol=1e-4)
    result = runner.invoke(app, ["classify", "predict", str(tmp_path / "crops"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a picture")
    before = (tmp_path / "p.csv").read_bytes()
    result = runner.invoke(app, ["classify", "predict", str(tmp_path / "bad"), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 1 and (tmp_path / "p.csv").read_bytes() == before


def test_detect_predict_names_every_image_and_never_overwrites_an_overlay(tmp_path):
    """Two photographs called alike in two folders keep an overlay each; images.csv has a row per image (its
    cells, or why it was skipped); an --out that is a file is one line before the model loads."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copyfile(DEMO_SLIDE / "2.jpg", tmp_path / folder / "field.jpg")
    (tmp_path / "b" / "broken.png").write_bytes(b"not a picture")
    out = tmp_path / "out"
    args = ["detect", "predict", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    images = pd.read_csv(out / "images.csv").set_index("image")
    a, b, broken = (str(tmp_path / f) for f in ("a/field.jpg", "b/field.jpg", "b/broken.png"))
    assert images.status.to_dict() == {a: "ok", broken: "error", b: "ok"} and "not" in images.error[broken]
    assert (images.overlay[a], images.overlay[b]) == ("field_jpg.jpg", "field_jpg_2.jpg")
    assert images.n_cells[a] == images.n_cells[b] == (pd.read_csv(out / "boxes.csv").image == a).sum() > 0
    assert sorted(p.name for p in out.glob("*.jpg")) == ["field_jpg.jpg", "field_jpg_2.jpg"]
    (tmp_path / "file").write_text("")
    result = runner.invoke(app, ["detect", "predict", str(tmp_path / "a"), "--out", str(tmp_path / "file")])
    assert result.exit_code == 2 and "is a file" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "command", ["run", "detect predict", "detect finetune", "classify lab-cells", "classify finetune"]
)
def test_an_out_that_is_a_file_is_one_line_in_every_command_that_writes_a_folder(command, tmp_path):
    """``outputs.out_folder``: the same line wherever a command writes into --out, nothing read or trained first."""
    (tmp_path / "file").write_text("kept")
    folder = tmp_path / "folder"
    for name in ("images", "labels"):  # a label set (detect finetune), also a results folder (lab-cells)
        (folder / name).mkdir(parents=True)
    for name in ("train.txt", "val.txt", "corrections.csv"):
        (folder / name).write_text("")
    given = {
        "run": [str(DEMO_SLIDE / "2.jpg")],
        "detect predict": [str(DEMO_SLIDE / "2.jpg")],
        "detect finetune": [str(folder), "--replay-n", "0"],
        "classify lab-cells": [str(folder / "corrections.csv"), "--results", str(folder)],
        "classify finetune": [str(folder), "--cells", str(folder)],  # (data/cells need not be built)
    }[command]
    result = runner.invoke(app, [*command.split(), *given, "--out", str(tmp_path / "file")])
    assert result.exit_code == 2 and f"--out {tmp_path / 'file'} is a file, not a folder" in result.output, (
        result.output
    )
    assert (tmp_path / "file").read_text() == "kept" and "Traceback" not in result.output


def test_results_and_decisions_reach_the_console_as_written(capsys):
    """A command's JSON result is printed whole (no line wrapped, no brackets read as markup), and a gate's
    reason is shown as it is, whichever gate made it."""
    from leukoscan.cli import report_decision, show_json

    value = {"path": "/lab/[red]slides/:cross_mark:/" + "x" * 200, "counts": list(range(40))}
    show_json(value)
    show_json(value, indent=None)
    err = capsys.readouterr().err
    first, second = err.split("\n}\n")
    assert json.loads(first + "\n}") == value and json.loads(second) == value
    report_decision({"promoted": False, "reason": "lab mAP50 [bold]0.5 -> 0.4", "note": "all [i]corrections"})
    report_decision({"promoted": True, "reason": "ok"}, after_promotion="make the [lab] reference again")
    err = capsys.readouterr().err
    assert "rejected: lab mAP50 [bold]0.5 -> 0.4" in err and "note: all [i]corrections" in err
    assert "promoted: ok\nmake the [lab] reference again" in err


def test_a_ctrl_c_after_the_command_has_ended_keeps_its_exit_code(monkeypatch):
    """Once a command has ended, a Ctrl-C while the interpreter shuts down is ignored (it would make a finished
    run's exit code 130)."""
    import signal

    import leukoscan.__main__
    import leukoscan.pipeline

    def finished():
        raise SystemExit(0)

    monkeypatch.setattr(leukoscan.pipeline, "app", finished)
    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as ended:
            leukoscan.__main__.main()
        assert ended.value.code == 0 and signal.getsignal(signal.SIGINT) not in (before, signal.default_int_handler)
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_groups_list_of_commands_shows_each_first_paragraph_as_prose():
    """Typer keeps a docstring's line breaks in a group's list of commands: each is one line of prose there."""
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "300"})
    line = next(x for x in result.stdout.splitlines() if "lab-reference" in x and "Make this lab's" in x)
    assert "screen 3-5 normal slides of the lab first" in line


def test_every_out_option_has_its_short_name():
    """``-o`` is ``--out`` in every command that writes somewhere, and no command has it twice."""
    import typer.main

    def commands(command, path=()):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, (*path, name))

    for path, command in commands(typer.main.get_command(app)):
        names = [o for p in command.params for o in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))]
        assert len(names) == len(set(names)), path
        out = [p for p in command.params if "--out" in getattr(p, "opts", ())]
        assert all("-o" in p.opts for p in out), path


def test_help_piped_to_a_file_keeps_long_option_names_whole():
    """Piped (not a terminal), the help is drawn 120 columns wide: at rich's 80, run's option names were cut."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    shown = subprocess.run(
        [sys.executable, "-m", "leukoscan", "run", "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "--classifier-weights" in shown and "--detector-weights" in shown


def test_a_name_that_would_not_read_as_itself_on_a_line_is_quoted():
    """File and slide names on the terminal: as they are, unless a newline, a tab or edge spaces would make the
    line lie about them (a file named 'a\\nb.png' would read as two lines)."""
    assert shown_name("slide [2] ünï/f 0.png") == "slide [2] ünï/f 0.png"
    assert shown_name("we\nird.png") == "'we\\nird.png'" and shown_name(" a.png") == "' a.png'"
    names = ["a", "b\tc", "d", "e"]
    assert first_names(names) == "a, 'b\\tc', d and 1 more" and first_names(names, 5) == "a, 'b\\tc', d, e"
