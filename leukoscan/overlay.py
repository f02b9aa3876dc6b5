"""Annotated overlays: every cell boxed and coloured by class, labelled with class and probability."""

from __future__ import annotations

import cv2
import numpy as np
import supervision as sv

from leukoscan.cells import LABELS

# colour-blind-friendly (Okabe-Ito): Benign green, Early Pre-B orange, Pre-B vermilion, Pro-B blue
HEX = ("#009E73", "#E69F00", "#D55E00", "#0072B2")
PALETTE = sv.ColorPalette.from_hex(list(HEX))


def overlay(rgb: np.ndarray, det: sv.Detections) -> np.ndarray:
    """BGR overlay of a classified field (``det.class_id`` and ``det.data['probs']`` set)."""
    scene = np.ascontiguousarray(rgb[..., ::-1])
    scale = max(scene.shape[:2]) / 1000
    thickness = max(1, round(2 * scale))
    text_scale = max(0.35, 0.5 * scale)
    if len(det):
        probs = det.data["probs"]
        labels = [f"{LABELS[c]} {probs[i, c]:.2f}" for i, c in enumerate(det.class_id)]
        scene = sv.BoxAnnotator(color=PALETTE, thickness=thickness).annotate(scene, det)
        scene = sv.LabelAnnotator(
            color=PALETTE, text_color=sv.Color.WHITE, text_scale=text_scale, text_thickness=thickness,
            text_padding=max(2, round(4 * scale)), smart_position=True,
        ).annotate(scene, det, labels=labels)
    return legend(scene, text_scale, thickness)


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
