"""`leukoscan export` + `--backend onnx|openvino|openvino-int8`: the exported models agree with the PyTorch ones."""

import shutil

import cv2
import numpy as np
import pytest
import supervision as sv
from synth import smear, write_yolo_dataset
from typer.testing import CliRunner

from leukoscan.config import CLASSIFIER_WEIGHTS, DETECTOR_WEIGHTS, SUBTYPE_WEIGHTS
from leukoscan.models import Models
from leukoscan.pipeline import app


def bf16_cpu() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load(folder, backend):
    return Models.load(folder / "detector.pt", folder / "classifier.pt", folder / "subtype.pt", "cpu", backend)


def weight_options(folder):
    return [
        "--detector-weights",
        str(folder / "detector.pt"),
        "--classifier-weights",
        str(folder / "classifier.pt"),
        "--subtype-weights",
        str(folder / "subtype.pt"),
    ]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    for src in (DETECTOR_WEIGHTS, CLASSIFIER_WEIGHTS, SUBTYPE_WEIGHTS):
        shutil.copyfile(src, folder / src.name)
        shutil.copyfile(src.with_suffix(".json"), folder / src.with_suffix(".json").name)
    result = CliRunner().invoke(app, ["export", *weight_options(folder), "--format", "onnx", "--format", "openvino"])
    assert result.exit_code == 0, result.output
    return folder


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_models_agree_with_pytorch(weights, backend):
    pt = load(weights, "pytorch")
    ox = load(weights, backend)
    # OpenVINO's CPU plugin runs in bfloat16 by default on processors with bf16 instructions (AVX512_BF16, AMX):
    # there its "full precision" model agrees to ~0.02 in probability and ~0.04 in box IoU, not 1e-3
    reduced = backend == "openvino" and bf16_cpu()
    atol = 0.05 if reduced else 1e-3
    assert ox.description["backend"] == backend and ox.classifier.temperature == pt.classifier.temperature
    assert ox.detector.weights != pt.detector.weights
    fields = [smear((224, 224), n_wbc=3, seed=s)[0] for s in range(40, 44)]
    for a, b, rgb in zip(pt.detector.detect(fields), ox.detector.detect(fields), fields):
        assert len(a) == len(b)
        if len(a):
            assert (sv.box_iou_batch(a.xyxy, b.xyxy).max(axis=1) >= (0.95 if reduced else 0.99)).all()
            crops = pt.classifier.crops(rgb, a, cell_px=27)
            pa, pb = pt.classifier.probs(crops), ox.classifier.probs(crops)
            top2 = np.sort(pa, axis=1)[:, -2:]
            clear = (top2[:, 1] - top2[:, 0]) > 2 * atol  # a near-tie may flip in bfloat16
            assert (pa.argmax(1) == pb.argmax(1))[clear].all() and np.allclose(pa, pb, atol=atol)
            crops = pt.subtype.crops(rgb, a)
            sa, sb = pt.subtype.subtypes(crops), ox.subtype.subtypes(crops)
            assert np.allclose(sa, sb, atol=atol)


def test_an_export_from_other_weights_is_refused(weights, tmp_path):
    """`leukoscan export` records which .pt each export came from: an export left over from other weights (the
    model updated, its exports not) is a clear error, never silently the old model's answers."""
    for f in weights.iterdir():
        if f.is_file():
            shutil.copyfile(f, tmp_path / f.name)
    load(tmp_path, "onnx")  # as exported
    shutil.copyfile(weights / "subtype.pt", tmp_path / "classifier.pt")  # another classification model
    shutil.copyfile(weights / "subtype.json", tmp_path / "classifier.json")  # with its card (else refused for that)
    with pytest.raises(ValueError, match="classifier.onnx was not exported from this classifier.pt"):
        load(tmp_path, "onnx")
    shutil.copyfile(weights / "classifier.pt", tmp_path / "classifier.pt")
    shutil.copyfile(weights / "classifier.json", tmp_path / "classifier.json")
    (tmp_path / "classifier.exports.json").unlink()  # exported before exports were recorded
    with pytest.raises(ValueError, match="leukoscan export --format onnx"):
        load(tmp_path, "onnx")


