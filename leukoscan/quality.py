"""Is a field a usable smear? One reason in words when it is not (its cells then do not count).

Checked on what any microscope photograph of a stained smear has: a lit field of view (an eyepiece
photo's black surround is left out), contrast, no blown-out highlights, no pixel-level noise, focus at the
scale of the cells, the colour of a stain, and no more white cells than the field can hold. And whether two
fields are the same picture (``field_look``, ``repeats``): its cells are counted once.
"""

from __future__ import annotations

import base64

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


def field_look(rgb: np.ndarray, q: FieldQuality = SETTINGS.quality) -> str:
    """A field's look, to find the same picture given twice: its gray levels averaged on a ``look_side`` square
    grid (8 bit, base64; a few hundred bytes in the slide's journal)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return base64.b64encode(
        cv2.resize(grey, (q.look_side, q.look_side), interpolation=cv2.INTER_AREA).tobytes()
    ).decode()


def look_array(look: str, q: FieldQuality = SETTINGS.quality) -> np.ndarray | None:
    """``field_look``'s grid as floats; None for one that is not (damaged, or of another ``look_side``)."""
    try:
        grid = np.frombuffer(base64.b64decode(look, validate=True), np.uint8)
    except ValueError:
        return None
    return grid.astype(np.float32) if grid.size == q.look_side**2 else None


def repeats(
    looks: list[np.ndarray], shapes: list[float] | None = None, q: FieldQuality = SETTINGS.quality
) -> list[int | None]:
    """For fields in order (``look_array`` each; ``shapes``: their width / height, None: all alike), which earlier
    field each one repeats (its index: the first it is the same picture as, among those not repeats themselves),
    or None. The same picture has the same shape (within ``same_max_shape_diff``; any size), is close in gray
    level everywhere and alike in detail (each grid less its blur, so a camera's shading common to different fields
    does not count), as the same field saved again, at another size or captured twice is and different fields are
    not (``bench/duplicate_fields.py``)."""
    if not looks:
        return []
    grids = np.stack(looks)
    side, n = q.look_side, len(looks)
    shape = np.log(np.asarray(shapes, float)) if shapes is not None else np.zeros(n)
    # a lower bound of the gray-level difference, cheap for every pair: the difference of 4 x 4 block means
    blocks = grids.reshape(n, 4, side // 4, 4, side // 4).mean(axis=(2, 4)).reshape(n, 16)
    details = np.stack([(g - cv2.GaussianBlur(g, (0, 0), side / 8)).ravel() for g in grids.reshape(n, side, side)])
    details -= details.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(details, axis=1)
    found: list[int | None] = []
    counted = np.zeros(n, bool)
    for i in range(n):
        earlier = np.flatnonzero(counted[:i])
        close = earlier[np.abs(shape[earlier] - shape[i]) <= np.log1p(q.same_max_shape_diff)]
        close = close[np.abs(blocks[close] - blocks[i]).mean(axis=1) <= q.same_max_grey_diff]
        close = close[np.abs(grids[close] - grids[i]).mean(axis=1) <= q.same_max_grey_diff]
        alike = details[close] @ details[i] >= q.same_min_texture_corr * norms[close] * norms[i]
        hits = close[alike & (norms[close] * norms[i] > 0)]
        found.append(int(hits[0]) if len(hits) else None)
        counted[i] = not len(hits)
    return found
