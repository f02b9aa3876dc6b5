"""Overlay labels: placed inside the frame, clear of each other and of neighbouring cells."""

import numpy as np

from leukoscan.cells import cells, with_probs
from leukoscan.overlay import label_rectangles, overlay


def overlaps(a, b):
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_labels_stay_in_frame_and_apart():
    xyxy = np.array([[10, 2, 40, 32], [50, 60, 80, 90], [52, 95, 82, 125], [150, 150, 180, 180]], float)
    wh = np.full((4, 2), (60, 14), float)
    labels = label_rectangles(xyxy, wh, (224, 224))
    assert (labels[:, 2:] - labels[:, :2] == wh).all()
    assert labels[0, 1] == xyxy[0, 3]  # no room above a cell at the top edge: below it
    assert (labels[:, :2] >= 0).all() and (labels[:, 2:] <= 224).all()
    for i in range(4):
        for j in range(4):
            assert i == j or not overlaps(labels[i], labels[j])
            assert i == j or not overlaps(labels[i], xyxy[j])


def test_overlay_draws_every_cell_in_its_type_colour():
    rgb = np.full((224, 224, 3), 230, np.uint8)
    probs = np.full((2, 9), 0.02)
    probs[0, 0], probs[1, 2] = 0.84, 0.84  # a blast, a neutrophil
    det = with_probs(cells([[100, 100, 140, 140], [20, 150, 60, 190]], [0.9, 0.8]), probs)
    bgr = overlay(rgb[..., ::-1].copy(), det)
    assert bgr.shape[1:] == rgb.shape[1:] and bgr.shape[0] > rgb.shape[0] and bgr.dtype == np.uint8  # + legend strip
    assert (bgr[224:, :, :] == 255).mean() > 0.8  # the key sits in a white strip below the field
    assert (bgr[120, 100] == (0, 0, 208)).all() and (bgr[120, 101] == (0, 0, 208)).all()  # blast: red #D00000, thick
    assert (bgr[170, 20] == (115, 158, 0)).all()  # neutrophil box edge in green #009E73 (BGR)
    assert (bgr[96, 101:110] == (0, 0, 208)).all(axis=1).any()  # its label's background just above the box


def test_dense_field_boxes_carry_their_index_and_the_key_never_covers_a_cell():
    rgb = np.full((224, 224, 3), 230, np.uint8)
    xyxy = [[x, y, x + 14, y + 14] for x in range(4, 200, 20) for y in range(4, 60, 20)]  # 30 small cells
    probs = np.full((len(xyxy), 9), 0.02)
    probs[:, 2] = 0.84
    det = with_probs(cells(xyxy, [0.9] * len(xyxy)), probs)
    dense, sparse = overlay(rgb[..., ::-1].copy(), det), overlay(rgb[..., ::-1].copy(), det, dense_cells=100)

    # index labels ("0".."29") are narrower than "Neutrophil 0.84": less of the field is label colour
    def green(img):
        return (img[:224] == (115, 158, 0)).all(axis=2).sum()

    assert green(dense) < green(sparse)
    assert (dense[4, 4] == (115, 158, 0)).all()  # the top-left cell's box, not a legend, in the corner
