"""Is a field a usable smear? One reason in words when it is not (its cells then do not count).

Checked on what any microscope photograph of a stained smear has: a lit field of view (an eyepiece
photo's black surround is left out), contrast, no blown-out highlights, no pixel-level noise, focus at the
scale of the cells, the colour of a stain, and no more white cells than the field can hold. And whether two
fields are the same picture (``field_look``, ``repeats``): its cells are counted once; or show part of the same
smear (``overlaps``, ``shared_cells``): the cells in both are counted once.
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
    """A field's look, to find the same picture given twice (``repeats``) and fields that overlap (``overlaps``):
    its gray levels averaged on a ``look_side`` square grid (8 bit, base64; a few kB in the slide's journal)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return base64.b64encode(
        cv2.resize(grey, (q.look_side, q.look_side), interpolation=cv2.INTER_AREA).tobytes()
    ).decode()


def look_array(look: str, q: FieldQuality = SETTINGS.quality) -> np.ndarray | None:
    """``field_look``'s square grid as floats (``look_side``, or ``same_side`` from a journal of an earlier
    version); None for one that is not (damaged, or of another side)."""
    try:
        grid = np.frombuffer(base64.b64decode(look, validate=True), np.uint8)
    except ValueError:
        return None
    side = round(grid.size**0.5)
    return grid.astype(np.float32).reshape(side, side) if side in (q.look_side, q.same_side) else None


