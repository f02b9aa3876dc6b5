"""The shipped weight files load offline from the repository and match their cards."""

import json

import pytest

from leukoscan.cards import sha256
from leukoscan.cells import CELL_TYPES
from leukoscan.config import CLASSIFIER_WEIGHTS, DETECTOR_WEIGHTS, SUBTYPE_WEIGHTS, WEIGHTS_DIR


def test_cell_type_classifier_card():
    card = json.loads(CLASSIFIER_WEIGHTS.with_suffix(".json").read_text())
    assert card["sha256"] == sha256(CLASSIFIER_WEIGHTS)
    assert card["classes"] == list(CELL_TYPES)
    assert card["temperature"] > 0 and "val_ece_before" in card and "stain_reference" in card
    assert card["geometry"]["window_cells"] > 0 and card["data"]["cells_csv_sha256"]
    from leukoscan.classify.predict import CellClassifier

    clf = CellClassifier(CLASSIFIER_WEIGHTS, device="cpu")
    assert clf.temperature == card["temperature"] and clf.imgsz == card["input_px"]
    assert clf.crop_px == card["geometry"]["crop_px"]
    assert clf.window_cells == card["geometry"]["window_cells"]


def test_subtype_classifier_card():
    card = json.loads(SUBTYPE_WEIGHTS.with_suffix(".json").read_text())
    assert card["sha256"] == sha256(SUBTYPE_WEIGHTS)
    assert card["classes"] == ["Benign", "Early Pre-B", "Pre-B", "Pro-B"]
    from leukoscan.classify.predict import SubtypeClassifier

    clf = SubtypeClassifier(SUBTYPE_WEIGHTS, device="cpu")
    assert clf.temperature == card["temperature"] and clf.imgsz == card["recipe"]["imgsz"]


@pytest.mark.parametrize("run, seed", [("lolo", 0), ("lolo-seed2", 2)])
@pytest.mark.parametrize("source", ["taleqani", "munich", "pbc", "zheng"])
def test_leave_one_lab_out_models_never_saw_their_source(source, run, seed):
    weights = WEIGHTS_DIR / run / f"no-{source}.pt"
    if not weights.exists():
        pytest.skip(f"{weights} not shipped (python bench/train_crosslab.py --only {source} --seed {seed})")
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["sha256"] == sha256(weights) and card["recipe"]["seed"] == seed
    assert card["data"]["excluded"] == [source] and source not in card["data"]["sources"]


def test_detector_loads():
    from ultralytics import YOLO

    model = YOLO(str(DETECTOR_WEIGHTS))
    assert model.task == "detect" and model.names == {0: "white_cell"}
    assert DETECTOR_WEIGHTS.stat().st_size < 10_000_000
