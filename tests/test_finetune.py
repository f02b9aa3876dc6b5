"""A lab's reviewed cells: cut from the review page's corrections as `run` cut them, and fine-tuned on
(``classify lab-cells``, ``classify finetune``, ``classify/finetune.py``)."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import supervision as sv
import torch
from conftest import ROOT
from typer.testing import CliRunner

from leukoscan.cells import CELL_TYPES
from leukoscan.classify.augment import SOFT_TARGETS, soft_targets
from leukoscan.classify.finetune import (
    FinetuneRecipe,
    Replay,
    finetune_cells,
    finetune_folder,
    model_training_folder,
)
from leukoscan.classify.predict import CellClassifier
from leukoscan.config import CLASSIFIER_WEIGHTS
from leukoscan.images import load_rgb
from leukoscan.pipeline import DEMO_SLIDE, app
from leukoscan.report import CORRECTION_COLUMNS

runner = CliRunner()


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    """One bundled photograph screened as a slide: (output folder, its cells)."""
    root = tmp_path_factory.mktemp("lab")
    slide = root / "slide"
    slide.mkdir()
    shutil.copyfile(DEMO_SLIDE / "EarlyPreb.jpeg", slide / "EarlyPreb.jpeg")
    result = runner.invoke(app, ["run", str(slide), "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    return root / "out", pd.read_csv(root / "out" / "slide" / "cells.csv")


def corrections(cells: pd.DataFrame, reviewed: list[str], slide: str = "slide") -> pd.DataFrame:
    """The review page's corrections.csv for the first cells of ``cells``, one reviewed type each."""
    rows = cells.head(len(reviewed)).assign(slide=slide, predicted=lambda d: d.cell_type, reviewed=reviewed)
    return rows[list(CORRECTION_COLUMNS)]


def test_lab_cells_cuts_the_reviewed_cells_as_run_cut_them(screened, tmp_path):
    out, cells = screened
    table = pd.concat(
        [
            corrections(cells, ["blast", "neutrophil", "monocyte"]),
            corrections(cells, ["blast"], slide="gone"),  # a slide not in the results
            corrections(cells.iloc[3:], ["martian"]),  # not a cell type
        ]
    )
    table.to_csv(tmp_path / "corrections.csv", index=False)
    lab = tmp_path / "lab"
    result = runner.invoke(
        app, ["classify", "lab-cells", str(tmp_path / "corrections.csv"), "--results", str(out), "--out", str(lab)]
    )
    assert result.exit_code == 0, result.output
    assert "skipped gone/EarlyPreb.jpeg: no slide gone" in result.output
    assert "skipped 1 cell(s) of slide/EarlyPreb.jpeg: ['martian'] is not a cell type" in result.output
    written = pd.read_csv(lab / "cells.csv")
    assert written.type.tolist() == ["blast", "neutrophil", "monocyte"] and written.cell.tolist() == [0, 1, 2]
    assert written.predicted.tolist() == cells.cell_type.head(3).tolist()
    # each crop is the one the classifier sees in `run`: its window at the slide's scale
    clf = CellClassifier(CLASSIFIER_WEIGHTS, "cpu")
    verdict = json.loads((out / "slide" / "verdict.json").read_text())
    rgb = load_rgb(DEMO_SLIDE / "EarlyPreb.jpeg")
    cell_px = next(iter(verdict["scale"]["cell_px_by_field_size"].values()))
    expected = clf.crops(rgb, sv.Detections(xyxy=cells[["x1", "y1", "x2", "y2"]].head(3).to_numpy(float)), cell_px)
    got = np.stack([cv2.imread(str(lab / c))[..., ::-1] for c in written.crop])
    assert np.array_equal(got, expected)
    assert json.loads((lab / "geometry.json").read_text()) == {"window_cells": clf.window_cells, "crop_px": clf.crop_px}

    # reviewed again: the cell's new type replaces its row, the others stay
    corrections(cells, ["lymphocyte"]).to_csv(tmp_path / "again.csv", index=False)
    result = runner.invoke(
        app, ["classify", "lab-cells", str(tmp_path / "again.csv"), "--results", str(out), "--out", str(lab)]
    )
    assert result.exit_code == 0, result.output
    assert pd.read_csv(lab / "cells.csv").type.tolist() == ["lymphocyte", "neutrophil", "monocyte"]


