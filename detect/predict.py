"""White-cell detection on fields of any size: scale normalisation, then one pass or tiled inference.

Every field is resized so its white cells are ``train_cell_px`` wide (the size the detector was trained
on); a resized field larger than ``1.5 x tile`` is cut into overlapping tiles by ``sv.InferenceSlicer``,
whose intersection-over-smaller NMS reports a cell cut by a tile border once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import supervision as sv

from leukoscan.cards import backend_file, load_model
from leukoscan.cells import cells
from leukoscan.config import DETECTOR_WEIGHTS, SETTINGS, Detection, Geometry
from leukoscan.detect.scale import stain_centre, white_cell_px, window
from leukoscan.images import rescale, to_bgr
from leukoscan.runtime import resolve_device


def ceil32(n: float) -> int:
    return int(np.ceil(n / 32) * 32)


def self_consistent(dets: list[sv.Detections], cell_px: float) -> tuple[tuple[float, int], float] | None:
    """How well ``cell_px`` explains what the detector found assuming it: the boxes of about that size
    (0.6-1.7x) with confidence >= 0.5 score (mean confidence of the three most confident, their number);
    returns the score and the median side of those boxes, or None when there are none."""
    conf = np.concatenate([d.confidence for d in dets])
    xyxy = np.concatenate([d.xyxy for d in dets])
    sides = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
    consistent = (sides >= 0.6 * cell_px) & (sides <= 1.7 * cell_px) & (conf >= 0.5)
    if not consistent.any():
        return None
    return (float(np.sort(conf[consistent])[-3:].mean()), int(consistent.sum())), float(np.median(sides[consistent]))


class Detector:
    """White cells of RGB fields, one box each (``detect``, or a call on one field), and the white-cell size of
    one microscope's fields (``estimate_cell_px``); thresholds and tiling from ``settings`` (``config.Detection``)."""

    def __init__(
        self,
        weights: Path = DETECTOR_WEIGHTS,
        device: str = "auto",
        backend: str = "pytorch",
        settings: Detection = SETTINGS.detection,
        geo: Geometry = SETTINGS.geometry,
    ):
        weights = backend_file(weights, backend)
        self.backend = backend
        self.model = load_model(weights, "detect")
        self.weights = Path(weights)
        self.device = resolve_device(device)
        # merge_ios: two boxes on one cell (a whole cell and a part of it) overlap by most of the smaller box,
        # which IoU-based NMS lets through; neighbouring cells, even touching, overlap far less (TXL-PBC's
        # labels: no distinct pair of white cells above 0.6)
        self.settings, self.geo = settings, geo

    def _predict_bgr(self, images: list[np.ndarray], imgsz: int) -> list[sv.Detections]:
        """Raw model pass on BGR arrays at ``imgsz`` (boxes in the given arrays' pixels)."""
        if not images:
            return []
        results = self.model.predict(
            images,
            imgsz=imgsz,
            conf=self.settings.conf,
            iou=self.settings.iou,
            device=self.device,
            verbose=False,
            max_det=self.settings.max_det,
        )
        return [cells(r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy()) for r in results]

    def _scale_for(self, rgb: np.ndarray, cell_size: float | None = None, um_per_px: float | None = None) -> float:
        s = self.geo.train_cell_px / white_cell_px(rgb, cell_size, um_per_px, self.geo)
        return min(s, self.settings.max_scaled_side / max(rgb.shape[:2]))

    def estimate_cell_px(self, images: list[np.ndarray], max_side: int | None = None) -> float:
        """White-cell diameter (px) of fields from one microscope, found by the detector itself.

        The red-cell estimate (``white_cell_px``) and a geometric grid of sizes (from ``min_cell_px``, the
        smallest cell worth classifying, up to the field's shorter side) are each tried as the scale; at the
        right scale the detector finds white cells with high confidence at about the size it assumed. The
        candidate whose three most confident self-consistent boxes score highest (then: most such boxes)
        wins, refined to the median size of its self-consistent boxes (the red-cell estimate when none
        finds a cell). The fields are shrunk once to the largest scale any candidate needs.
        Each candidate looks at one detector pass worth of each field (``1.5 x tile`` pixels once scaled)
        around its most violet spot, so the search costs a few small passes instead of tiling every field
        at every size; candidates whose windows scale to the same shape (all of them, on large photographs)
        share one batched pass.
        """
        guess, grid = self._candidate_sizes(images, max_side or self.settings.scale_search_side)
        # every candidate shrinks the fields at least this much: shrink them once, not once per candidate
        f = min(1.0, self.geo.train_cell_px / min(grid))
        if f < 1:
            images = [rescale(rgb, f) for rgb in images]
        candidates = [c * f for c in sorted(grid)]  # the candidate cell sizes in the shrunk fields' pixels
        windows, sizes = self._search_windows(images, candidates)
        found = self.detect(windows, cell_size=sizes)  # every candidate's windows together (one pass per input size)
        best, best_px = (0.0, 0), None
        for k, cf in enumerate(candidates):
            fit = self_consistent(found[k * len(images) : (k + 1) * len(images)], cf)
            if fit is not None and fit[0] > best:
                best, best_px = fit[0], fit[1] / f
        return max(float(guess if best_px is None else best_px), self.geo.min_cell_px)

    def _candidate_sizes(self, images: list[np.ndarray], max_side: int) -> tuple[float, list[float]]:
        """The red-cell guess of the white-cell diameter, and the sizes the search tries (the guess first)."""
        longest = max(max(rgb.shape[:2]) for rgb in images)
        shortest = min(min(rgb.shape[:2]) for rgb in images)
        # red-cell based, never below the smallest cell worth classifying (noise can fake tiny "red cells")
        guess = max(float(np.median([white_cell_px(rgb, geo=self.geo) for rgb in images])), self.geo.min_cell_px)
        # the guess, and the sizes worth trying: classifiable (>= min_cell_px), whole inside a field, leaving
        # the field within max_side once scaled, and not within 25 % of the guess (which already covers them)
        grid = [
            guess,
            *(
                c
                for c in 12 * 2.0 ** np.arange(7)
                if self.geo.min_cell_px <= c <= shortest
                and self.geo.train_cell_px * longest / c <= max_side
                and not 0.8 < c / guess < 1.25
            ),
        ]
        return guess, grid

    def _search_windows(
        self, images: list[np.ndarray], candidates: list[float]
    ) -> tuple[list[np.ndarray], list[float]]:
        """What each candidate cell size looks at in each field (candidate after candidate, the fields in
        order), with that size for each: one detector pass worth of the field around its most violet spot,
        or the whole field when it is no larger."""
        centres = None  # where to look: only needed once a window is smaller than a field (small fields never)
        windows, sizes = [], []
        for cf in candidates:
            side = int(1.5 * self.settings.tile * cf / self.geo.train_cell_px)  # field pixels that fill one pass
            if centres is None and any(side < max(rgb.shape[:2]) for rgb in images):
                centres = [stain_centre(rgb) for rgb in images]
            windows += images if centres is None else [window(rgb, xy, side) for rgb, xy in zip(images, centres)]
            sizes += [cf] * len(images)
        return windows, sizes

    def __call__(
        self, rgb: np.ndarray, cell_size: float | None = None, um_per_px: float | None = None
    ) -> sv.Detections:
        return self.detect([rgb], cell_size, um_per_px)[0]

    def detect(
        self, images: list[np.ndarray], cell_size: float | list[float] | None = None, um_per_px: float | None = None
    ) -> list[sv.Detections]:
        """Cells of each RGB field, boxes in that field's original pixels. Small fields share one batch.

        ``cell_size`` is one value for all fields or one per field. Without it (or ``um_per_px``) the fields
        are taken as one microscope's and their cell size is estimated once (``estimate_cell_px``)."""
        if not images:
            return []
        if not cell_size and not um_per_px:
            cell_size = self.estimate_cell_px(images[: self.settings.scale_fields])
        scaled = self._model_inputs(images, cell_size, um_per_px)
        out: list[sv.Detections | None] = [None] * len(images)
        small = [i for i, (_, bgr) in enumerate(scaled) if max(bgr.shape[:2]) <= 1.5 * self.settings.tile]
        # one batched pass per shape for the small fields: Ultralytics pads a batch of one shape as it pads a
        # field alone (to the stride) and a batch of mixed shapes to a square, so a field's cells would
        # otherwise depend on the fields it happened to be batched with
        for shape in sorted({scaled[i][1].shape[:2] for i in small}):
            idx = [i for i in small if scaled[i][1].shape[:2] == shape]
            for i, det in zip(idx, self._predict_bgr([scaled[i][1] for i in idx], ceil32(max(shape)))):
                out[i] = det
        for i, (s, bgr) in enumerate(scaled):
            if out[i] is None:
                out[i] = self._tiled(bgr)
        for i, (s, _) in enumerate(scaled):
            h, w = images[i].shape[:2]
            out[i].xyxy = (out[i].xyxy / s).clip(0, [w, h, w, h]).astype(np.float32)
            if len(out[i]) > 1:  # one box per cell: of boxes mostly covering one another, the most confident
                out[i] = out[i].with_nms(
                    self.settings.merge_ios, class_agnostic=True, overlap_metric=sv.OverlapMetric.IOS
                )
        return out

    def _model_inputs(
        self, images: list[np.ndarray], cell_size: float | list[float] | None, um_per_px: float | None = None
    ) -> list[tuple[float, np.ndarray]]:
        """(scale, BGR field resized so its cells are ``train_cell_px`` wide) for each RGB field: what the
        model is given (whole, or tiled when large)."""
        sizes = cell_size if isinstance(cell_size, (list, tuple)) else [cell_size] * len(images)
        scaled = []
        for rgb, size in zip(images, sizes):
            s = self._scale_for(rgb, size, um_per_px)
            # resize first: the channel flip then copies the smaller image
            scaled.append((s, to_bgr(rescale(rgb, s))))
        return scaled

    def _tiled(self, bgr: np.ndarray) -> sv.Detections:
        slicer = sv.InferenceSlicer(
            callback=lambda tiles: self._predict_bgr(list(tiles), self.settings.tile),
            slice_wh=self.settings.tile,
            overlap_wh=self.settings.tile_overlap,
            overlap_filter=sv.OverlapFilter.NON_MAX_SUPPRESSION,
            overlap_metric=sv.OverlapMetric.IOS,
            iou_threshold=self.settings.tile_merge_ios,
            batch_size=self.settings.tile_batch,
        )
        return slicer(bgr)
