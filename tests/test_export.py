"""`leukoscan export` + `--backend onnx|openvino`: the exported models agree with the PyTorch ones."""

import shutil

import numpy as np
import pytest
import supervision as sv
from synth import smear
from typer.testing import CliRunner

from leukoscan.config import CLASSIFIER_WEIGHTS, DETECTOR_WEIGHTS
from pipeline import Models, app


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    for src in (DETECTOR_WEIGHTS, CLASSIFIER_WEIGHTS):
        shutil.copyfile(src, folder / src.name)
        shutil.copyfile(src.with_suffix(".json"), folder / src.with_suffix(".json").name)
    result = CliRunner().invoke(app, ["export", "--detector-weights", str(folder / "detector.pt"),
                                      "--classifier-weights", str(folder / "classifier.pt"),
                                      "--format", "onnx", "--format", "openvino"])
    assert result.exit_code == 0, result.output
    return folder


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_models_agree_with_pytorch(weights, backend):
    pt = Models.load(weights / "detector.pt", weights / "classifier.pt", "cpu", "pytorch")
    ox = Models.load(weights / "detector.pt", weights / "classifier.pt", "cpu", backend)
    assert ox.describe()["backend"] == backend and ox.classifier.temperature == pt.classifier.temperature
    assert ox.detector.weights != pt.detector.weights
    fields = [smear((224, 224), n_wbc=3, seed=s)[0] for s in range(40, 44)]
    for a, b, rgb in zip(pt.detector.detect(fields), ox.detector.detect(fields), fields):
        assert len(a) == len(b)
        if len(a):
            assert (sv.box_iou_batch(a.xyxy, b.xyxy).max(axis=1) >= 0.99).all()
            crops = pt.classifier.crops(rgb, a)
            pa, pb = pt.classifier.probs(crops), ox.classifier.probs(crops)
            assert (pa.argmax(1) == pb.argmax(1)).all() and np.allclose(pa, pb, atol=1e-3)


def test_missing_onnx_is_a_clear_error(tmp_path):
    shutil.copyfile(DETECTOR_WEIGHTS, tmp_path / "detector.pt")
    with pytest.raises(FileNotFoundError, match="leukoscan export"):
        Models.load(tmp_path / "detector.pt", CLASSIFIER_WEIGHTS, "cpu", "onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        Models.load(tmp_path / "detector.pt", CLASSIFIER_WEIGHTS, "cpu", "tensorrt")