def test_lab_cells_keeps_slide_names_as_written_and_reads_a_one_image_slide(screened, tmp_path):
    """A slide named "001" stays "001" (not the number 1), also when its cells are corrected again; a slide that
    was one image (verdict.json's source a file, not a folder) is read from that file."""
    out, cells = screened
    results = tmp_path / "results"
    verdict = json.loads((out / "slide" / "verdict.json").read_text())
    (results / "001").mkdir(parents=True)
    (results / "001" / "verdict.json").write_text(json.dumps(verdict | {"source": str(DEMO_SLIDE / "EarlyPreb.jpeg")}))
    corrections(cells, ["blast", "monocyte"], slide="001").to_csv(tmp_path / "c.csv", index=False)
    args = ["classify", "lab-cells", str(tmp_path / "c.csv"), "--results", str(results), "--out", str(tmp_path / "lab")]
    for _ in range(2):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    written = pd.read_csv(tmp_path / "lab" / "cells.csv", dtype={"slide": str})
    assert written.slide.tolist() == ["001", "001"] and written.type.tolist() == ["blast", "monocyte"]
    assert written.crop.tolist() == ["crops/001/EarlyPreb.jpeg_0.png", "crops/001/EarlyPreb.jpeg_1.png"]


def test_lab_cells_with_nothing_to_cut_is_one_line_and_keeps_what_was_there(screened, tmp_path):
    out, cells = screened
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "cells.csv").write_text("kept\n")
    corrections(cells, ["blast"], slide="gone").to_csv(tmp_path / "c.csv", index=False)
    result = runner.invoke(
        app, ["classify", "lab-cells", str(tmp_path / "c.csv"), "--results", str(out), "--out", str(lab)]
    )
    assert result.exit_code == 1 and "error: no reviewed cell could be cut" in result.output
    assert (lab / "cells.csv").read_text() == "kept\n"
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    result = runner.invoke(app, ["classify", "lab-cells", str(tmp_path / "bad.csv"), "--results", str(out)])
    assert result.exit_code == 2 and "not the review page's corrections.csv" in result.output
    (tmp_path / "empty.csv").write_text("")
    result = runner.invoke(app, ["classify", "lab-cells", str(tmp_path / "empty.csv"), "--results", str(out)])
    assert result.exit_code == 2 and f"{tmp_path / 'empty.csv'}:" in result.output
    (tmp_path / "header.csv").write_text(",".join(CORRECTION_COLUMNS) + "\n")
    result = runner.invoke(app, ["classify", "lab-cells", str(tmp_path / "header.csv"), "--results", str(out)])
    assert result.exit_code == 1 and "no corrections in" in result.output


