"""Tables of the output contract, made from the cell detections (``sv.Detections``)."""

from __future__ import annotations

import numpy as np
import supervision as sv

from leukoscan.cells import CLASSES, LABELS

PROB_COLUMNS = [f"p_{k}" for k in CLASSES]
CELL_COLUMNS = ["image", "cell", "x1", "y1", "x2", "y2", "det_conf", "label", *PROB_COLUMNS]
IMAGE_COLUMNS = ["image", "status", "error", "n_cells", "label", *PROB_COLUMNS, "overlay"]
SUMMARY_COLUMNS = ["slide", "n_images", "n_failed", "n_cells", "n_blasts", "blast_fraction", "ci_low", "ci_high",
                   "predominant_subtype", "verdict", "needs_review"]


def cell_records(image: str, det: sv.Detections) -> list[dict]:
    """One record per classified cell of ``image`` (boxes in original-image pixels), in ``CELL_COLUMNS``.

    Plain dicts (built with numpy, no DataFrame per field: this runs once per field); the slide's
    ``cells.csv`` is one DataFrame of all of them."""
    n = len(det)
    probs = np.asarray(det.data.get("probs", np.zeros((n, len(CLASSES)))) if n else np.zeros((0, len(CLASSES))), float)
    conf = np.asarray(det.confidence if det.confidence is not None else np.ones(n), float)
    columns = [
        [image] * n, list(range(n)), *np.asarray(det.xyxy, float).round(1).T.tolist(), conf.round(4).tolist(),
        [LABELS[c] for c in (det.class_id if n else [])], *probs.round(4).T.tolist(),
    ]
    return [dict(zip(CELL_COLUMNS, row)) for row in zip(*columns)]
