"""Annotated overlays: every cell boxed and coloured by class, labelled with class and probability."""

from __future__ import annotations

import cv2
import numpy as np
import supervision as sv

from leukoscan.cells import LABELS
from leukoscan.images import to_bgr

# colour-blind-friendly (Okabe-Ito): Benign green, Early Pre-B orange, Pre-B vermilion, Pro-B blue
HEX = ("#009E73", "#E69F00", "#D55E00", "#0072B2")
PALETTE = sv.ColorPalette.from_hex(list(HEX))


def overlay(rgb: np.ndarray, det: sv.Detections) -> np.ndarray:
    """BGR overlay of a classified field (``det.class_id`` and ``det.data['probs']`` set)."""
    scene = to_bgr(rgb)
    scale = max(scene.shape[:2]) / 1000
    thickness = max(1, round(2 * scale))
    text_scale = max(0.35, 0.5 * scale)
    padding = max(2, round(4 * scale))
    if len(det):
        # labels no taller than about a third of a cell, so dense fields stay legible
        text_scale = max(0.35, min(text_scale, float(np.median((det.xyxy[:, 2:] - det.xyxy[:, :2]).max(axis=1))) / 100))
        probs = det.data["probs"]
        labels = [f"{LABELS[c]} {probs[i, c]:.2f}" for i, c in enumerate(det.class_id)]
        scene = sv.BoxAnnotator(color=PALETTE, thickness=thickness).annotate(scene, det)
        sizes = np.array([cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, text_scale, thickness)[0] for t in labels])
        rects = label_rectangles(det.xyxy, sizes + 2 * padding, scene.shape[1::-1])
        # supervision draws a TOP_LEFT label just above its box's top-left corner: one call draws every
        # label in its chosen rectangle from a 1-px anchor box at the rectangle's bottom-left corner
        anchors = sv.Detections(xyxy=np.c_[rects[:, [0, 3]], rects[:, [0, 3]] + 1].astype(np.float32), class_id=det.class_id)
        scene = sv.LabelAnnotator(
            color=PALETTE, text_color=sv.Color.WHITE, text_scale=text_scale, text_thickness=thickness,
            text_padding=padding, text_position=sv.Position.TOP_LEFT,
        ).annotate(scene, anchors, labels=labels)
    return legend(scene, text_scale, thickness)


def label_rectangles(xyxy: np.ndarray, label_wh: np.ndarray, frame_wh: tuple[int, int]) -> np.ndarray:
    """Where each box's label goes (x1, y1, x2, y2): of four places (above the box, below it; left- or
    right-aligned), greedily, largest box first, the first that lies inside the frame and covers no label
    placed before it and no other cell (else the one that covers least). Linear in the cells, unlike a
    force-directed layout, so dense fields stay cheap."""
    n, (w, h) = len(xyxy), frame_wh
    x1, y1, x2, y2 = np.asarray(xyxy, float).T
    lw, lh = np.asarray(label_wh, float).T
    options = np.stack([  # n x 4 places x (x1, y1, x2, y2)
        np.stack([x1, y1 - lh, x1 + lw, y1], 1), np.stack([x1, y2, x1 + lw, y2 + lh], 1),
        np.stack([x2 - lw, y1 - lh, x2, y1], 1), np.stack([x2 - lw, y2, x2, y2 + lh], 1)], 1)
    outside = (options[..., 0] < 0) | (options[..., 1] < 0) | (options[..., 2] > w) | (options[..., 3] > h)
    obstacles = np.concatenate([np.asarray(xyxy, float), np.zeros((n, 4))])  # cells, then labels as placed
    active = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    for i in np.argsort(-(x2 - x1) * (y2 - y1), kind="stable"):
        active[i] = False  # a label may touch its own cell
        o, b = options[i][:, None, :], obstacles[active][None]
        iw = np.minimum(o[..., 2], b[..., 2]) - np.maximum(o[..., 0], b[..., 0])
        ih = np.minimum(o[..., 3], b[..., 3]) - np.maximum(o[..., 1], b[..., 1])
        covered = (iw.clip(0) * ih.clip(0)).sum(axis=1) / max(lw[i] * lh[i], 1.0)
        active[i] = True
        obstacles[n + i], active[n + i] = options[i, int(np.argmin(covered + 10 * outside[i]))], True
    return obstacles[n:]


def legend(scene: np.ndarray, text_scale: float, thickness: int) -> np.ndarray:
    """Class colour key in the top-left corner."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    line = int(cv2.getTextSize("Ag", font, text_scale, thickness)[0][1] * 1.9) + 2
    width = max(cv2.getTextSize(t, font, text_scale, thickness)[0][0] for t in LABELS) + line + 12
    height = line * len(LABELS) + 8
    box = scene[0:height, 0:width]
    scene[0:height, 0:width] = (box * 0.3 + 255 * 0.7).astype(np.uint8)
    for i, (name, color) in enumerate(zip(LABELS, PALETTE.colors)):
        y = 4 + i * line
        cv2.rectangle(scene, (4, y + 2), (4 + line - 6, y + line - 4), color.as_bgr(), -1)
        cv2.putText(scene, name, (line + 4, y + line - 6), font, text_scale, (20, 20, 20), thickness, cv2.LINE_AA)
    return scene