def training_folder(root, classes=CELL_TYPES, n=6):
    """A model's training folder (``train/<type>/``, ``val/<type>/``) of ``n`` random 48 px crops per type."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for kind in classes:
            (root / split / kind).mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(root / split / kind / f"{kind}_{i}.png"), rng.integers(0, 255, (48, 48, 3), np.uint8))
    return root


def test_finetune_folder_replays_every_type_and_repeats_the_lab_to_its_share(tmp_path):
    training = training_folder(tmp_path / "training")
    lab = pd.DataFrame({"crop": [str(training / "val" / "blast" / "blast_0.png")] * 2, "type": ["blast", "monocyte"]})
    counts = finetune_folder(lab, training, tmp_path / "ft", replay_n=18, lab_share=0.5)
    # 18 replayed (each type in its share, at least one: 2 each), the 2 lab cells repeated to half: 9 times each
    assert counts["lab"] == {"blast": 1, "monocyte": 1} and counts["replay"] == {t: 2 for t in CELL_TYPES}
    assert counts["train"] == {t: 2 + 9 * (t in ("blast", "monocyte")) for t in CELL_TYPES}
    assert len(list((tmp_path / "ft" / "train" / "blast").glob("lab*"))) == 9
    assert counts["val"] == {t: 6 for t in CELL_TYPES} and (tmp_path / "ft" / "val" / "other").is_dir()
    with pytest.raises(ValueError, match=r"not trained on \['martian'\]"):
        finetune_folder(lab.assign(type="martian"), training, tmp_path / "ft")
    with pytest.raises(ValueError, match=r"no \['crop'\] column"):
        finetune_folder(lab.drop(columns="crop"), training, tmp_path / "ft")


def test_finetune_starts_from_the_model_and_keeps_its_scores(tmp_path, monkeypatch):
    """One epoch at a zero learning rate leaves the model's weights as they were (fine-tuning starts from them,
    not from scratch), and the candidate's card keeps the model's scores with a temperature fitted again. A
    relative runs folder is the working folder's (as `classify finetune --out runs/...` from a lab's own folder),
    not Ultralytics' runs directory."""
    training = training_folder(tmp_path / "training", n=4)
    lab = pd.DataFrame({"crop": [str(training / "val" / "blast" / "blast_0.png")], "type": ["blast"]})
    finetune_folder(lab, training, tmp_path / "ft", replay_n=9)
    recipe = FinetuneRecipe(epochs=1, batch=8, workers=0, lr0=0.0)
    monkeypatch.chdir(tmp_path)
    best, card = finetune_cells(CLASSIFIER_WEIGHTS, tmp_path / "ft", Path("runs"), "ft", recipe, "cpu")
    assert Path(best).resolve().is_relative_to(tmp_path / "runs" / "ft")
    start = torch.load(CLASSIFIER_WEIGHTS, map_location="cpu", weights_only=False)["model"].float().state_dict()
    after = torch.load(best, map_location="cpu", weights_only=False)["model"].float().state_dict()
    conv = [k for k in start if k.endswith("conv.weight")]
    assert conv and all(torch.allclose(start[k], after[k]) for k in conv)
    shipped = json.loads(CLASSIFIER_WEIGHTS.with_suffix(".json").read_text())
    assert card["prior_correction"] == shipped["prior_correction"] and card["geometry"] == shipped["geometry"]
    assert card["finetune"]["from_sha256"] == shipped["sha256"] and card["temperature"] > 0
    assert card["finetune"]["temperature_before"] == shipped["temperature"] and "metrics" not in card


def test_a_model_without_training_counts_has_no_training_folder(tmp_path):
    weights = tmp_path / "m.pt"
    shutil.copyfile(ROOT / "weights" / "subtype.pt", weights)
    with pytest.raises(ValueError, match="says nothing of its training crops"):
        model_training_folder(weights, tmp_path)