def repeats(
    looks: list[np.ndarray], shapes: list[float] | None = None, q: FieldQuality = SETTINGS.quality
) -> list[int | None]:
    """For fields in order (``look_array`` each; ``shapes``: their width / height, None: all alike), which earlier
    field each one repeats (its index: the first it is the same picture as, among those not repeats themselves),
    or None. The same picture has the same shape (within ``same_max_shape_diff``; any size) and, moved by at most
    ``same_max_shift`` grid points (a stage that drifted between two captures), is close in gray level everywhere
    and alike in detail (each grid less its blur, so a camera's shading common to different fields does not
    count), as the same field saved again, at another size or captured twice is and different fields are not
    (``bench/duplicate_fields.py``). The looks are compared averaged to ``same_side`` grids."""
    if not looks:
        return []
    side, n = q.same_side, len(looks)
    grids = np.stack([cv2.resize(g, (side, side), interpolation=cv2.INTER_AREA) for g in looks])
    shape = np.log(np.asarray(shapes, float)) if shapes is not None else np.zeros(n)
    # cheap sieves for every pair, which a small drift barely moves: the 4 x 4 block means' difference, and the
    # detail's correlation unmoved (near 0 for different fields of a smear)
    blocks = grids.reshape(n, 4, side // 4, 4, side // 4).mean(axis=(2, 4)).reshape(n, 16)
    details = np.stack([_detail(_smooth(g, q), q) for g in grids])
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
    side, m = q.same_side, 2
    d = (grid - cv2.GaussianBlur(grid, (0, 0), side / 8))[m : side - m, m : side - m].ravel()
    return d - d.mean()


def _same_picture(a: np.ndarray, b: np.ndarray, q: FieldQuality) -> bool:
    """Whether grid ``a``, moved by some shift of at most ``same_max_shift`` points (in quarter points, none
    first), matches grid ``b`` inside a 2-point border, both smoothed: gray levels and detail."""
    side, m = q.same_side, 2
    b = _smooth(b, q)
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


def overlaps(looks: list[np.ndarray], q: FieldQuality = SETTINGS.quality) -> list[tuple[int, int, float, float]]:
    """Which fields of one size (``look_array`` each, of ``look_side``; in the slide's order) show part of the same
    smear as an earlier one, each compared with up to ``overlap_window`` fields before it: ``(i, j, dx, dy)`` with
    ``j < i``, a point at ``(x, y)`` of field ``i`` (in fractions of its width and height) at ``(x + dx, y + dy)`` of
    field ``j``. Two fields overlap when, moved by some shift that leaves them sharing at least
    ``overlap_min_share`` of a field, their detail (each grid less its blur: a camera's shading common to different
    fields does not count) correlates at least ``overlap_min_corr`` over the shared part; each pair is sieved first
    on grids of half the side at whole-point shifts (the correlation over every shift at once, with Fourier
    transforms), and the few left are measured at quarter-point shifts (``bench/overlapping_fields.py``)."""
    if len(looks) < 2:
        return []
    side = q.look_side
    fine = np.stack([_overlap_detail(g, q) for g in looks])
    coarse = np.stack([cv2.resize(d, (side // 2, side // 2), interpolation=cv2.INTER_AREA) for d in fine])
    found, window = [], q.overlap_window
    for start in range(1, len(looks), window):  # a window's worth of fields at a time, with those they are compared
        low, high = max(0, start - window), min(len(looks), start + window)  # with (memory bounded on a large slide)
        surfaces = _CorrelationSurfaces(coarse[low:high], q.overlap_min_share)
        for i in range(start, high):
            earlier = np.arange(max(0, i - window), i)
            for j, coarse_shift in zip(earlier, surfaces.best_shifts(i - low, earlier - low, q.overlap_sieve_corr)):
                if coarse_shift is None:
                    continue
                sy, sx = coarse_shift
                if (shift := _fine_shift(fine[i], fine[j], 2 * sx, 2 * sy, q)) is not None:
                    found.append((i, int(j), shift[0] / side, shift[1] / side))
    return found


def _overlap_detail(grid: np.ndarray, q: FieldQuality) -> np.ndarray:
    """A look smoothed by ``same_smooth`` points less its blur at 1/32 of its side (what two overlapping fields
    share, unlike their shading, which their different places in the lamp's field of view change)."""
    smooth = cv2.GaussianBlur(grid.astype(np.float32), (0, 0), q.same_smooth)
    return smooth - cv2.GaussianBlur(smooth, (0, 0), grid.shape[0] / 32)


class _CorrelationSurfaces:
    """The correlation of one grid with others at every whole-point shift that leaves them sharing ``min_share``
    of a grid, each computed over the shared part alone (masked normalised cross-correlation: the sums over each
    shared part from summed-area tables, the cross terms from Fourier transforms; every array in the circular
    layout of the transforms, a shift ``s`` at ``s mod 2 side``)."""

    def __init__(self, grids: np.ndarray, min_share: float):
        n, side, _ = grids.shape
        self.side, self.pad = side, 2 * side
        grids = grids.astype(np.float32)
        self.spectra = np.fft.rfft2(grids, s=(self.pad, self.pad))
        shifts = np.arange(self.pad)
        shifts = np.where(shifts < side, shifts, shifts - self.pad)  # (the shift side itself shares nothing)
        count = np.maximum(side - np.abs(shifts), 0)
        shared = (count[:, None] * count[None, :]).astype(np.float32)
        usable = shared >= max(min_share * side * side, 1)
        shared = np.maximum(shared, 1)
        # a shift s (field i moved onto field j: a point x of i at x + s of j) shares [max(0, -s), side - max(0, s))
        # of i and [max(0, s), side + min(0, s)) of j, on each axis
        lo_i, hi_i = np.clip(-shifts, 0, side), np.clip(side - shifts, 0, side)
        lo_j, hi_j = np.clip(shifts, 0, side), np.clip(side + shifts, 0, side)
        tables = np.pad(grids.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
        squares = np.pad((grids**2).cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
        sum_i, sum_j = self._box(tables, lo_i, hi_i), self._box(tables, lo_j, hi_j)
        sq_i, sq_j = self._box(squares, lo_i, hi_i), self._box(squares, lo_j, hi_j)
        # corr = (cross - mean_i sum_j) scale_i scale_j, with scale_i 0 where too little is shared
        self.scale_i = np.where(usable, 1 / np.sqrt(np.maximum(sq_i - sum_i**2 / shared, 1e-6)), 0)
        self.scale_j = 1 / np.sqrt(np.maximum(sq_j - sum_j**2 / shared, 1e-6))
        self.centre_i, self.centre_j = sum_i / shared * self.scale_i, sum_j * self.scale_j

    @staticmethod
    def _box(table: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Each grid's sum over the box ``[lo[a], hi[a]) x [lo[b], hi[b])`` for every pair of shifts (a, b)."""
        y0, y1, x0, x1 = lo[:, None], hi[:, None], lo[None, :], hi[None, :]
        return table[:, y1, x1] - table[:, y0, x1] - table[:, y1, x0] + table[:, y0, x0]

    def best_shifts(self, i: int, others: np.ndarray, least: float) -> list[tuple[int, int] | None]:
        """For each of ``others``, the shift (y, x) of grid ``i`` onto it where their correlation is highest, when it
        reaches ``least``; else None."""
        if not len(others):
            return []
        # the sum over x of g_j(x + s) g_i(x), for every shift s at once
        cross = np.fft.irfft2(self.spectra[others] * np.conj(self.spectra[i]), s=(self.pad, self.pad))
        corr = cross * self.scale_j[others] * self.scale_i[i] - self.centre_j[others] * self.centre_i[i]
        flat = corr.reshape(len(others), -1)
        at = flat.argmax(axis=1)
        best = []
        for k, a in enumerate(at):
            y, x = divmod(int(a), self.pad)
            shift = (y if y < self.side else y - self.pad, x if x < self.side else x - self.pad)
            best.append(shift if flat[k, a] >= least else None)
        return best


def _fine_shift(a: np.ndarray, b: np.ndarray, dx: float, dy: float, q: FieldQuality) -> tuple[float, float] | None:
    """The shift (x, y) of detail grid ``a`` onto ``b``, within a point and a half of ``(dx, dy)`` in quarter points,
    where their correlation over the shared part (less a 1-point border) is highest, when it reaches
    ``overlap_min_corr`` with ``overlap_min_share`` of a grid shared; else None."""
    side = a.shape[0]
    best, where = q.overlap_min_corr, None
    steps = np.arange(-1.5, 1.5 + 1e-9, 0.25)
    for ex in steps:
        for ey in steps:
            x, y = dx + ex, dy + ey
            if (1 - abs(x) / side) * (1 - abs(y) / side) < q.overlap_min_share:
                continue
            # b moved by -(x, y): its point x + s comes to x, over a's grid
            moved = cv2.warpAffine(b, np.float32([[1, 0, -x], [0, 1, -y]]), (side, side), flags=cv2.INTER_LINEAR)
            rows = slice(max(0, int(np.ceil(-y))) + 1, side - max(0, int(np.ceil(y))) - 1)
            cols = slice(max(0, int(np.ceil(-x))) + 1, side - max(0, int(np.ceil(x))) - 1)
            u, v = a[rows, cols].ravel(), moved[rows, cols].ravel()
            if u.size < 16:
                continue
            u, v = u - u.mean(), v - v.mean()
            r = float(u @ v) / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-9)
            if r >= best:
                best, where = r, (float(x), float(y))
    return where


def shared_cells(
    boxes: np.ndarray,
    earlier: np.ndarray,
    shift: tuple[float, float],
    size: tuple[int, int],
    q: FieldQuality = SETTINGS.quality,
) -> np.ndarray | None:
    """Which of a field's cells (``boxes``, N x 4 xyxy in its pixels) are cells of an earlier field it overlaps
    (``earlier``, M x 4 in that field's pixels; both fields ``size`` (width, height) pixels; a point ``(x, y)`` of the
    field at ``(x, y) + shift`` of the earlier one, ``overlaps``): those whose centre, moved, lies within
    ``overlap_same_cell`` times the larger box's mean side of the centre of one of the earlier field's cells. None
    when the cells say the fields do not overlap there: fewer than half of the cells well inside the shared part (by
    half a cell from its edges), of either field, have their partner in the other (a smear's cells are what two
    views of one place share most surely; a look can match elsewhere on a smear of few features)."""
    boxes, earlier = np.asarray(boxes, float).reshape(-1, 4), np.asarray(earlier, float).reshape(-1, 4)
    shift, size = np.asarray(shift, float), np.asarray(size, float)
    mine = (boxes[:, :2] + boxes[:, 2:]) / 2 + shift  # in the earlier field's pixels
    theirs = (earlier[:, :2] + earlier[:, 2:]) / 2
    sides = (boxes[:, 2:] - boxes[:, :2]).mean(axis=1)
    their_sides = (earlier[:, 2:] - earlier[:, :2]).mean(axis=1)
    near = np.linalg.norm(mine[:, None] - theirs[None], axis=2) <= q.overlap_same_cell * np.maximum(
        sides[:, None], their_sides[None]
    )
    # the shared part, in the earlier field's pixels: [max(0, shift), size + min(0, shift))
    low, high = np.maximum(0, shift), size + np.minimum(0, shift)

    def inside(centres: np.ndarray, cell_sides: np.ndarray) -> np.ndarray:
        margin = cell_sides[:, None] / 2
        return ((centres >= low + margin) & (centres <= high - margin)).all(axis=1)

    expected = [inside(mine, sides), inside(theirs, their_sides)]
    found = [near.any(axis=1), near.any(axis=0)]
    if any(found[k][expected[k]].sum() < 0.5 * expected[k].sum() for k in (0, 1)):
        return None
    return found[0]
