"""Is a field a usable smear? One reason in words when it is not (its cells then do not count).

Checked on what any microscope photograph of a stained smear has: a lit field of view (an eyepiece
photo's black surround is left out), contrast, no blown-out highlights, no pixel-level noise, focus at the
scale of the cells, the colour of a stain, and no more white cells than the field can hold.
"""

from __future__ import annotations

import cv2
import numpy as np

from leukoscan.config import SETTINGS, FieldQuality, Geometry
from leukoscan.images import rescale


def field_problem(
    rgb: np.ndarray, n_cells: int, cell_px: float, q: FieldQuality = SETTINGS.quality, geo: Geometry = SETTINGS.geometry
) -> str:
    """'' for a usable field, else why it is not (one line)."""
    h, w = rgb.shape[:2]
    small = rescale(rgb, min(1.0, q.sample_side / max(h, w)))
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lit = grey > q.lit_grey
    if lit.mean() < q.min_lit_fraction:
        return "too dark to screen (under-exposed or no light)"
    if grey[lit].std() < q.min_contrast:
        return "blank field (no contrast)"
    if (small.min(axis=2) >= 250)[lit].mean() > q.max_saturated:
        return "over-exposed"
    if cv2.Laplacian(grey, cv2.CV_32F)[lit].var() / max(float(grey[lit].var()), 1e-6) > q.max_noise_ratio:
        return "noise, not a smear photograph"
    if focus(rgb, cell_px, q, geo) < q.min_focus:
        return "out of focus"
    lab = cv2.cvtColor(small.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    if np.percentile(np.hypot(lab[..., 1], lab[..., 2])[lit], 90) < q.min_chroma:
        return "no stain colour (grayscale, or not a stained smear)"
    if n_cells * np.pi / 4 * float(cell_px) ** 2 > q.max_cell_cover * lit.mean() * h * w:
        return f"implausible cell density ({n_cells} white cells of {cell_px:.0f} px)"
    return ""


def focus(
    rgb: np.ndarray, cell_px: float, q: FieldQuality = SETTINGS.quality, geo: Geometry = SETTINGS.geometry
) -> float:
    """Laplacian variance of the lit field once its cells are the detector's size (sharpness where it matters)."""
    small = cv2.cvtColor(rescale(rgb, min(1.0, geo.train_cell_px / max(float(cell_px), 1.0))), cv2.COLOR_RGB2GRAY)
    lit = cv2.erode((small > q.lit_grey).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return float(cv2.Laplacian(small.astype(np.float32), cv2.CV_32F)[lit].var()) if lit.any() else 0.0