def test_missing_onnx_is_a_clear_error(tmp_path):
    shutil.copyfile(DETECTOR_WEIGHTS, tmp_path / "detector.pt")
    with pytest.raises(FileNotFoundError, match="leukoscan export"):
        Models.load(tmp_path / "detector.pt", CLASSIFIER_WEIGHTS, SUBTYPE_WEIGHTS, "cpu", "onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        Models.load(tmp_path / "detector.pt", CLASSIFIER_WEIGHTS, SUBTYPE_WEIGHTS, "cpu", "tensorrt")


def write_crop_dataset(root, classes, per_class=6):
    """A tiny classification folder (train/ and val/, one sub-folder per class) of synthetic cell crops."""
    from leukoscan.crops import crop_cells

    for split in ("train", "val"):
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                rgb, boxes = smear(n_wbc=1, seed=1000 * k + i + (500 if split == "val" else 0))
                cv2.imwrite(str(root / split / name / f"c{i}.jpg"), crop_cells(rgb, boxes, size=64)[0][..., ::-1])
    return root


def test_int8_export_is_calibrated_on_the_given_sets_and_finds_the_same_cells(weights, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "export",
            "--detector-weights",
            str(weights / "detector.pt"),
            "--format",
            "openvino-int8",
            "--detect-data",
            str(tmp_path / "missing.yaml"),
        ],
    )
    assert result.exit_code == 2 and "calibration data not found" in result.output
    from leukoscan.cells import CELL_TYPES, CLASSES

    data = write_yolo_dataset(tmp_path / "detect", n_train=2, n_val=6)
    crops = write_crop_dataset(tmp_path / "cells", CELL_TYPES, per_class=3)
    subtype_crops = write_crop_dataset(tmp_path / "classify", CLASSES)
    result = runner.invoke(
        app,
        [
            "export",
            *weight_options(weights),
            "--format",
            "openvino-int8",
            "--detect-data",
            str(data),
            "--classify-data",
            str(crops),
            "--subtype-data",
            str(subtype_crops),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "INFO:nncf" not in result.output
    pt = load(weights, "pytorch")
    q = load(weights, "openvino-int8")
    assert q.detector.weights.name == "detector_int8_openvino_model" and q.description["backend"] == "openvino-int8"
    fields = [smear((224, 224), n_wbc=3, seed=s)[0] for s in range(40, 46)]
    ious, same = [], []
    for a, b, rgb in zip(pt.detector.detect(fields, 27), q.detector.detect(fields, 27), fields):
        if len(a):
            ious += list(sv.box_iou_batch(a.xyxy, b.xyxy).max(axis=1) if len(b) else np.zeros(len(a)))
            crops = pt.classifier.crops(rgb, a, cell_px=27)
            same += list(pt.classifier.probs(crops).argmax(1) == q.classifier.probs(crops).argmax(1))
    # 8-bit weights and activations move boxes by a pixel or so, not off their cells
    assert len(ious) >= 12 and np.mean(np.array(ious) >= 0.8) >= 0.9
    assert np.mean(same) >= 0.8


def test_an_export_that_cannot_be_written_is_one_line_and_never_recorded(weights, tmp_path):
    """A folder where the export goes (as no write permission or a full disk would): one error line, exit 1, and
    the export is no longer recorded as made from the weights (a half-written one is refused, never run)."""
    import json

    for f in weights.iterdir():
        if f.is_file():
            shutil.copyfile(f, tmp_path / f.name)
    (tmp_path / "detector.onnx").unlink(missing_ok=True)
    (tmp_path / "detector.onnx").mkdir()
    (tmp_path / "detector.exports.json").write_text(json.dumps({"onnx": "made before"}))
    import subprocess
    import sys

    args = [sys.executable, "-m", "leukoscan.pipeline", "export", *weight_options(tmp_path), "--format", "onnx"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)  # (Ultralytics logs to the real stderr)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == f"error: Is a directory: {tmp_path / 'detector.onnx'}", result.stderr
    assert "onnx" not in json.loads((tmp_path / "detector.exports.json").read_text())
