"""A slide's screening (leukoscan/slide.py): the seam an engine that screens fields elsewhere uses (plan_slide,
screen_batch in any order and grouping, then screen_slide aggregating) gives the outputs of one screen_slide."""

import json

import cv2
import pandas as pd
from synth import smear

from leukoscan.models import Models
from leukoscan.slide import Options, Slide, plan_slide, screen_batch, screen_slide


def without_timings(verdict: dict) -> dict:
    return {k: v for k, v in verdict.items() if k not in ("seconds", "screened_at")}


def test_fields_screened_in_batches_out_of_order_then_aggregated_match_one_run(tmp_path):
    folder = tmp_path / "slide"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"f{i}.png"), smear(seed=120 + i)[0][..., ::-1])
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
