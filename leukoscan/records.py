"""Tables of the output contract, made from the cell detections (``sv.Detections``)."""

from __future__ import annotations

import numpy as np
import supervision as sv

from leukoscan.cells import CELL_TYPES, PROBS, SUBTYPE_PROBS, SUBTYPES, cell_labels, subtype_indices

TYPE_COLUMNS = [f"p_{t}" for t in CELL_TYPES]  # sum to 1 (calibrated)
SUBTYPE_COLUMNS = [f"p_{s}" for s in SUBTYPES]  # given blast: filled for blasts only, sum to 1
DIFFERENTIAL = [f"n_{t}" for t in CELL_TYPES]  # cells of each type on a slide
CELL_COLUMNS = [
    "image",
    "cell",
    "x1",
    "y1",
    "x2",
    "y2",
    "det_conf",
    "cell_type",
    "label",
    *TYPE_COLUMNS,
    "subtype",
    *SUBTYPE_COLUMNS,
]
IMAGE_COLUMNS = ["image", "status", "error", "n_cells", "n_blasts", "blast_fraction", "label", *TYPE_COLUMNS, "overlay"]
SUMMARY_COLUMNS = [
    "slide",
    "n_images",
    "n_failed",
    "n_cells",
    "n_blasts",
    "blast_fraction",
    "ci_low",
    "ci_high",
    "predominant_subtype",
    "verdict",
    "needs_review",
    *DIFFERENTIAL,
]


def cell_records(image: str, det: sv.Detections) -> list[dict]:
    """One record per classified cell of ``image`` (boxes in original-image pixels), in ``CELL_COLUMNS``.

    Plain dicts (built with numpy, no DataFrame per field: this runs once per field); the slide's
    ``cells.csv`` is one DataFrame of all of them."""
    n = len(det)
    probs = np.asarray(
        det.data.get(PROBS, np.zeros((n, len(CELL_TYPES)))) if n else np.zeros((0, len(CELL_TYPES))), float
    )
    sub = np.asarray(
        det.data.get(SUBTYPE_PROBS, np.full((n, len(SUBTYPES)), np.nan)) if n else np.zeros((0, len(SUBTYPES))), float
    )
    conf = np.asarray(det.confidence if det.confidence is not None else np.ones(n), float)
    subtype = ["" if s is None else SUBTYPES[s] for s in subtype_indices(det)]
    sub_values = [[None if not np.isfinite(v) else v for v in col] for col in sub.round(4).T.tolist()]
    columns = [
        [image] * n,
        list(range(n)),
        *np.asarray(det.xyxy, float).round(1).T.tolist(),
        conf.round(4).tolist(),
        [CELL_TYPES[c] for c in (det.class_id if n else [])],
        cell_labels(det),
        *probs.round(4).T.tolist(),
        subtype,
        *sub_values,
    ]
    return [dict(zip(CELL_COLUMNS, row)) for row in zip(*columns)]
