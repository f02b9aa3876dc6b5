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
    dense = overlay(rgb[..., ::-1].copy(), det)
    sparse = overlay(rgb[..., ::-1].copy(), det, dense_cells=100, dense_labels=100.0)

    # index labels ("0".."29") are narrower than "Neutrophil 0.84": less of the field is label colour
    def green(img):
        return (img[:224] == (115, 158, 0)).all(axis=2).sum()

    assert green(dense) < green(sparse)
    assert (dense[4, 4] == (115, 158, 0)).all()  # the top-left cell's box, not a legend, in the corner


# Machado, Oliveira and Fernandes (2009), full severity, on linear RGB: how each colour looks to a protanope,
# deuteranope and tritanope
CVD = {
    "protanope": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranope": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanope": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}


def test_blasts_colour_stands_apart_for_colour_blind_readers_and_labels_stay_legible():
    """Blast red is at least CIEDE2000 10 from every other type's colour in normal vision and as the three
    dichromats see it; every colour carries white label text at WCAG contrast 3 or more (its figure for bold
    text; the neutrophils' green is the lowest, 3.4)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    from leukoscan.overlay import HEX

    srgb = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in HEX]) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    assert (1.05 / (linear @ [0.2126, 0.7152, 0.0722] + 0.05) >= 3).all()
    for matrix in [np.eye(3), *CVD.values()]:
        seen = (linear @ np.array(matrix).T).clip(0, 1)
        seen = np.where(seen <= 0.0031308, 12.92 * seen, 1.055 * seen ** (1 / 2.4) - 0.055)
        lab = rgb2lab(seen[None])[0]
        assert deltaE_ciede2000(lab[:1], lab[1:]).min() >= 10


def test_lines_and_labels_grow_with_cells_that_are_large_in_a_small_field():
    """A 300 px cell in a 575 px field (a close-up photograph) gets a box wider than 1 px and a label that a
    reader can read; small cells in the same field keep the field's own sizes."""
    rgb = np.full((575, 575, 3), 230, np.uint8)
    probs = np.full((1, 9), 0.02)
    probs[0, 2] = 0.84
    big = overlay(rgb[..., ::-1].copy(), with_probs(cells([[140, 130, 440, 445]], [0.9]), probs))
    small = overlay(rgb[..., ::-1].copy(), with_probs(cells([[140, 130, 170, 160]], [0.9]), probs))
    green = (115, 158, 0)
    assert (big[300, 140:142] == green).all() and not (small[145, 141] == green).all()  # 2 px edge vs 1 px
    assert big.shape[0] - 575 > small.shape[0] - 575  # a taller legend: larger text


def test_labels_that_would_crowd_a_small_field_become_indices():
    """Eight cells in a 224 px field: "Neutrophil 0.84" labels would cover much of it (and each other), so the
    boxes carry their indices; the same cells in a 1000 px field keep type and probability."""
    probs = np.full((8, 9), 0.02)
    probs[:, 2] = 0.84
    xyxy = [[10 + 50 * (k % 4), 60 + 80 * (k // 4), 34 + 50 * (k % 4), 84 + 80 * (k // 4)] for k in range(8)]
    det = with_probs(cells(xyxy, [0.9] * 8), probs)

    def green(img, side):
        return (img[:side] == (115, 158, 0)).all(axis=2).sum()

    small = np.full((224, 224, 3), 230, np.uint8)
    crowded = overlay(small.copy(), det)
    forced = overlay(small.copy(), det, dense_labels=100.0)
    assert green(crowded, 224) < green(forced, 224) / 2
    large = np.full((1000, 1000, 3), 230, np.uint8)
    assert green(overlay(large.copy(), det), 1000) == green(overlay(large.copy(), det, dense_labels=100.0), 1000)