def test_finetune_refuses_cells_cut_otherwise_and_keeps_a_candidate(tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()
    pd.DataFrame({"crop": ["crops/a.png"], "type": ["blast"]}).to_csv(lab / "cells.csv", index=False)
    args = ["classify", "finetune", str(lab), "--cells", str(tmp_path), "--out", str(tmp_path / "ft")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "geometry.json" in result.output  # not cut by lab-cells
    (lab / "geometry.json").write_text(json.dumps({"window_cells": 1.4, "crop_px": 48}))
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "cut them again" in result.output
    (tmp_path / "ft").mkdir()
    (tmp_path / "ft" / "candidate.pt").write_bytes(b"kept")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (tmp_path / "ft" / "candidate.pt").read_bytes() == b"kept"


def test_replay_draws_each_type_in_its_share_and_a_small_pool_again(tmp_path):
    pools = {"blast": [tmp_path / f"b{i}.png" for i in range(2)], "lymphocyte": [tmp_path / "l.png"], "other": []}
    drawn = Replay(pools, tmp_path, calibrate=True, source="test").draw(30, np.random.default_rng(0))
    kinds = [kind for kind, _ in drawn]
    assert kinds.count("blast") == 20 and kinds.count("lymphocyte") == 10 and "other" not in kinds
    assert {crop for _, crop in drawn} == {*pools["blast"], *pools["lymphocyte"]}


def test_soft_targets_train_the_replayed_crops_towards_their_probabilities(tmp_path, monkeypatch):
    """A replay with target probabilities (``Replay.soft``) writes them beside the fine-tuning set, in the model's
    class order, for the replayed crops only; the trainer reads them (cross-entropy towards probabilities) and a
    replay whose validation labels are the model's own calls keeps the model's temperature."""
    training = training_folder(tmp_path / "training", n=2)
    crops = {kind: [training / "train" / kind / f"{kind}_0.png"] for kind in CELL_TYPES}
    probs = {crop[0]: np.eye(len(CELL_TYPES), dtype=np.float32)[::-1][i] for i, crop in enumerate(crops.values())}
    val = {kind: [training / "val" / kind / f"{kind}_0.png"] for kind in CELL_TYPES[:2]}
    replay = Replay(crops, val, calibrate=False, source="test", soft=probs)
    lab = pd.DataFrame({"crop": [str(training / "val" / "blast" / "blast_1.png")], "type": ["blast"]})
    counts = finetune_folder(lab, replay, tmp_path / "ft", replay_n=9)
    assert counts["val"] == {kind: int(kind in CELL_TYPES[:2]) for kind in CELL_TYPES}
    table = pd.read_csv(tmp_path / "ft" / SOFT_TARGETS)
    assert list(table.columns) == ["file", *sorted(CELL_TYPES)] and len(table) == 9
    assert all((tmp_path / "ft" / "train" / f).is_file() and f.split("/")[1].startswith("replay") for f in table.file)
    names = dict(enumerate(sorted(CELL_TYPES)))
    targets = soft_targets(tmp_path / "ft" / "train", names)
    first = tmp_path / "ft" / "train" / table.file[0]
    assert np.array_equal(targets[str(first)], probs[crops[table.file[0].split("/")[0]][0]])
    recipe = FinetuneRecipe(epochs=1, batch=8, workers=0, lr0=0.0)
    monkeypatch.chdir(tmp_path)
    _, card = finetune_cells(CLASSIFIER_WEIGHTS, tmp_path / "ft", Path("runs"), "ft", recipe, "cpu", calibrate=False)
    shipped = json.loads(CLASSIFIER_WEIGHTS.with_suffix(".json").read_text())
    assert card["temperature"] == shipped["temperature"] == card["finetune"]["temperature_before"]


def test_finetune_and_promote_without_the_cell_dataset_say_what_it_needs(tmp_path, monkeypatch):
    """A lab with no cell dataset (built from the public datasets, ../shared) is told in one line what fine-tuning
    and the gate need it for, how to build it, and what to do without it; nothing is written."""
    lab = tmp_path / "lab"
    lab.mkdir()
    pd.DataFrame({"crop": ["crops/a.png"], "type": ["blast"]}).to_csv(lab / "cells.csv", index=False)
    geometry = CellClassifier(CLASSIFIER_WEIGHTS, "cpu")
    (lab / "geometry.json").write_text(json.dumps({"window_cells": geometry.window_cells, "crop_px": geometry.crop_px}))
    current = tmp_path / "classifier.pt"  # (a copy: the gate would write the registry beside the model in use)
    for suffix in (".pt", ".json"):
        shutil.copyfile(CLASSIFIER_WEIGHTS.with_suffix(suffix), current.with_suffix(suffix))
    for args in (
        ["classify", "finetune", str(lab), "--out", str(tmp_path / "ft")],
        ["classify", "promote", str(lab), str(current), "--current", str(current)],
    ):
        result = runner.invoke(app, [*args, "--cells", str(tmp_path / "none")])
        assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
        assert f"no cell dataset at {tmp_path / 'none'}" in result.output and "lab-reference" in result.output
        assert "leukoscan data cells --out" in " ".join(result.output.split())
    assert not (tmp_path / "ft").exists() and not (tmp_path / "none").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.json", "classifier.pt", "lab"]
