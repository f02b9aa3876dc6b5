"""Tables of the output contract, made from the cell detections (``sv.Detections``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import supervision as sv

from leukoscan.cells import CLASSES, LABELS

PROB_COLUMNS = [f"p_{k}" for k in CLASSES]
CELL_COLUMNS = ["image", "cell", "x1", "y1", "x2", "y2", "det_conf", "label", *PROB_COLUMNS]
IMAGE_COLUMNS = ["image", "status", "error", "n_cells", "label", *PROB_COLUMNS]
SUMMARY_COLUMNS = ["slide", "n_images", "n_failed", "n_cells", "n_blasts", "blast_fraction", "ci_low", "ci_high",
                   "predominant_subtype", "verdict", "needs_review"]


def cell_table(image: str, det: sv.Detections) -> pd.DataFrame:
    """One row per classified cell of ``image`` (boxes in original-image pixels)."""
    n = len(det)
    probs = det.data.get("probs", np.zeros((n, len(CLASSES)))) if n else np.zeros((0, len(CLASSES)))
    conf = det.confidence if det.confidence is not None else np.ones(n)
    df = pd.DataFrame({
        "image": [image] * n, "cell": np.arange(n),
        "x1": det.xyxy[:, 0].round(1), "y1": det.xyxy[:, 1].round(1),
        "x2": det.xyxy[:, 2].round(1), "y2": det.xyxy[:, 3].round(1),
        "det_conf": np.asarray(conf, float).round(4), "label": [LABELS[c] for c in (det.class_id if n else [])],
    })
    for j, col in enumerate(PROB_COLUMNS):
        df[col] = np.asarray(probs, float)[:, j].round(4) if n else []
    return df[CELL_COLUMNS]
