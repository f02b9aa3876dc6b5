"""Colour segmentation and scale estimation on synthetic smears of known geometry."""

import numpy as np
import pytest
from synth import smear

from leukoscan.cells import cells
from leukoscan.datasets.segment import agreement, colour_boxes
from leukoscan.detect.scale import rbc_diameter_px, white_cell_px


@pytest.mark.parametrize("rbc,wbc,size", [(16, 27, (224, 224)), (40, 70, (600, 800)), (80, 140, (1200, 1600))])
def test_colour_boxes_find_white_cells_not_red_cells(rbc, wbc, size):
    img, truth = smear(size, rbc_px=rbc, wbc_px=wbc, n_rbc=size[0] * size[1] // (4 * rbc * rbc), n_wbc=3, seed=1)
    found = colour_boxes(img, cell_px=wbc)
    tp, n_pred, n_true = agreement(found, cells(truth), iou=0.7)
    assert (tp, n_pred, n_true) == (3, 3, 3)


@pytest.mark.parametrize("rbc,size", [(16, (224, 224)), (40, (600, 800)), (80, (1200, 1600))])
def test_scale_estimate_from_red_cells(rbc, size):
    img, _ = smear(size, rbc_px=rbc, wbc_px=rbc * 1.7, n_rbc=size[0] * size[1] // (4 * rbc * rbc), n_wbc=2, seed=2)
    est = rbc_diameter_px(img)
    assert est == pytest.approx(rbc, rel=0.15)
    assert white_cell_px(img) == pytest.approx(rbc * 12 / 7.5, rel=0.15)


def test_scale_overrides_and_blank_field():
    blank = np.full((100, 100, 3), 230, np.uint8)
    assert rbc_diameter_px(blank) is None
    assert white_cell_px(blank, cell_size=50) == 50
    assert white_cell_px(blank, um_per_px=0.2) == pytest.approx(60)


def test_agreement_counts_one_to_one():
    a = cells([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = cells([[1, 1, 10, 10], [50, 50, 60, 60], [0, 0, 9, 9]])
    assert agreement(a, b) == (1, 2, 3)


def test_fill_holes_matches_scipy():
    from scipy import ndimage as ndi

    from leukoscan.detect.scale import fill_holes

    rng = np.random.default_rng(0)
    masks = [(rng.random((60, 80)) < density).astype(np.uint8) for density in (0.3, 0.5, 0.7)]
    for mask in [*masks, np.zeros((9, 9), np.uint8), np.ones((9, 9), np.uint8)]:
        assert np.array_equal(fill_holes(mask).astype(bool), ndi.binary_fill_holes(mask))
