"""Dataset builders on a tiny synthetic copy of the public datasets' layout (no real data needed)."""

import json

import cv2
import numpy as np
import pytest
import yaml
from synth import smear

from leukoscan.cells import CLASSES
from leukoscan.datasets.build import build_classification, build_detection, read_yolo
from leukoscan.datasets.splits import build_manifest

PER_CLASS = 30


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    tq = root / "all-taleqani"
    for k, (cls, prefix) in enumerate(
        [
            ("Benign", "WBC-Benign"),
            ("Early", "WBC-Malignant-Early"),
            ("Pre", "WBC-Malignant-Pre"),
            ("Pro", "WBC-Malignant-Pro"),
        ]
    ):
        for sub in ("Original", "Segmented"):
            (tq / sub / cls).mkdir(parents=True)
        for i in range(PER_CLASS):
            img, boxes = smear(seed=1000 * k + i, n_wbc=2)
            name = f"{prefix}-{i + 1:03d}.jpg"
            cv2.imwrite(str(tq / "Original" / cls / name), img[..., ::-1])
            mask = np.zeros_like(img)
            if cls != "Pro":  # Pro masks are empty in the real set
                for x0, y0, x1, y1 in boxes:
                    cv2.circle(mask, (int((x0 + x1) / 2), int((y0 + y1) / 2)), int((x1 - x0) / 2), (255, 120, 200), -1)
            cv2.imwrite(str(tq / "Segmented" / cls / name), mask)
    txl = root / "txl-pbc"
    for split in ("train", "val", "test"):
        (txl / "images" / split).mkdir(parents=True)
        (txl / "labels" / split).mkdir(parents=True)
        for i in range(3):
            img, boxes = smear((575, 575), rbc_px=80, wbc_px=140, n_rbc=10, n_wbc=1, seed=50 + i)
            cv2.imwrite(str(txl / "images" / split / f"t{i}.jpg"), img[..., ::-1])
            x0, y0, x1, y1 = boxes[0] / 575
            lines = f"0 {(x0 + x1) / 2} {(y0 + y1) / 2} {x1 - x0} {y1 - y0}\n1 0.1 0.1 0.14 0.14\n2 0.5 0.9 0.05 0.05\n"
            (txl / "labels" / split / f"t{i}.txt").write_text(lines)
    return root


def test_detection_dataset(fake_root, tmp_path):
    out = tmp_path / "detect"
    manifest = build_manifest(fake_root / "all-taleqani", out / "manifest.csv")
    summary = build_detection(fake_root, out, manifest)
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "white_cell"} and data["train"] == "images/train"
    # every Taleqani image of the split has its two white cells, and only them
    for label in (out / "labels" / "train").glob("tq_*.txt"):
        rows = label.read_text().splitlines()
        assert len(rows) == 2 and all(r.startswith("0 ") for r in rows)
    # TXL: only the WBC class survives, packed into scale-normalised mosaics
    txl_labels = list((out / "labels" / "train").glob("txl_*.txt"))
    assert len(txl_labels) == 1
    assert summary["counts"]["txl-pbc/train"] == {"images": 1, "cells": 3, "source_images": 3}
    img = cv2.imread(str(out / "images" / "train" / "txl_train_0000.jpg"))
    boxes = read_yolo(txl_labels[0], img.shape[1], img.shape[0])
    sides = boxes.xyxy[:, 2] - boxes.xyxy[:, 0]
    assert np.allclose(sides, 27, atol=2)  # white cells shrunk to Taleqani scale
    agree = summary["colour_vs_mask"]
    assert agree["precision"] >= 0.95 and agree["recall"] >= 0.95
    assert json.loads((out / "summary.json").read_text()) == summary


def test_classification_dataset(fake_root, tmp_path):
    out = tmp_path / "cls"
    manifest = build_manifest(fake_root / "all-taleqani", out / "manifest.csv")
    summary = build_classification(fake_root, out, manifest)
    for split in ("train", "val", "test"):
        for key in CLASSES:
            crops = list((out / split / key).glob("*.png"))
            assert len(crops) == summary["counts"][split][key] > 0
            assert cv2.imread(str(crops[0])).shape == (64, 64, 3)


def test_a_rebuild_removes_the_earlier_builds_crops_and_nothing_else(tmp_path):
    """A rebuild whose split blocks moved must not leave an image's crops in two splits (`fresh`); files of
    other kinds in the folder stay."""
    from leukoscan.datasets.build import fresh

    (tmp_path / "val" / "benign").mkdir(parents=True)
    (tmp_path / "val" / "benign" / "WBC-Benign-007_00.png").write_bytes(b"old crop")
    (tmp_path / "val" / "benign" / "notes.txt").write_text("a user's")
    (tmp_path / "val" / "top.png").write_bytes(b"old")
    assert fresh(tmp_path / "val", "*.png") == tmp_path / "val"
    assert sorted(p.name for p in (tmp_path / "val").rglob("*") if p.is_file()) == ["notes.txt"]
    assert fresh(tmp_path / "test", "*.png").is_dir()
