"""The promotion gate of a fine-tuned cell-type model (``classify promote``, ``classify rollback``,
``classify/gate.py``) and the classifier's registry."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from test_finetune import corrections, screened  # noqa: F401 (a fixture)
from typer.testing import CliRunner

from leukoscan.cards import sha256
from leukoscan.cells import CELL_TYPES
from leukoscan.classify.gate import HOLD_OUT_EVERY, cell_figures, gate, held_out
from leukoscan.classify.predict import CellClassifier
from leukoscan.config import CLASSIFIER_WEIGHTS
from leukoscan.datasets.cells import CELL_COLUMNS, read_crops
from leukoscan.registry import WeightsRegistry

runner = CliRunner()
SLIDES = [f"s{i}" for i in range(8)]  # 8 slides of one field each: some held out, some not


def test_held_out_is_one_field_in_four_by_name_whatever_else_is_added():
    fields = pd.DataFrame({"slide": [f"slide {i}" for i in range(400)], "image": "f.jpg"})
    held = held_out(fields)
    assert 0.18 < held.mean() < 0.32  # about one in HOLD_OUT_EVERY
    more = pd.concat([fields, pd.DataFrame({"slide": ["new"] * 5, "image": [f"{i}.jpg" for i in range(5)]})])
    assert (held_out(more)[: len(fields)] == held).all()  # a field never changes side
    twice = pd.concat([fields.head(3), fields.head(3)])  # every cell of a field on its side
    assert (held_out(twice)[:3] == held_out(twice)[3:]).all()
    with pytest.raises(ValueError, match="no \\['image', 'slide'\\] column"):
        held_out(pd.DataFrame({"crop": ["a.png"]}))


def onehot(types):
    """Probabilities that call each cell its type in ``types``, with certainty."""
    probs = np.zeros((len(types), len(CELL_TYPES)))
    probs[np.arange(len(types)), [CELL_TYPES.index(t) for t in types]] = 1.0
    return probs


def test_cell_figures_count_blasts_and_normal_cells_apart():
    truth = np.array(["blast", "blast", "lymphocyte", "neutrophil", "other"])
    probs = onehot(["blast", "lymphocyte", "blast", "neutrophil", "blast"])
    probs[1, 0] = 0.4  # the missed blast ranked above the neutrophil, below the lymphocyte called blast
    f = cell_figures(truth, probs)
    assert f == {
        "n": 5,
        "accuracy": 0.4,
        "n_blasts": 2,
        "blast_recall": 0.5,
        "n_normal": 2,  # `other` is no normal white cell
        "normal_called_blast": 0.5,
        "blast_auc": 0.625,  # blasts above normal cells in 2 of 4 pairs, a tie in one (counted half)
    }
    assert cell_figures(truth[2:4], probs[2:4])["blast_recall"] is None
    assert cell_figures(truth[2:4], probs[2:4])["blast_auc"] is None
    assert cell_figures(truth[:0], probs[:0])["accuracy"] is None


def scores(lab: dict, regression: dict) -> dict:
    base = {"accuracy": 0.5, "blast_recall": 0.5, "normal_called_blast": 0.1, "blast_auc": 0.9}
    return {"lab": {**base, **lab}, "regression": {**base, **regression}}


def test_the_gate_wants_the_lab_better_and_blasts_still_told_apart():
    now = scores({}, {})
    better = {"accuracy": 0.6}
    ok, reason = gate({"current": now, "candidate": scores(better, {"accuracy": 0.3, "blast_recall": 0.1})}, 0.02)
    assert ok and "lab accuracy +0.1000 (rise)" in reason  # other labs' typing and the argmax's recall: reported
    assert "regression blast recall" not in reason and "regression accuracy" not in reason
    for lab, regression, failed in (
        ({}, {}, "lab accuracy +0.0000 (rise: failed)"),  # no better on the lab
        ({**better, "blast_recall": 0.45}, {}, "lab blast recall -0.0500 (drop <= 0.02: failed)"),
        ({**better, "normal_called_blast": 0.15}, {}, "lab normal called blast +0.0500 (rise <= 0.02: failed)"),
        ({**better, "blast_auc": 0.85}, {}, "lab blast auc -0.0500 (drop <= 0.02: failed)"),
        (better, {"blast_auc": 0.85}, "regression blast auc -0.0500 (drop <= 0.02: failed)"),
        (better, {"normal_called_blast": 0.15}, "regression normal called blast +0.0500 (rise <= 0.02: failed)"),
    ):
        ok, reason = gate({"current": now, "candidate": scores(lab, regression)}, 0.02)
        assert not ok and failed in reason, reason
    ok, reason = gate({"current": now, "candidate": scores({**better, "normal_called_blast": 0.11}, {})}, 0.02)
    assert ok, reason  # one more normal cell of a hundred called blast: within the tolerance
    # a lab without blasts (a lab of normal slides): the regression set's blast recall must hold as well
    none = scores({"blast_recall": None, "blast_auc": None}, {})
    for recall, passes in ((0.49, True), (0.45, False)):
        candidate = scores({**better, "blast_recall": None, "blast_auc": None}, {"blast_recall": recall})
        ok, reason = gate({"current": none, "candidate": candidate}, 0.02)
        assert ok is passes and "regression blast recall" in reason and "if the lab has no blasts" in reason
        assert "lab blast recall" not in reason
    # no blasts anywhere (a lab of normal slides, a regression set without blasts): nothing says whether it misses
    # blasts, so it is not promoted
    blind = scores({"blast_recall": None, "blast_auc": None}, {"blast_recall": None, "blast_auc": None})
    ok, reason = gate({"current": blind, "candidate": blind | {"lab": blind["lab"] | better}}, 0.02)
    assert not ok and "no blasts, neither among the lab's held-out cells nor in the regression set" in reason


@pytest.fixture(scope="module")
def reviewed_lab(screened, tmp_path_factory):  # noqa: F811
    """A lab's reviewed cells cut by `lab-cells` from 8 slides (one field each: the same bundled photograph), each
    cell's call confirmed or corrected; (root, lab folder)."""
    out, cells = screened
    root = tmp_path_factory.mktemp("gate")
    results = root / "results"
    verdict = json.loads((out / "slide" / "verdict.json").read_text())
    table = []
    for slide in SLIDES:
        (results / slide).mkdir(parents=True)
        (results / slide / "verdict.json").write_text(json.dumps(verdict))
        first = cells.head(6)
        table.append(corrections(first, [*first.cell_type[:4], "neutrophil", "blast"], slide=slide))
    pd.concat(table).to_csv(root / "corrections.csv", index=False)
    args = [
        "classify",
        "lab-cells",
        str(root / "corrections.csv"),
        "--results",
        str(results),
        "--out",
        str(root / "lab"),
    ]
    result = runner.invoke(app(), args)
    assert result.exit_code == 0, result.output
    held = int(held_out(pd.read_csv(root / "lab" / "cells.csv", dtype={"slide": str})).sum())
    assert 0 < held < 48 and f"{held} (one field in {HOLD_OUT_EVERY}) are held out" in result.output
    return root, root / "lab"


