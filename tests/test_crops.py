import numpy as np
import pytest

from leukoscan.crops import crop_cells, square_boxes


def test_square_boxes_are_square_and_centred():
    sq = square_boxes(np.array([[10, 20, 30, 60]]), margin=0.25)
    w, h = sq[0, 2] - sq[0, 0], sq[0, 3] - sq[0, 1]
    assert w == h == 40 * 1.5
    assert np.allclose((sq[0, :2] + sq[0, 2:]) / 2, [20, 40])


def test_crop_at_borders_is_padded_with_field_colour():
    img = np.full((100, 100, 3), 200, np.uint8)
    img[0:20, 0:20] = (120, 60, 170)  # a cell in the corner
    crops = crop_cells(img, np.array([[0, 0, 20, 20], [90, 90, 100, 100]]), size=32, margin=0.25)
    assert crops.shape == (2, 32, 32, 3) and crops.dtype == np.uint8
    # the part outside the image is filled with the median (background) colour, the cell stays centred
    assert (crops[0, 0, 0] == 200).all()
    assert (crops[0, 16, 16] == (120, 60, 170)).all()


def test_tiny_and_empty_boxes():
    img = np.zeros((50, 50, 3), np.uint8)
    assert crop_cells(img, np.array([[10, 10, 10, 10]]), size=16).shape == (1, 16, 16, 3)
    assert crop_cells(img, np.zeros((0, 4)), size=16).shape == (0, 16, 16, 3)
    assert crop_cells(img, np.array([[-30, -30, -20, -20]]), size=16).shape == (1, 16, 16, 3)


def test_a_box_at_the_edge_pads_its_crop_not_the_field():
    import tracemalloc

    img = np.full((3000, 4000, 3), 200, np.uint8)  # a 36 MB photograph
    img[2900:, 3900:] = (120, 60, 170)
    tracemalloc.start()
    crops = crop_cells(img, np.array([[3900, 2900, 4000, 3000]]), size=64, margin=0.5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000  # the old whole-field padding copied ~37 MB here
    assert (crops[0, 32, 32] == (120, 60, 170)).all() and (crops[0, 0, 0] == 200).all()


def test_a_cell_dataset_is_cut_at_its_window_and_says_so(tmp_path):
    """`leukoscan data cells --window-cells`: the crops are cut at that many cell diameters, and a model
    trained on them reads the window back from the dataset's summary (its card)."""
    import json
    from dataclasses import replace

    import cv2

    from leukoscan.config import SETTINGS
    from leukoscan.datasets.cells import build_txl_other, dataset_geometry
    from leukoscan.images import read_crop

    field = np.full((200, 200, 3), 235, np.uint8)
    cv2.circle(field, (100, 100), 10, (120, 40, 60), -1)  # a red cell 20 px wide; the white cells are 40 px
    (tmp_path / "txl-pbc" / "images" / "train").mkdir(parents=True)
    (tmp_path / "txl-pbc" / "labels" / "train").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "txl-pbc" / "images" / "train" / "f.jpg"), field)
    (tmp_path / "txl-pbc" / "labels" / "train" / "f.txt").write_text("0 0.2 0.2 0.2 0.2\n1 0.5 0.5 0.1 0.1\n")
    dark = {}
    for window in (1.0, 2.0):
        out = tmp_path / f"cells{window}"
        (rec,) = build_txl_other(tmp_path, out, geo=replace(SETTINGS.geometry, window_cells=window))
        crop = read_crop(out / rec["crop"])
        dark[window] = float((crop.mean(axis=2) < 160).mean())
    assert dark[1.0] == pytest.approx(np.pi * 10**2 / 40**2, abs=0.03)  # a 40 px window
    assert dark[2.0] == pytest.approx(np.pi * 10**2 / 80**2, abs=0.02)  # an 80 px window

    assert dataset_geometry(tmp_path).window_cells == SETTINGS.geometry.window_cells  # no summary: the default
    (tmp_path / "summary.json").write_text(json.dumps({"geometry": {"window_cells": 1.4, "crop_px": 48}}))
    assert dataset_geometry(tmp_path).window_cells == 1.4
