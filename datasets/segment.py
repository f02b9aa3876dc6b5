"""Classical segmentation of stained white cells with scikit-image.

Two sources of boxes: the dataset's own pixel-aligned HSV masks (``mask_boxes``) and our colour
segmentation of the original field (``colour_boxes``), which also pre-labels new lab photographs.
White cells are the only strongly magenta (Lab a*) objects in a Romanowsky-stained smear: red cells are
pale, platelets are tiny, and the scale-bar label is grey, so an a*-threshold plus area/shape filters and a
distance-transform watershed for touching cells finds them.
"""

from __future__ import annotations

import numpy as np
import supervision as sv
from scipy import ndimage as ndi
from skimage import color, feature, filters, measure, morphology, segmentation

from leukoscan.cells import cells
from leukoscan.config import SETTINGS, Segmentation

TALEQANI_CELL_PX = 27.0  # median white-cell box side in the 224x224 Taleqani fields (measured from masks)


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab: a* (magenta) is high on Romanowsky-stained white cells, b* is negative (violet, not red)."""
    return color.rgb2lab(rgb)


def stain_threshold(a: np.ndarray, cfg: Segmentation = SETTINGS.segmentation) -> float:
    """Otsu on a*, never closer to the background (median) than ``min_contrast``."""
    return max(float(filters.threshold_otsu(a)), float(np.median(a)) + cfg.min_contrast)


def clean(mask: np.ndarray, cell_px: float) -> np.ndarray:
    r = max(1, round(cell_px / 25))
    mask = morphology.opening(mask, morphology.disk(r))
    mask = morphology.closing(mask, morphology.disk(2 * r))
    return ndi.binary_fill_holes(mask)


def split_boxes(
    mask: np.ndarray,
    cell_px: float,
    lab_image: np.ndarray,
    threshold: float,
    cfg: Segmentation = SETTINGS.segmentation,
) -> sv.Detections:
    """Boxes of cell-sized, compact, violet components; touching cells split by a distance watershed.

    A component is kept only if its mean a* passes ``threshold`` and its mean b* is not red/orange
    (the scale-bar label is sometimes printed in red).
    """
    area = np.pi * (cell_px / 2) ** 2
    dist = ndi.distance_transform_edt(mask)
    labels0 = measure.label(mask)
    peaks = feature.peak_local_max(
        dist,
        min_distance=max(2, int(cell_px * 0.3)),
        threshold_abs=cell_px * 0.15,
        labels=labels0,
        exclude_border=False,
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-dist, markers, mask=mask)
    boxes, scores = [], []
    for p in measure.regionprops(labels, intensity_image=lab_image[..., 1:]):
        if not (cfg.min_area_frac * area <= p.area <= cfg.max_area_frac * area) or p.solidity < cfg.min_solidity:
            continue
        r0, c0, r1, c1 = p.bbox
        if not 0.4 <= (c1 - c0) / max(r1 - r0, 1) <= 2.5:
            continue
        mean_a, mean_b = p.intensity_mean
        if mean_a < threshold or mean_b > cfg.max_b:
            continue
        boxes.append((c0, r0, c1, r1))
        scores.append(min(1.0, p.solidity))
    return cells(boxes, scores)


def colour_boxes(rgb: np.ndarray, cell_px: float = TALEQANI_CELL_PX) -> sv.Detections:
    """White-cell boxes from colour alone (our segmentation)."""
    lab_image = lab(rgb)
    threshold = stain_threshold(lab_image[..., 1])
    return split_boxes(clean(lab_image[..., 1] > threshold, cell_px), cell_px, lab_image, threshold)


def mask_boxes(seg_rgb: np.ndarray, rgb: np.ndarray, cell_px: float = TALEQANI_CELL_PX) -> sv.Detections:
    """White-cell boxes from a Taleqani ``Segmented`` mask, keeping only components that are stained in
    the original (the Benign masks also cover some red cells)."""
    lab_image = lab(rgb)
    threshold = stain_threshold(lab_image[..., 1])
    return split_boxes(clean(seg_rgb.max(axis=2) > 50, cell_px), cell_px, lab_image, threshold)


def agreement(pred: sv.Detections, truth: sv.Detections, iou: float = 0.5) -> tuple[int, int, int]:
    """(true positives, predicted, true) for one image, greedy one-to-one matching at ``iou``."""
    if len(pred) == 0 or len(truth) == 0:
        return 0, len(pred), len(truth)
    m = sv.box_iou_batch(pred.xyxy, truth.xyxy)
    tp = 0
    while m.size and m.max() >= iou:
        i, j = np.unravel_index(m.argmax(), m.shape)
        tp += 1
        m[i, :] = -1
        m[:, j] = -1
    return tp, len(pred), len(truth)