def app():
    from leukoscan.pipeline import app

    return app


def regression_folder(folder, crops_from, types):
    """A built cell dataset (`data cells`) of the crops of ``crops_from`` (a lab folder) as test cells."""
    lab = pd.read_csv(crops_from / "cells.csv")
    (folder / "crops").mkdir(parents=True)
    rows = []
    for i, (crop, kind) in enumerate(zip(lab.crop, types)):
        shutil.copyfile(crops_from / crop, folder / "crops" / f"{i}.png")
        rows.append({c: "" for c in CELL_COLUMNS} | {"crop": f"crops/{i}.png", "source": "pbc", "lab": "pbc"})
        rows[-1] |= {"type": kind, "weak": False, "split": "test"}
    pd.DataFrame(rows, columns=list(CELL_COLUMNS)).to_csv(folder / "cells.csv", index=False)
    geometry = json.loads((crops_from / "geometry.json").read_text())
    (folder / "summary.json").write_text(json.dumps({"geometry": geometry}))
    return folder


def install_model(source, target):
    shutil.copyfile(source, target)
    shutil.copyfile(source.with_suffix(".json"), target.with_suffix(".json"))
    return target


def test_promote_keeps_the_model_unless_the_candidate_wins_and_rollback_restores_it(reviewed_lab, tmp_path):
    root, lab = reviewed_lab
    weights = tmp_path / "weights"
    weights.mkdir()
    current = install_model(CLASSIFIER_WEIGHTS, weights / "classifier.pt")
    candidate = install_model(ROOT / "weights" / "lolo" / "no-munich.pt", tmp_path / "candidate.pt")
    table = pd.read_csv(lab / "cells.csv", dtype={"slide": str, "image": str})
    table.attrs["root"] = lab
    by_current, by_candidate = (
        np.asarray(CELL_TYPES)[CellClassifier(w, "cpu", strict=False).probs(read_crops(table)).argmax(1)]
        for w in (current, candidate)
    )
    assert (by_current != by_candidate).any()
    regression = regression_folder(tmp_path / "cells", lab, by_candidate)
    base = ["classify", "promote", str(lab), "--current", str(current), "--cells", str(regression)]
    original = sha256(current)

    # the lab's cells as the model in use calls them: the candidate cannot type more of them right
    table.assign(type=by_current).to_csv(lab / "cells.csv", index=False)
    result = runner.invoke(app(), [*base, str(candidate)])
    assert result.exit_code == 0, result.output
    assert "rejected" in result.output and "lab accuracy" in result.output and sha256(current) == original
    entries = WeightsRegistry(current, "classifier").entries()
    assert [e["status"] for e in entries] == ["initial", "rejected"] and entries[1]["parent"] == original
    assert entries[0]["metrics"]["lab"]["accuracy"] == 1.0 and entries[0]["metrics"]["regression"]["n"] == len(table)

    # the lab's cells as the candidate calls them (and the regression set too): promoted, the card says how
    table.assign(type=by_candidate).to_csv(lab / "cells.csv", index=False)
    result = runner.invoke(app(), [*base, str(candidate)])
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output and "lab-reference" in result.output
    assert sha256(current) == sha256(candidate)
    card = json.loads(current.with_suffix(".json").read_text())
    assert card["file"] == "classifier.pt" and card["promotion"]["scores"]["candidate"]["lab"]["accuracy"] == 1.0
    assert (weights / "archive" / f"classifier-{original[:12]}.pt").is_file()
    assert not (weights / "registry.json").exists()  # the detector's registry is its own

    result = runner.invoke(app(), ["classify", "rollback", original[:8], "--current", str(current)])
    assert result.exit_code == 0, result.output
    assert sha256(current) == original and json.loads(current.with_suffix(".json").read_text())["sha256"] == original
    entries = WeightsRegistry(current, "classifier").entries()
    assert [e["status"] for e in entries] == ["initial", "rejected", "promoted", "rolled back"]
    assert entries[-1]["parent"] == sha256(candidate) and entries[-1]["sha256"] == original  # what it replaced
    assert not list(weights.glob("*.tmp"))  # the log staged before each install is in its place
    result = runner.invoke(app(), ["classify", "rollback", "zzzzzz", "--current", str(current)])
    assert result.exit_code == 2 and "archived classifier" in result.output


