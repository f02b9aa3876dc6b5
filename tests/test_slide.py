"""A slide's screening (leukoscan/slide.py): the seam an engine that screens fields elsewhere uses (plan_slide,
screen_batch in any order and grouping, then screen_slide aggregating) gives the outputs of one screen_slide."""

import json

import numpy as np
import pandas as pd
from synth import write_slide

from leukoscan.models import Models
from leukoscan.slide import Options, Slide, plan_slide, screen_batch, screen_slide


def without_timings(verdict: dict) -> dict:
    return {k: v for k, v in verdict.items() if k not in ("seconds", "screened_at")}


def test_fields_screened_in_batches_out_of_order_then_aggregated_match_one_run(tmp_path):
    folder = tmp_path / "slide"
    write_slide(folder, 4, seed=120)
    slide, opts, models = Slide.from_path(folder), Options(), Models.load(device="cpu")
    at_once = screen_slide(models, slide, tmp_path / "a", opts)

    plan = plan_slide(models, slide, tmp_path / "b", opts)
    assert plan.todo == slide.images and plan.scale.record() == at_once["scale"]
    for fields in (plan.todo[3:], plan.todo[:2], plan.todo[2:3]):  # as workers elsewhere might finish them
        screen_batch(models, tmp_path / "b", opts, plan, fields)
    assert plan_slide(models, slide, tmp_path / "b", opts).todo == []  # all journalled
    lazy = Models.load(device="cpu", lazy=True)
    aggregated = screen_slide(lazy, slide, tmp_path / "b", opts, plan=plan)
    assert lazy.detector._model is None  # aggregating loads no model
    assert without_timings(aggregated) == without_timings(at_once)
    for table in ("cells.csv", "images.csv"):
        a, b = (pd.read_csv(tmp_path / d / table) for d in ("a", "b"))
        pd.testing.assert_frame_equal(
            a.drop(columns=["seconds"], errors="ignore"), b.drop(columns=["seconds"], errors="ignore")
        )
    saved = json.loads((tmp_path / "b" / "verdict.json").read_text())
    assert without_timings(saved) == without_timings(json.loads((tmp_path / "a" / "verdict.json").read_text()))


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


def test_screen_slide_with_a_stub_model_bundle_counts_what_the_models_say(tmp_path):
    """The slide logic without weights: fixed detections and calls go through screening, tables and verdict."""
    from types import SimpleNamespace

    folder = tmp_path / "slide"
    write_slide(folder, 6, seed=140)
    (folder / "broken.png").write_bytes(b"not an image")
    models = SimpleNamespace(
        detector=StubDetector(), classifier=StubClassifier(), subtype=StubSubtype(), description={"models": "stub"}
    )
    verdict = screen_slide(models, Slide.from_path(folder), tmp_path / "out", Options())
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    images = pd.read_csv(tmp_path / "out" / "images.csv", keep_default_na=False)
    assert (images.status == "error").sum() == 1 and verdict["n_failed"] == 1
    usable = images.status == "ok"
    assert verdict["n_cells"] == len(cells) == 2 * usable.sum() and verdict["n_blasts"] == usable.sum()
    assert verdict["blast_fraction"] == 0.5 and verdict["scale"]["cell_px_by_field_size"] == {"224x224": 30.0}
    assert set(cells.subtype.dropna()) == {"pre_b"} and verdict["models"] == "stub"
