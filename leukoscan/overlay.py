"""Annotated overlays: every cell boxed and coloured by type, labelled with type and probability (in a dense
field with its index, the ``cell`` of cells.csv), above a strip with the colour key of the types present."""

from __future__ import annotations

import cv2
import numpy as np
import supervision as sv

from leukoscan.cells import BLAST, PROBS, TYPE_LABELS, cell_labels
from leukoscan.numbers import floor2

# one colour per cell type (CELL_TYPES order), dark enough for white label text: blasts stand out in red (and
# thicker boxes), the normal types in Okabe-Ito-like hues, immature granulocytes black (their navy was within
# CIEDE2000 5.7 of the basophils' purple for deuteranopes; black is 32 or more from every other), monocytes
# dark slate and erythroblasts a greener olive (the monocytes' brown was within 5.7 of the blasts' red for
# deuteranopes, the olive 9; red is now 10 or more from every other colour in normal, protanope, deuteranope and
# tritanope vision, simulated as Machado et al. 2009: tests/test_overlay.py), "other" grey
HEX = ("#D00000", "#0072B2", "#009E73", "#2F4F4F", "#A8457E", "#5D3A9B", "#000000", "#557744", "#6E6E6E")
PALETTE = sv.ColorPalette.from_hex(list(HEX))
DENSE_CELLS = 25  # more cells than this in a field: boxes carry their index, not type and probability
DENSE_LABELS = 0.10  # type-and-probability labels that would cover more of the field than this: indices too


def overlay(
    bgr: np.ndarray, det: sv.Detections, dense_cells: int = DENSE_CELLS, dense_labels: float = DENSE_LABELS
) -> np.ndarray:
    """Overlay of a classified BGR field (``det.class_id`` and ``det.data[PROBS]`` set), BGR as supervision's
    annotators and OpenCV draw and write: the field (same pixels, so boxes keep their coordinates; drawn on
    ``bgr`` in place, as supervision's annotators do) above a legend strip of the types present. Blasts' boxes
    are drawn thicker; with more than ``dense_cells`` cells, or where their labels would cover more than
    ``dense_labels`` of the field (a 224 px field of 20 cells), the labels are the cells' indices."""
    scene = bgr
    side = max(scene.shape[:2])
    cell = float(np.median((det.xyxy[:, 2:] - det.xyxy[:, :2]).max(axis=1))) if len(det) else 0.0
    # lines and labels follow the field's size, and the cells' where they are large in a small field (a 300 px
    # cell in a 575 px field would have a 1 px box and 8 px labels), up to twice the field's own
    scale = max(side / 1000, min(cell / 200, side / 500))
    thickness = max(1, round(2 * scale))
    text_scale = max(0.35, 0.5 * scale)
    padding = max(2, round(4 * scale))
    if len(det):
        # labels no taller than about a third of a cell, so dense fields stay legible
        text_scale = max(0.35, min(text_scale, cell / 100))
        probs = det.data[PROBS]
        labels = [f"{name} {floor2(probs[i, c])}" for i, (name, c) in enumerate(zip(cell_labels(det), det.class_id))]
        sizes = label_sizes(labels, text_scale, thickness, padding)
        if len(det) > dense_cells or sizes.prod(axis=1).sum() > dense_labels * scene.shape[0] * scene.shape[1]:
            labels = [str(i) for i in range(len(det))]
            sizes = label_sizes(labels, text_scale, thickness, padding)
        scene = sv.BoxAnnotator(color=PALETTE, thickness=thickness).annotate(scene, det)
        blast = det[det.class_id == BLAST]
        if len(blast):
            scene = sv.BoxAnnotator(color=PALETTE, thickness=2 * thickness).annotate(scene, blast)
        rects = label_rectangles(det.xyxy, sizes, scene.shape[1::-1])
        # supervision draws a TOP_LEFT label just above its box's top-left corner: one call draws every
        # label in its chosen rectangle from a 1-px anchor box at the rectangle's bottom-left corner
        anchors = sv.Detections(
            xyxy=np.c_[rects[:, [0, 3]], rects[:, [0, 3]] + 1].astype(np.float32), class_id=det.class_id
        )
        scene = sv.LabelAnnotator(
            color=PALETTE,
            text_color=sv.Color.WHITE,
            text_scale=text_scale,
            text_thickness=thickness,
            text_padding=padding,
            text_position=sv.Position.TOP_LEFT,
        ).annotate(scene, anchors, labels=labels)
    return legend(scene, text_scale, thickness, sorted(set(det.class_id.tolist())) if len(det) else [])


