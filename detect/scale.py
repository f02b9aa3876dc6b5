"""Cell scale: how many pixels a white cell spans in a field, from the user or from the red cells.

Red cells are ~7.5 µm in every smear and are the most numerous objects, so the median radius at the
distance-transform peaks of the (hole-filled) foreground mask is the red-cell radius.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage import feature, filters

from leukoscan.config import SETTINGS, Geometry
from leukoscan.images import rescale

DISK1 = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # skimage.morphology.disk(1)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` (uint8 0/1) with every background region that does not reach the border filled, like
    ``scipy.ndimage.binary_fill_holes`` (4-connected background), by flood-filling from a 1-px frame."""
    framed = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(framed, None, (0, 0), 2, flags=4)
    return (framed[1:-1, 1:-1] != 2).astype(np.uint8)


def rbc_diameter_px(rgb: np.ndarray) -> float | None:
    """Median red-cell diameter in pixels of ``rgb``, or None when no cells are visible."""
    h, w = rgb.shape[:2]
    f = min(1.0, SETTINGS.detection.red_cell_side / max(h, w))  # a shrunk copy: fast, enough resolution
    small = rescale(rgb, f)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gray = cv2.GaussianBlur(gray, (0, 0), 1.0)
    if gray.std() < 2:
        return None
    mask = (gray < filters.threshold_otsu(gray)).astype(np.uint8)  # stained objects are darker than the background
    mask = fill_holes(cv2.morphologyEx(mask, cv2.MORPH_OPEN, DISK1, borderType=cv2.BORDER_REPLICATE))
    if mask.all():  # no background at all: OpenCV's distances are undefined, scipy's run to the far corner
        dist = ndi.distance_transform_edt(mask)
    else:  # exact Euclidean like scipy's, in float32: squared distances are whole, so take float64 roots
        dist = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        dist = np.sqrt(np.round(dist.astype(np.float64) ** 2))
    peaks = feature.peak_local_max(dist, min_distance=3, threshold_abs=2.5, exclude_border=True)
    if len(peaks) < 3:
        return None
    return float(2 * np.median(dist[tuple(peaks.T)]) + 1) / f


def white_cell_px(
    rgb: np.ndarray, cell_size: float | None = None, um_per_px: float | None = None, geo: Geometry = SETTINGS.geometry
) -> float:
    """Expected white-cell diameter in pixels: user's ``cell_size``, else from ``um_per_px``, else estimated."""
    if cell_size:
        return float(cell_size)
    if um_per_px:
        return geo.wbc_um / um_per_px
    rbc = rbc_diameter_px(rgb)
    if rbc is None:
        return geo.train_cell_px
    return rbc * geo.wbc_um / geo.rbc_um


def stain_centre(rgb: np.ndarray, max_side: int = 256) -> tuple[int, int]:
    """(x, y) of the most strongly stained (violet: high Lab a*, negative b*) spot, where a white cell
    most likely is: the scale search looks there when it cannot afford the whole field."""
    from skimage.color import rgb2lab

    h, w = rgb.shape[:2]
    f = min(1.0, max_side / max(h, w))
    small = rescale(rgb, f)
    lab = rgb2lab(small)
    violet = np.clip(lab[..., 1] - np.median(lab[..., 1]), 0, None) * (lab[..., 2] < SETTINGS.segmentation.max_b)
    violet = cv2.GaussianBlur(violet.astype(np.float32), (0, 0), max(1.0, max(small.shape[:2]) / 40))
    y, x = np.unravel_index(int(np.argmax(violet)), violet.shape)
    return round(x / f), round(y / f)


def window(rgb: np.ndarray, centre: tuple[int, int], side: int) -> np.ndarray:
    """A ``side`` x ``side`` view of ``rgb`` around ``centre``, shifted to stay inside the image."""
    h, w = rgb.shape[:2]
    x0 = int(np.clip(centre[0] - side // 2, 0, max(0, w - side)))
    y0 = int(np.clip(centre[1] - side // 2, 0, max(0, h - side)))
    return rgb[y0 : y0 + side, x0 : x0 + side]
