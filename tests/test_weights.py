"""Both shipped weight files load offline from the repository and match their cards."""

import json

from leukoscan.cards import sha256
from leukoscan.config import CLASSIFIER_WEIGHTS, DETECTOR_WEIGHTS


def test_classifier_card():
    card = json.loads(CLASSIFIER_WEIGHTS.with_suffix(".json").read_text())
    assert card["sha256"] == sha256(CLASSIFIER_WEIGHTS)
    assert card["classes"] == ["Benign", "Early Pre-B", "Pre-B", "Pro-B"]
    assert card["temperature"] > 0 and "val_ece_before" in card and "stain_reference" in card
    from classify.predict import Classifier

    clf = Classifier(CLASSIFIER_WEIGHTS, device="cpu")
    assert clf.temperature == card["temperature"] and clf.imgsz == card["recipe"]["imgsz"]


def test_detector_loads():
    from ultralytics import YOLO

    model = YOLO(str(DETECTOR_WEIGHTS))
    assert model.task == "detect" and model.names == {0: "white_cell"}
    assert DETECTOR_WEIGHTS.stat().st_size < 10_000_000