def label_sizes(labels: list[str], text_scale: float, thickness: int, padding: int) -> np.ndarray:
    """Each label's width and height on the overlay (its text and padding), N x 2."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    return np.array([cv2.getTextSize(t, font, text_scale, thickness)[0] for t in labels]).reshape(-1, 2) + 2 * padding


def label_rectangles(xyxy: np.ndarray, label_wh: np.ndarray, frame_wh: tuple[int, int]) -> np.ndarray:
    """Where each box's label goes (x1, y1, x2, y2): of four places (above the box, below it; left- or
    right-aligned), greedily, largest box first, the first that lies inside the frame and covers no label
    placed before it and no other cell (else the one that covers least). One pass, unlike a force-directed
    layout, so dense fields stay cheap: what each place covers of the other cells is computed at once, and
    what it covers of the labels is added up as they are placed."""
    n, (w, h) = len(xyxy), frame_wh
    boxes = np.asarray(xyxy, float).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    lw, lh = np.asarray(label_wh, float).reshape(-1, 2).T
    left, top = np.stack([x1, x1, x2 - lw, x2 - lw], 1), np.stack([y1 - lh, y2, y1 - lh, y2], 1)
    # n x 4 places (above-left, below-left, above-right, below-right) x (x1, y1, x2, y2)
    options = np.stack([left, top, left + lw[:, None], top + lh[:, None]], 2)
    outside = (options[..., 0] < 0) | (options[..., 1] < 0) | (options[..., 2] > w) | (options[..., 3] > h)
    flat = options.reshape(-1, 4)
    covers = np.empty((n, 4))  # area of the other cells under each place (a label may touch its own cell)
    for start in range(0, n, 256):  # in blocks: n x n areas at once would not fit for thousands of cells
        under = overlap_area(flat[4 * start : 4 * (start + 256)], boxes).reshape(-1, 4, n)
        rows = np.arange(start, start + len(under))
        under[np.arange(len(under)), :, rows] = 0  # its own cell
        covers[rows] = under.sum(axis=2)
    # what each place covers of each other place (computed at once while that fits in a few MB)
    pairs = overlap_area(flat, flat).reshape(n, 4, n, 4) if n <= 256 else None
    penalty, area = 10.0 * outside, np.maximum(lw * lh, 1.0)
    under_labels = np.zeros((n, 4))  # area of the labels placed so far under each place
    chosen = np.zeros((n, 4))
    for i in np.argsort(-(x2 - x1) * (y2 - y1), kind="stable"):
        k = int(np.argmin((covers[i] + under_labels[i]) / area[i] + penalty[i]))
        chosen[i] = options[i, k]
        if pairs is not None:
            under_labels += pairs[:, :, i, k]
        else:
            under_labels += overlap_area(flat, chosen[i : i + 1]).reshape(n, 4)
    return chosen


def overlap_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas of boxes ``a`` (N x 4) and ``b`` (M x 4): N x M."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return iw.clip(0) * ih.clip(0)


def legend(scene: np.ndarray, text_scale: float, thickness: int, types: list[int]) -> np.ndarray:
    """``scene`` above a white strip with the colour key of the cell ``types`` (indices), in rows as wide
    as the field (the key never covers a cell)."""
    if not types:
        return scene
    font = cv2.FONT_HERSHEY_SIMPLEX
    line = int(cv2.getTextSize("Ag", font, text_scale, thickness)[0][1] * 1.9) + 2
    entries = [
        (
            TYPE_LABELS[t],
            PALETTE.colors[t],
            cv2.getTextSize(TYPE_LABELS[t], font, text_scale, thickness)[0][0] + line + 12,
        )
        for t in types
    ]
    width = scene.shape[1]
    places, x, row = [], 4, 0
    for _, _, w in entries:  # left to right, a new row when the next entry would not fit
        if x > 4 and x + w > width:
            x, row = 4, row + 1
        places.append((x, 4 + row * line))
        x += w
    strip = np.full((line * (row + 1) + 8, width, 3), 255, np.uint8)
    for (name, color, _), (x, y) in zip(entries, places):
        cv2.rectangle(strip, (x, y + 2), (x + line - 6, y + line - 4), color.as_bgr(), -1)
        cv2.putText(strip, name, (x + line, y + line - 6), font, text_scale, (20, 20, 20), thickness, cv2.LINE_AA)
    return np.vstack([scene, strip])
