"""The one data type that flows through leukoscan: ``sv.Detections`` of white cells.

Boxes are ``xyxy`` pixels in the original image; ``confidence`` is the detector's. The classifier adds
``class_id`` and ``data["probs"]`` (N x 4, in ``CLASSES`` order). Everything downstream (tables, overlays,
verdicts) reads these fields.
"""

from __future__ import annotations

import numpy as np
import supervision as sv

# Folder/column keys and the labels a user sees, in the classifier's output order.
CLASSES = ("benign", "early_pre_b", "pre_b", "pro_b")
LABELS = ("Benign", "Early Pre-B", "Pre-B", "Pro-B")
# Taleqani folder name -> class index.
TALEQANI_CLASS = {"Benign": 0, "Early": 1, "Pre": 2, "Pro": 3}
MALIGNANT = (1, 2, 3)


def cells(xyxy, confidence=None) -> sv.Detections:
    """Cell detections from an (N, 4) box array (empty allowed); class 0 until classified."""
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    conf = None if confidence is None else np.asarray(confidence, dtype=np.float32).reshape(-1)
    return sv.Detections(xyxy=xyxy, confidence=conf, class_id=np.zeros(len(xyxy), dtype=int))


def with_probs(det: sv.Detections, probs: np.ndarray) -> sv.Detections:
    """Attach class probabilities (N x len(CLASSES)) and their argmax as ``class_id``."""
    probs = np.asarray(probs, dtype=np.float32).reshape(len(det), len(CLASSES))
    det.data["probs"] = probs
    det.class_id = probs.argmax(axis=1).astype(int) if len(det) else np.zeros(0, dtype=int)
    return det
