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
    or None. The same picture has the same shape (within ``same_max_shape_diff``; any size) and, moved by at most
    ``same_max_shift`` grid points (a stage that drifted between two captures), is close in gray level everywhere
    and alike in detail (each grid less its blur, so a camera's shading common to different fields does not
    count), as the same field saved again, at another size or captured twice is and different fields are not
    (``bench/duplicate_fields.py``)."""
    if not looks:
        return []
    grids = np.stack(looks)
    side, n = q.look_side, len(looks)
    shape = np.log(np.asarray(shapes, float)) if shapes is not None else np.zeros(n)
    # cheap sieves for every pair, which a small drift barely moves: the 4 x 4 block means' difference, and the
    # detail's correlation unmoved (near 0 for different fields of a smear)
    blocks = grids.reshape(n, 4, side // 4, 4, side // 4).mean(axis=(2, 4)).reshape(n, 16)
    details = np.stack([_detail(_smooth(g.reshape(side, side), q), q) for g in grids])
    details /= np.maximum(np.linalg.norm(details, axis=1, keepdims=True), 1e-9)
    found: list[int | None] = []
    counted = np.zeros(n, bool)
    for i in range(n):
        earlier = np.flatnonzero(counted[:i])
        close = earlier[np.abs(shape[earlier] - shape[i]) <= np.log1p(q.same_max_shape_diff)]
        close = close[np.abs(blocks[close] - blocks[i]).mean(axis=1) <= q.same_max_grey_diff]
        close = close[details[close] @ details[i] >= q.same_min_unmoved_corr]
        first = next((int(j) for j in close if _same_picture(grids[i], grids[j], q)), None)
        found.append(first)
        counted[i] = first is None
    return found


def _smooth(grid: np.ndarray, q: FieldQuality) -> np.ndarray:
    """A grid blurred by ``same_smooth`` points: a shift's interpolation then does not tell two grids apart."""
    return cv2.GaussianBlur(grid, (0, 0), q.same_smooth)


def _detail(grid: np.ndarray, q: FieldQuality) -> np.ndarray:
    """A smoothed grid less its blur (a camera's shading taken off) inside a 2-point border (what a shift brings in
    from outside is not compared), centred."""
    side, m = q.look_side, 2
    d = (grid - cv2.GaussianBlur(grid, (0, 0), side / 8))[m : side - m, m : side - m].ravel()
    return d - d.mean()


def _same_picture(a: np.ndarray, b: np.ndarray, q: FieldQuality) -> bool:
    """Whether grid ``a``, moved by some shift of at most ``same_max_shift`` points (in quarter points, none
    first), matches grid ``b`` inside a 2-point border, both smoothed: gray levels and detail."""
    side, m = q.look_side, 2
    a, b = a.reshape(side, side), _smooth(b.reshape(side, side), q)
    db = _detail(b, q)
    steps = np.arange(-q.same_max_shift, q.same_max_shift + 1e-9, 0.25)
    for dx, dy in sorted(((x, y) for x in steps for y in steps), key=lambda s: abs(s[0]) + abs(s[1])):
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = _smooth(
            cv2.warpAffine(a, shift, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), q
        )
        if np.abs(moved - b)[m : side - m, m : side - m].mean() > q.same_max_grey_diff:
            continue
        da = _detail(moved, q)
        norms = float(np.linalg.norm(da) * np.linalg.norm(db))
        if norms > 0 and float(da @ db) >= q.same_min_texture_corr * norms:
            return True
    return False
