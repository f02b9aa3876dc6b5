"""A model bundle without weights for the slide logic's tests: fixed detections, fixed calls."""

from types import SimpleNamespace

import numpy as np


class StubDetector:
    """Two cells in every field, at fixed places; a fixed white-cell size."""

    def estimate_cell_px(self, images):
        return 30.0

    def detect(self, images, cell_px):
        from leukoscan.cells import cells

        return [cells([[10, 10, 40, 40], [60, 60, 90, 90]], [0.9, 0.8]) for _ in images]


class StubClassifier:
    """The first cell of a field a blast (p 0.97), the second a lymphocyte (p 0.9)."""

    stain_normalisation = stain_reference = None

    def crops(self, rgb, det, cell_px):
        return np.zeros((len(det), 8, 8, 3), np.uint8)

    def normalise(self, crops, stain):
        return crops

    def probs(self, crops):
        from leukoscan.cells import CELL_TYPES

        p = np.full((len(crops), len(CELL_TYPES)), 0.01 / (len(CELL_TYPES) - 2), np.float32)
        p[0::2, 0], p[0::2, 1] = 0.97, 0.02
        p[1::2, 0], p[1::2, 1] = 0.09, 0.9
        return p / p.sum(axis=1, keepdims=True)


class StubSubtype:
    def subtype_fields(self, fields, dets):
        from leukoscan.cells import SUBTYPES, blasts, with_subtypes

        return [with_subtypes(d, np.tile(np.eye(len(SUBTYPES))[1], (len(blasts(d)), 1))) for d in dets]


def stub_models(detector=None) -> SimpleNamespace:
    """The three stub models as a run's bundle (``detector``: another stub detector), described as ``stub``."""
    return SimpleNamespace(
        detector=detector or StubDetector(),
        classifier=StubClassifier(),
        subtype=StubSubtype(),
        description={"models": "stub"},
    )