def test_promote_refuses_cells_cut_otherwise_a_lab_with_nothing_held_out_and_a_broken_registry(reviewed_lab, tmp_path):
    root, lab = reviewed_lab
    current = install_model(CLASSIFIER_WEIGHTS, tmp_path / "classifier.pt")
    regression = regression_folder(tmp_path / "cells", lab, pd.read_csv(lab / "cells.csv").type)
    base = ["classify", "promote", "--current", str(current), "--cells", str(regression)]
    other = tmp_path / "other"
    shutil.copytree(lab, other)
    (other / "geometry.json").write_text(json.dumps({"window_cells": 1.4, "crop_px": 48}))
    result = runner.invoke(app(), [*base, str(other), str(current)])
    assert result.exit_code == 2 and "cut them again" in result.output
    shutil.copyfile(lab / "geometry.json", other / "geometry.json")
    table = pd.read_csv(lab / "cells.csv", dtype={"slide": str})
    table[~held_out(table)].to_csv(other / "cells.csv", index=False)
    result = runner.invoke(app(), [*base, str(other), str(current)])
    assert result.exit_code == 2 and "is held out for the gate" in result.output
    (tmp_path / "classifier-registry.json").write_text("{not json")
    result = runner.invoke(app(), [*base, str(lab), str(current)])
    assert result.exit_code == 2 and "not a readable registry" in result.output
    result = runner.invoke(app(), [*base, str(lab), str(ROOT / "weights" / "subtype.pt")])
    assert result.exit_code == 2 and "not a cell-type model" in result.output
    (tmp_path / "classifier-registry.json").unlink()
    for given, broken, said in (
        (other, other / "cells.csv", "has no ['predicted'] columns"),  # not cut by lab-cells
        (other, other / "geometry.json", "geometry.json not found: not a folder of `leukoscan classify lab-cells`"),
        (lab, regression / "summary.json", "summary.json not found: not a cell dataset"),
    ):
        if broken.name == "cells.csv":
            table.drop(columns="predicted").to_csv(broken, index=False)
        else:
            broken.unlink()
        result = runner.invoke(app(), [*base, str(given), str(current)])
        assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output, result.output


def test_rollback_with_a_registry_that_cannot_be_read_restores_nothing(tmp_path):
    current = install_model(CLASSIFIER_WEIGHTS, tmp_path / "classifier.pt")
    registry = WeightsRegistry(current, "classifier")
    registry.archive(current, current.with_suffix(".json"))
    current.write_bytes(b"a later model")
    registry.path.write_text("{not json")
    result = runner.invoke(app(), ["classify", "rollback", sha256(CLASSIFIER_WEIGHTS)[:8], "--current", str(current)])
    assert result.exit_code == 2 and "not a readable registry" in result.output
    assert current.read_bytes() == b"a later model"


def test_finetune_never_trains_on_the_cells_held_out_for_the_gate(reviewed_lab, monkeypatch, tmp_path):
    import leukoscan.classify.finetune as finetune

    root, lab = reviewed_lab
    taught = []

    def record(table, *args, **kwargs):  # what finetune would train on; then stop
        taught.append(table)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(finetune, "model_training_folder", lambda weights, cells: tmp_path)
    (tmp_path / "cells.csv").write_text("")  # a cell dataset, as far as finetune looks before it rebuilds the folder
    monkeypatch.setattr(finetune, "finetune_folder", record)
    result = runner.invoke(
        app(), ["classify", "finetune", str(lab), "--cells", str(tmp_path), "--out", str(tmp_path / "ft")]
    )
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    table = pd.read_csv(lab / "cells.csv", dtype={"slide": str, "image": str})
    assert len(taught[0]) == (~held_out(table)).sum() > 0 and not held_out(taught[0]).any()
