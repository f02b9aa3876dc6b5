"""The one data type that flows through leukoscan: ``sv.Detections`` of white cells.

Boxes are ``xyxy`` pixels in the original image; ``confidence`` is the detector's. The cell-type
classifier adds ``class_id`` (an index into ``CELL_TYPES``) and ``data[PROBS]`` (N x ``CELL_TYPES``,
calibrated); the subtype model adds ``data[SUBTYPE_PROBS]`` (N x ``SUBTYPES``, given blast: NaN for cells
that are not blasts). Everything downstream (tables, overlays, verdicts) reads these fields.
"""

from __future__ import annotations

import numpy as np
import supervision as sv

# The cell-type classifier's classes (what a hematologist asks of every white cell) and their labels.
CELL_TYPES = (
    "blast",
    "lymphocyte",
    "neutrophil",
    "monocyte",
    "eosinophil",
    "basophil",
    "immature_granulocyte",
    "erythroblast",
    "other",
)
TYPE_LABELS = (
    "Blast",
    "Lymphocyte",
    "Neutrophil",
    "Monocyte",
    "Eosinophil",
    "Basophil",
    "Immature granulocyte",
    "Erythroblast",
    "Other",
)
BLAST = CELL_TYPES.index("blast")
# Not white cells of the differential, so not in the blast fraction's denominator: nucleated red cells, which a
# hematologist reports per 100 white cells, and ``other`` (platelets, debris, a red cell boxed by mistake).
NOT_WHITE = ("erythroblast", "other")
IS_WHITE = np.array([t not in NOT_WHITE for t in CELL_TYPES])  # by class index: IS_WHITE[probs.argmax(axis=1)]
# The blast subtype (asked only of blasts; learned from the Taleqani hospital alone: a morphology hint).
SUBTYPES = ("early_pre_b", "pre_b", "pro_b")
SUBTYPE_LABELS = ("Early Pre-B", "Pre-B", "Pro-B")

# The subtype model's own classes: the Taleqani diagnoses (its folder names), whose last three are SUBTYPES.
CLASSES = ("benign", *SUBTYPES)
LABELS = ("Benign", *SUBTYPE_LABELS)
TALEQANI_CLASS = {"Benign": 0, "Early": 1, "Pre": 2, "Pro": 3}

PART = "~"  # a model class or crop folder `<type>~<part>` (blast~munich) is a part of the type: they add up


def type_of(name: str) -> str:
    """The type a model class or crop folder stands for: ``blast~munich`` (one source's blasts, a part of the
    type learnt as a class of its own) is ``blast``."""
    return name.split(PART)[0]


def by_type(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` of model classes or crop folders as counts of the types they stand for (parts added up)."""
    out: dict[str, int] = {}
    for name, n in counts.items():
        out[type_of(name)] = out.get(type_of(name), 0) + n
    return out


PROBS = "probs"  # key in sv.Detections.data: cell-type probabilities
SUBTYPE_PROBS = "subtype_probs"  # key in sv.Detections.data: subtype probabilities given blast


def cells(xyxy, confidence=None) -> sv.Detections:
    """Cell detections from an (N, 4) box array (empty allowed); class 0 until classified."""
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    conf = None if confidence is None else np.asarray(confidence, dtype=np.float32).reshape(-1)
    return sv.Detections(xyxy=xyxy, confidence=conf, class_id=np.zeros(len(xyxy), dtype=int))


def with_probs(det: sv.Detections, probs: np.ndarray) -> sv.Detections:
    """Attach cell-type probabilities (N x len(CELL_TYPES)) and their argmax as ``class_id``, in place."""
    probs = np.asarray(probs, dtype=np.float32).reshape(len(det), len(CELL_TYPES))
    det.data[PROBS] = probs
    det.class_id = probs.argmax(axis=1).astype(int) if len(det) else np.zeros(0, dtype=int)
    return det


def blast_margin(probs: np.ndarray) -> np.ndarray:
    """Each cell's log P(blast) over its likeliest other type's (N x ``CELL_TYPES`` probabilities): > 0 when the
    cell is called a blast. Where a cell falls on it, unlike its rounded P(blast), keeps its rank at any value
    (a lab reference sets its blast call on it: ``leukoscan/lab.py``)."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(CELL_TYPES))
    others = np.delete(probs, BLAST, axis=1).max(axis=1)
    return np.log(np.maximum(probs[:, BLAST], 1e-12)) - np.log(np.maximum(others, 1e-12))


def blasts(det: sv.Detections) -> np.ndarray:
    """Indices of the cells called blasts."""
    return np.nonzero(det.class_id == BLAST)[0] if len(det) else np.zeros(0, dtype=int)


def with_subtypes(det: sv.Detections, probs: np.ndarray) -> sv.Detections:
    """Attach subtype probabilities (one row per blast, ``blasts(det)`` order) in place; other rows NaN."""
    full = np.full((len(det), len(SUBTYPES)), np.nan, dtype=np.float32)
    full[blasts(det)] = np.asarray(probs, dtype=np.float32).reshape(-1, len(SUBTYPES))
    det.data[SUBTYPE_PROBS] = full
    return det


def subtype_indices(det: sv.Detections) -> list[int | None]:
    """Each cell's likeliest subtype (an index into ``SUBTYPES``), None for a cell not subtyped."""
    sub = det.data.get(SUBTYPE_PROBS)
    if sub is None:
        return [None] * len(det)
    return [int(np.argmax(s)) if np.isfinite(s).all() else None for s in sub]


def cell_labels(det: sv.Detections) -> list[str]:
    """What a user reads for each cell: its type, and for a subtyped blast its likeliest subtype (``Blast (Pre-B)``)."""
    return [
        TYPE_LABELS[c] + ("" if s is None else f" ({SUBTYPE_LABELS[s]})")
        for c, s in zip(det.class_id if len(det) else [], subtype_indices(det))
    ]
